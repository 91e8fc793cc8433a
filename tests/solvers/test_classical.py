"""Classical solvers (cg, bfgs, lbfgs, newton, newton-cg, gn, lm) on known minimisers.

- Rosenbrock, 2-D from (-1.2, 1): minimiser (1, 1).
- 10-D: the extended Rosenbrock function (Moré, Garbow & Hillstrom 1981, problem 21: five
  uncoupled pairs) from its standard start (-1.2, 1, ..., -1.2, 1), and the chained Rosenbrock
  function (scipy.optimize.rosen, CUTEst GENROSE) from GENROSE's start x_i = i / (n + 1); both
  have the minimiser (1, ..., 1).  (The chained function from (-1.2, 1, ...) has a second local
  minimiser near (-1, 1, ..., 1), where Newton and BFGS legitimately stop.)
- Powell's singular function (MGH problem 13) from (3, -1, 0, 1): minimiser 0, where the Hessian
  is singular, so convergence is only linear; ||x - x*|| <= 1e-6 needs gtol ~ 1e-18 (f ~ ||x||^4).

GN and LM run on the residual forms (f = sum r_i^2 = 2 * cost).  Then the algorithm-level checks:
the BFGS update formula, the two-loop recursion, the shifted Cholesky, CG restarts, trainlm's mu
rules, and the driver's behaviour (history, counters, stopping rules, errors, Ctrl-C, divergence).
"""

from __future__ import annotations

from itertools import pairwise

import jax.numpy as jnp
import numpy as np
import pytest

import liftnn as ln
from liftnn.errors import LiftnnError
from liftnn.solvers import quasi_newton as qn
from liftnn.solvers import result as R
from liftnn.solvers.api import method_options
from liftnn.solvers.linesearch import LineSearchResult
from liftnn.solvers.newton import shifted_cholesky

MINIMIZE = [("cg", {"variant": "pr+"}), ("cg", {"variant": "fr"}), ("bfgs", {}), ("lbfgs", {}),
            ("newton", {}), ("newton-cg", {})]
LEAST_SQUARES = ["gn", "lm"]
HISTORY_KEYS = {"iter", "loss", "grad_norm", "step", "nfev", "njev", "nhev", "time"}


def rosen(x):  # chained
    return jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


def rosen_res(x):  # rosen = ||r||^2
    return jnp.concatenate([10.0 * (x[1:] - x[:-1] ** 2), 1.0 - x[:-1]])


def ext_rosen(x):  # MGH 21: uncoupled pairs
    return jnp.sum(100.0 * (x[1::2] - x[::2] ** 2) ** 2 + (1.0 - x[::2]) ** 2)


def ext_rosen_res(x):
    return jnp.concatenate([10.0 * (x[1::2] - x[::2] ** 2), 1.0 - x[::2]])


def powell_res(x):  # MGH 13
    return jnp.stack([x[0] + 10.0 * x[1], jnp.sqrt(5.0) * (x[2] - x[3]), (x[1] - 2.0 * x[2]) ** 2,
                      jnp.sqrt(10.0) * (x[0] - x[3]) ** 2])


def powell(x):
    r = powell_res(x)
    return r @ r


PROBLEMS = {  # name: (f, residual, x0, x*, tolerances)
    "rosenbrock-2": (rosen, rosen_res, np.array([-1.2, 1.0]), np.ones(2), {"gtol": 1e-9}),
    "ext-rosenbrock-10": (ext_rosen, ext_rosen_res, np.tile([-1.2, 1.0], 5), np.ones(10),
                          {"gtol": 1e-9}),
    "chained-rosenbrock-10": (rosen, rosen_res, np.arange(1, 11) / 11.0, np.ones(10),
                              {"gtol": 1e-9}),
    "powell": (powell, powell_res, np.array([3.0, -1.0, 0.0, 1.0]), np.zeros(4),
               {"gtol": 1e-18}),
}


def _id(p):
    return p if isinstance(p, str) else f"{p[0]}-{p[1]['variant']}" if p[1] else p[0]


@pytest.mark.parametrize("problem", PROBLEMS)
@pytest.mark.parametrize("spec", MINIMIZE, ids=_id)
def test_minimize_reaches_the_minimiser(problem, spec):
    f, _, x0, xs, tol = PROBLEMS[problem]
    method, opts = spec
    r = ln.minimize(f, x0, method=method, max_iter=20000, **tol, **opts)
    assert r.status == R.CONVERGED and r.success, r.message
    assert np.linalg.norm(r.x - xs) <= 1e-6, (r.x, r.message)
    assert r.fun == pytest.approx(float(f(r.x)), rel=1e-9, abs=1e-15)
    assert r.nit == len(r.history) - 1


@pytest.mark.parametrize("problem", PROBLEMS)
@pytest.mark.parametrize("method", LEAST_SQUARES)
def test_least_squares_reaches_the_minimiser(problem, method):
    _, res, x0, xs, tol = PROBLEMS[problem]
    r = ln.least_squares(res, x0, method=method, max_iter=20000, **tol)
    assert r.status == R.CONVERGED and r.success, r.message
    assert np.linalg.norm(r.x - xs) <= 1e-6, (r.x, r.message)
    np.testing.assert_allclose(r.fun, np.asarray(res(r.x)), rtol=1e-9, atol=1e-15)
    assert r.cost == pytest.approx(0.5 * float(r.fun @ r.fun), rel=1e-12, abs=1e-300)
    np.testing.assert_allclose(r.grad, r.jac.T @ r.fun, atol=1e-300)


# ---- the result object: history and counters ---------------------------------------------------


@pytest.mark.parametrize("spec", MINIMIZE[1:] + [("gn", {}), ("lm", {})], ids=_id)
def test_history_and_counters_describe_the_run(spec):
    method, opts = spec
    if method in LEAST_SQUARES:
        r = ln.least_squares(rosen_res, [-1.2, 1.0], method=method)
        assert r.nhev == 0 and r.njev == r.nit + 1  # one Jacobian per accepted iterate
    else:
        r = ln.minimize(rosen, [-1.2, 1.0], method=method, **opts)
        if method == "newton":
            assert r.nhev == r.nit  # one Hessian per iteration
        elif method == "newton-cg":
            assert r.nhev == sum(h["cg_iters"] for h in r.history[1:])
        else:
            assert r.nhev == 0 and r.nfev == r.njev  # (f, g) always together
    h = r.history
    assert h[0]["iter"] == 0 and h[0]["loss"] == pytest.approx(24.2 if method not in
                                                                LEAST_SQUARES else 12.1)
    for a, b in pairwise(h):
        assert HISTORY_KEYS <= set(b)
        assert b["iter"] == a["iter"] + 1
        assert b["loss"] < a["loss"]  # every method here is monotone
        assert b["nfev"] >= a["nfev"] and b["njev"] >= a["njev"] and b["time"] >= a["time"]
        assert b["step"] > 0
    assert (h[-1]["nfev"], h[-1]["njev"], h[-1]["nhev"]) == (r.nfev, r.njev, r.nhev)
    assert h[-1]["grad_norm"] <= 1e-8 and r.time_s >= h[-1]["time"]
    np.testing.assert_array_equal(r.x, r.x_last)


def test_method_options_lists_defaults():
    o = method_options("lm")
    assert (o["mu"], o["mu_dec"], o["mu_inc"], o["mu_max"]) == (1e-3, 0.1, 10.0, 1e10)
    assert method_options("bfgs")["max_iter"] == 1000 and method_options("newton")["max_iter"] == 200
    assert method_options("cg")["eta"] == 0.1 and method_options("gn")["gtol"] == 1e-8


# ---- algorithm pieces ---------------------------------------------------------------------------


def test_bfgs_update_is_seed_001_formula():
    rng = np.random.default_rng(0)
    A = rng.standard_normal((5, 5))
    B = A @ A.T + np.eye(5)
    s, y = rng.standard_normal(5), rng.standard_normal(5)
    if y @ s < 0:
        y = -y
    rho = 1.0 / (y @ s)
    E = np.eye(5)
    expected = (E - rho * np.outer(s, y)) @ B @ (E - rho * np.outer(y, s)) + rho * np.outer(s, s)
    Bn = qn.bfgs_update(B, s, y)
    np.testing.assert_allclose(Bn, expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(Bn @ y, s, rtol=1e-9)  # secant equation B+ y = s


def test_two_loop_equals_dense_updates_from_gamma_identity():
    rng = np.random.default_rng(1)
    pairs = []
    for _ in range(4):
        s, y = rng.standard_normal(6), rng.standard_normal(6)
        y = y if y @ s > 0 else -y
        pairs.append((s, y, 1.0 / (y @ s)))
    s, y, _ = pairs[-1]
    H = (s @ y) / (y @ y) * np.eye(6)
    for s_i, y_i, _ in pairs:
        H = qn.bfgs_update(H, s_i, y_i)
    g = rng.standard_normal(6)
    np.testing.assert_allclose(qn.two_loop(g, pairs), H @ g, rtol=1e-10)


def test_bfgs_skips_and_records_an_update_when_ys_is_not_positive(monkeypatch):
    """A line search returning y = 0 (as rounding can) must not break B: skip and record."""
    calls = {"n": 0}

    def fake_search(fg, x, d, f0, g0, **kw):
        calls["n"] += 1
        return LineSearchResult(1.0, x + 1e-3 * d, f0 - 1e-3 * calls["n"], g0.copy(), 1, 1, True)

    monkeypatch.setattr(qn, "strong_wolfe", fake_search)
    r = ln.minimize(lambda x: jnp.sum(x**2), [1.0, 2.0], method="bfgs", max_iter=3)
    assert r.skipped_updates == 3 and r.status == R.MAX_ITER
    assert [h["update_skipped"] for h in r.history[1:]] == [True, True, True]
    r = ln.minimize(lambda x: jnp.sum(x**2), [1.0, 2.0], method="lbfgs", max_iter=2)
    assert r.skipped_updates == 2


def test_shifted_cholesky_finds_the_first_shift_that_works():
    H = np.diag([4.0, -1.0, 2.0])  # max |diag| = 4, alpha0 = 4e-3
    L, alpha = shifted_cholesky(H)
    np.testing.assert_allclose(L @ L.T, H + alpha * np.eye(3), atol=1e-12)
    assert alpha == pytest.approx(4.0)  # 4e-3 * 10^3: the first of the sequence above 1
    _, a0 = shifted_cholesky(np.diag([1.0, 2.0]))
    assert a0 == 0.0


def test_newton_shifts_indefinite_hessians_and_newton_cg_exits_on_negative_curvature():
    """f = x0^4 - x0^2 + x1^2 from x0 = 0.1: H[0,0] = 12 x0^2 - 2 < 0 at the start; the
    minimisers are (+-1/sqrt 2, 0)."""
    def f(x):
        return x[0] ** 4 - x[0] ** 2 + x[1] ** 2

    xs = np.array([1.0 / np.sqrt(2.0), 0.0])
    r = ln.minimize(f, [0.1, 1.0], method="newton")
    assert r.history[1]["shift"] > 0 and r.shifted_iterations >= 1
    assert r.history[-1]["shift"] == 0.0  # PD near the minimiser: pure Newton
    np.testing.assert_allclose(np.abs(r.x), xs, atol=1e-8)
    r = ln.minimize(f, [0.1, 0.0], method="newton-cg")  # first CG direction along x0
    assert r.history[1]["negative_curvature"] and r.negative_curvature_exits >= 1
    np.testing.assert_allclose(np.abs(r.x), xs, atol=1e-8)


def test_cg_restart_every_iteration_is_steepest_descent():
    r = ln.minimize(rosen, [-1.2, 1.0], method="cg", restart=1, max_iter=50)
    assert all(h["cg_beta"] == 0.0 for h in r.history[1:])
    assert r.restarts == r.nit
    r = ln.minimize(rosen, [-1.2, 1.0], method="cg")  # default: restart every n = 2 iterations
    assert any(h["cg_beta"] > 0 for h in r.history[1:])


def test_lm_follows_trainlms_mu_rules():
    """mu starts at 1e-3; each iteration multiplies it by 10 per failed trial and by 0.1 on the
    accepted one; the run stops (stalled) once mu exceeds mu_max."""
    r = ln.least_squares(rosen_res, [-1.2, 1.0], method="lm", max_iter=500)
    mu = 1e-3
    for h in r.history[1:]:
        mu = max(mu * 10.0 ** (h["trials"] - 1) * 0.1, 1e-20)
        assert h["mu"] == pytest.approx(mu, rel=1e-9)
    # a non-zero-residual problem at its minimum: no trial can reduce the cost, mu climbs to 1e10
    X, Z = jnp.array([0.0, 1.0, 2.0]), jnp.array([1.0, 2.1, 2.9])
    r = ln.least_squares(lambda w: w[0] * X + w[1] - Z, [0.0, 0.0], method="lm", gtol=0.0)
    assert r.status == R.STALLED and "mu_max" in r.message and r.mu > 1e10
    np.testing.assert_allclose(r.x, [0.95, 1.05], atol=1e-12)


def test_lm_treats_a_non_finite_trial_as_a_failed_step():
    """r = sqrt(x) - 2 is NaN for x < 0; from x = 25 the Gauss-Newton-like first step
    (mu = 1e-12) lands at x = -5 and is rejected."""
    r = ln.least_squares(lambda x: jnp.sqrt(x) - 2.0, [25.0], method="lm", mu=1e-12, gtol=1e-14)
    assert r.status == R.CONVERGED
    assert r.history[1]["trials"] > 1
    np.testing.assert_allclose(r.x, [4.0], rtol=1e-10)


# ---- stopping rules -----------------------------------------------------------------------------


def test_gtol_at_x0_max_iter_zero_time_budget_ftol_xtol_patience():
    r = ln.minimize(rosen, [1.0, 1.0], method="bfgs")
    assert r.status == R.CONVERGED and r.nit == 0 and "x0" in r.message
    r = ln.minimize(rosen, [-1.2, 1.0], method="bfgs", max_iter=0)
    assert r.status == R.MAX_ITER and r.nit == 0 and len(r.history) == 1
    r = ln.minimize(rosen, [-1.2, 1.0], method="newton", time_budget=1e-9)
    assert r.status == R.MAX_ITER and r.nit == 1 and "time budget" in r.message
    r = ln.minimize(lambda x: rosen(x) + 1.0, [-1.2, 1.0], method="bfgs", ftol=1e-4)
    assert r.status == R.CONVERGED and "ftol" in r.message
    h = r.history
    assert h[-2]["loss"] - h[-1]["loss"] <= 1e-4 * h[-2]["loss"]
    assert all(a["loss"] - b["loss"] > 1e-4 * a["loss"] for a, b in pairwise(h[:-1]))
    r = ln.least_squares(rosen_res, [-1.2, 1.0], method="lm", xtol=1e-3, gtol=0.0)
    assert r.status == R.CONVERGED and "xtol" in r.message
    r = ln.minimize(rosen, [-1.2, 1.0], method="lbfgs", patience=3, min_delta=1e6)
    assert r.status == R.STALLED and r.nit == 3 and "patience" in r.message


def test_callback_sees_every_iteration_and_can_stop_the_run():
    seen = []

    def cb(k, x, loss):
        seen.append((k, x.copy(), loss))
        return k == 4

    r = ln.minimize(rosen, [-1.2, 1.0], method="bfgs", callback=cb)
    assert r.status == R.INTERRUPTED and r.nit == 4 and not r.success
    assert [k for k, _, _ in seen] == [1, 2, 3, 4]
    assert seen[-1][2] == r.history[-1]["loss"]


@pytest.mark.parametrize("method", ["cg", "bfgs", "lbfgs", "newton", "newton-cg", "gn", "lm"])
def test_keyboard_interrupt_returns_the_best_iterate_so_far(method):
    def cb(k, x, loss):
        if k == 3:
            raise KeyboardInterrupt

    if method in LEAST_SQUARES:
        r = ln.least_squares(rosen_res, [-1.2, 1.0], method=method, callback=cb)
    else:
        r = ln.minimize(rosen, [-1.2, 1.0], method=method, callback=cb)
    assert r.status == R.INTERRUPTED and "KeyboardInterrupt" in r.message
    assert r.nit == 3 and len(r.history) == 4
    losses = [h["loss"] for h in r.history]
    loss_at_x = r.cost if method in LEAST_SQUARES else r.fun
    assert loss_at_x == min(losses)
    assert float(rosen(r.x)) == pytest.approx(min(losses) * (2.0 if method in LEAST_SQUARES
                                                             else 1.0), rel=1e-12)


@pytest.mark.parametrize("method", ["cg", "bfgs", "lbfgs", "newton", "newton-cg"])
def test_unbounded_below_ends_as_diverged_with_the_last_finite_iterate(method):
    """f = -exp(x0) - exp(x1) decreases without bound; the loss reaches -inf (overflow)."""
    def f(x):
        return -jnp.sum(jnp.exp(x))

    with np.errstate(over="ignore"):
        r = ln.minimize(f, [0.0, 0.5], method=method, max_iter=1000)
    assert r.status == R.DIVERGED and not r.success, r.message
    assert np.all(np.isfinite(r.x)) and np.isfinite(r.fun)
    assert r.fun == pytest.approx(float(f(r.x)))
    assert r.fun == min(h["loss"] for h in r.history)


# ---- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize("call,match", [
    (lambda: ln.minimize(rosen, [np.nan, 1.0]), "x0 contains non-finite"),
    (lambda: ln.minimize(rosen, [[1.0, 2.0]]), "1-D vector"),
    (lambda: ln.minimize(rosen, []), "x0 is empty"),
    (lambda: ln.minimize(rosen, ["a", 1.0]), "numeric"),
    (lambda: ln.minimize(rosen_res, [1.0, 2.0]), "scalar"),
    (lambda: ln.minimize(lambda x: jnp.log(x[0]), [-1.0, 2.0]), "not finite at x0"),
    (lambda: ln.minimize(lambda x: jnp.sqrt(x[0]) + x[1], [0.0, 2.0]), "gradient is not finite"),
    (lambda: ln.minimize(lambda x: float(np.sum(x)), [1.0]), "could not be evaluated with JAX"),
    (lambda: ln.minimize(rosen, [1.0, 2.0], method="bgfs"), "unknown method 'bgfs'.*bfgs"),
    (lambda: ln.minimize(rosen, [1.0, 2.0], method="lm"), "least_squares"),
    (lambda: ln.minimize(rosen, [1.0, 2.0], method="bfgs", maxiter=3), "maxiter.*max_iter"),
    (lambda: ln.minimize(rosen, [1.0, 2.0], method="cg", gtol=-1.0), "gtol"),
    (lambda: ln.minimize(rosen, [1.0, 2.0], method="cg", variant="hs"), "variant"),
    (lambda: ln.minimize(rosen, [1.0, 2.0], method="lbfgs", memory=0), "memory"),
    (lambda: ln.minimize(rosen, [1.0, 2.0], method="newton", max_iter=-1), "max_iter"),
    (lambda: ln.minimize(rosen, [1.0, 2.0], method="newton", line_search="exact"), "line_search"),
    (lambda: ln.minimize(rosen, [1.0, 2.0], method="bfgs", callback=3), "callback"),
    (lambda: ln.minimize(rosen, [1.0, 2.0], method="bfgs", time_budget=0), "time_budget"),
    (lambda: ln.least_squares(rosen_res, [1.0, np.inf]), "x0 contains non-finite"),
    (lambda: ln.least_squares(rosen, [1.0, 2.0]), "non-empty vector"),
    (lambda: ln.least_squares(lambda x: jnp.log(x), [-1.0, 2.0]), "residuals are not finite"),
    (lambda: ln.least_squares(rosen_res, [1.0, 2.0], method="bfgs"), "minimize"),
    (lambda: ln.least_squares(rosen_res, [1.0, 2.0], method="trf"), "unknown"),
    (lambda: ln.least_squares(rosen_res, [1.0, 2.0], method="lm", mu_dec=2.0), "mu_dec"),
    (lambda: ln.least_squares(rosen_res, [1.0, 2.0], method="lm", mu_max=1e-4), "mu_max"),
    (lambda: ln.least_squares(rosen_res, [1.0, 2.0], method="gn", xtol=-1), "xtol"),
    (lambda: ln.least_squares(rosen_res, [1.0, 2.0], method="gn", mu=0.9, eta=0.5), "mu"),
])
def test_bad_input_is_rejected_before_any_iteration(call, match):
    with pytest.raises(LiftnnError, match=match):
        call()


def test_gn_that_creeps_without_progress_ends_stalled():
    """Seed 003's small network: from seed 0 plain Gauss-Newton reaches a point where its step is
    ~2^-42 of the unit step; the run ends "stalled" after stall_iters idle iterations with the
    best iterate, not at max_iter, and lm from the same start does better."""
    d = ln.datasets.load("sin2", n=20)
    model = ln.MLP("1-4-1", activation="tanh")
    r = ln.train(model, d, method="gn", seed=0, gtol=1e-8, max_iter=500)
    assert r.status == R.STALLED and "no progress" in r.message and r.nit < 100
    assert r.fun == pytest.approx(min(h["loss"] for h in r.history), rel=1e-12)
    idle = [a["loss"] - b["loss"] <= 1e-12 * abs(a["loss"]) for a, b in zip(r.history, r.history[1:])]
    assert all(idle[-10:]) and len(idle) >= 10
    assert ln.train(model, d, method="lm", seed=0).fun < r.fun
    with pytest.raises(ln.LiftnnError, match="stall_iters"):
        ln.train(model, d, method="gn", seed=0, stall_iters=0)


@pytest.mark.parametrize("method", ["bfgs", "lbfgs"])
def test_quasi_newton_crosses_kinks_and_ends_honestly_at_one(method):
    """f = ||x - c||_1 + ||x||^2 / 2 (minimiser c, |c_i| < 1, f* = ||c||^2 / 2): a kink in every
    coordinate, none with a strong Wolfe step across it.  The searches take the sufficient-
    decrease step at a kink (linesearch accept_kink) instead of ending line_search_failed a long
    way off (before: lbfgs stopped at f = 0.714, 0.024 above f*); the run then ends at the
    minimiser to 1e-3, "stalled" where no step along the quasi-Newton direction or -g lowers f
    beyond rounding, or at max_iter; never line_search_failed."""
    c = jnp.array([0.5, -0.3, 0.2, 0.8, -0.6])
    r = ln.minimize(lambda x: jnp.sum(jnp.abs(x - c)) + 0.5 * jnp.sum(x**2), np.zeros(5),
                    method=method)
    assert r.status in (R.STALLED, R.MAX_ITER), r.message
    assert np.abs(r.x - np.asarray(c)).max() < 1e-3
    assert r.fun - 0.5 * float(c @ c) < 1e-4
    assert any(h.get("kink") for h in r.history)
    if r.status == R.STALLED:
        assert r.success and "beyond rounding" in r.message and "-g" in r.message


def test_problems_of_the_same_shapes_share_the_compiled_objective():
    """The classical solvers get the objective with the data as program arguments
    (TrainingProblem.data_bound_fun): a second data set of the same shapes compiles nothing,
    and the results equal the objective's with the data as constants."""
    from liftnn.datasets.base import Dataset
    from liftnn.problem import TrainingProblem

    model = ln.MLP("2-5-1", activation="tanh")
    rng = np.random.default_rng(0)
    runs = []
    for _ in range(2):
        X = rng.normal(size=(30, 2))
        Y = np.sin(X[:, :1]) + X[:, 1:] ** 2
        runs.append(ln.train(model, Dataset(X, Y, X[:0], Y[:0], meta={"name": "t"}),
                             method="lbfgs", seed=0, max_iter=50))
    assert runs[1]["compiles"] == 0
    prob = TrainingProblem(model, X, Y)
    theta = np.asarray(runs[1]["x"])
    assert float(prob.data_bound_fun()(theta)) == pytest.approx(float(prob.fun(theta)),
                                                                rel=1e-13)
