"""First-order methods (liftnn.solvers.first_order): what each test proves is in its name/docstring.

Networks: sin2 with n = 20 points and a 1-8-1 tanh MLP (seconds to compile, milliseconds to run).
Quadratics: f(w) = 1/2 w'Aw - b'w with a known minimiser A^{-1} b and lambda_max(A).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

import liftnn as ln
from liftnn.errors import LiftnnError
from liftnn.problem import TrainingProblem
from liftnn.solvers import first_order as fo
from liftnn.solvers import result as R

A = np.array([[3.0, 0.5, 0.0], [0.5, 2.0, 0.3], [0.0, 0.3, 1.0]])
B = np.array([1.0, -2.0, 0.5])
LAMBDA_MAX = float(np.linalg.eigvalsh(A).max())
W_STAR = np.linalg.solve(A, B)
W0 = np.array([2.0, 1.0, -1.0])


def quad(w):
    """f(w) = 1/2 w'Aw - b'w (one module-level function: one compile per method)."""
    return 0.5 * w @ (jnp.asarray(A) @ w) - jnp.asarray(B) @ w


@pytest.fixture(scope="module")
def problem():
    ds = ln.datasets.load("sin2", n=20)
    return TrainingProblem(ln.MLP("1-8-1"), ds.x_train, ds.y_train)


@pytest.fixture(scope="module")
def val_problem():
    ds = ln.datasets.load("sin2", n=20, n_test=15)
    return TrainingProblem(ln.MLP("1-8-1"), ds.x_train, ds.y_train, X_val=ds.x_test,
                           Y_val=ds.y_test)


HISTORY_KEYS = {"iter", "loss", "grad_norm", "step", "nfev", "njev", "nhev", "time"}


@pytest.mark.parametrize("method", fo.METHODS)
def test_every_method_reduces_the_network_loss(problem, method):
    """200 full-batch epochs from model.init(0) lower the training loss; history is complete."""
    lr = {"gd": 0.1, "momentum": 0.05, "nesterov": 0.05, "adam": 1e-2, "rmsprop": 1e-2}.get(method)
    opts = {"lr": lr} if lr else {}
    r = fo.fit(problem, problem.model.init(0), method=method, max_iter=200, patience=None, **opts)
    f0 = r.history[0]["loss"]
    theta0 = problem.flatten(problem.model.init(0))
    assert f0 == pytest.approx(float(problem.fun(theta0)), rel=1e-12)
    assert r.fun < 0.8 * f0, (method, f0, r.fun)
    assert r.status == R.MAX_ITER and r.nit == 200 and len(r.history) == 201
    assert r.njev == 201 and r.nfev == 201 and r.nhev == 0
    assert HISTORY_KEYS <= set(r.history[-1])
    # x / fun is the best iterate of the history; params is x unflattened
    losses = r.history_array("loss")
    assert r.fun == pytest.approx(losses.min(), rel=1e-12)
    np.testing.assert_allclose(problem.flatten(r.params), r.x, rtol=0, atol=0)
    assert float(problem.fun(jnp.asarray(r.x))) == pytest.approx(r.fun, rel=1e-10)
    assert float(problem.fun(jnp.asarray(r.x_last))) == pytest.approx(r.fun_last, rel=1e-10)
    assert r.fun_last == pytest.approx(losses[-1], rel=1e-12)
    assert np.all(np.diff(r.history_array("time")) >= 0)


def test_momentum_is_exactly_the_seed_004_recursion():
    """u_0 = -g_0, u_i = -g_i + beta u_{i-1}, w_{i+1} = w_i + alpha u_i, five steps, to 1e-14."""
    alpha, beta, n = 0.1, 0.7, 5
    w, u, traj = W0.copy(), np.zeros(3), [W0.copy()]
    for _ in range(n):
        g = A @ w - B
        u = -g + beta * u
        w = w + alpha * u
        traj.append(w.copy())
    r = fo.minimize_first_order(quad, W0, "momentum", lr=alpha, beta=beta, max_iter=n,
                                patience=None)
    assert r.nit == n
    np.testing.assert_allclose(r.x_last, traj[-1], rtol=0, atol=1e-14)
    f_hand = [0.5 * v @ A @ v - B @ v for v in traj]
    np.testing.assert_allclose(r.history_array("loss"), f_hand, rtol=1e-14, atol=1e-15)


def test_nesterov_is_the_look_ahead_momentum_step():
    """u_i = -g_i + beta u_{i-1}, w_{i+1} = w_i + alpha (-g_i + beta u_i) for four steps."""
    alpha, beta = 0.1, 0.7
    w, u = W0.copy(), np.zeros(3)
    for _ in range(4):
        g = A @ w - B
        u = -g + beta * u
        w = w + alpha * (-g + beta * u)
    r = fo.minimize_first_order(quad, W0, "nesterov", lr=alpha, beta=beta, max_iter=4,
                                patience=None)
    np.testing.assert_allclose(r.x_last, w, rtol=0, atol=1e-14)


@pytest.mark.parametrize("method, opts, gtol", [
    ("gd", {"lr": 1.0 / LAMBDA_MAX}, 1e-10),
    # Armijo compares function values: below ||g|| ~ 1e-8 the decrease is under f's rounding
    ("gd", {"lr": 4.0, "line_search": "armijo"}, 1e-7),
    ("nesterov", {"lr": 0.1, "beta": 0.5}, 1e-10),
])
def test_minimize_first_order_finds_the_quadratic_minimiser(method, opts, gtol):
    """Convex quadratic: stops by gtol, status converged, ||x - A^{-1} b|| <= gtol / lambda_min."""
    r = fo.minimize_first_order(quad, W0, method, gtol=gtol, max_iter=4000, patience=None, **opts)
    assert r.status == R.CONVERGED and r.success, r.message
    assert np.max(np.abs(A @ r.x_last - B)) <= gtol
    lam_min = float(np.linalg.eigvalsh(A).min())
    assert np.linalg.norm(r.x_last - W_STAR) <= np.sqrt(3) * gtol / lam_min
    assert r.fun == pytest.approx(-0.5 * B @ W_STAR, rel=1e-12)


def test_gd_with_a_step_far_above_2_over_lambda_max_diverges_with_finite_x():
    """lr = 20 / lambda_max: |1 - lr lambda_max| = 19, so the iterates overflow -> diverged."""
    r = fo.minimize_first_order(quad, W0, "gd", lr=20.0 / LAMBDA_MAX, max_iter=4000, patience=None)
    assert r.status == R.DIVERGED and not r.success
    assert "non-finite" in r.message
    assert np.all(np.isfinite(r.x)) and np.all(np.isfinite(r.x_last)) and np.isfinite(r.fun)
    assert r.fun <= float(quad(jnp.asarray(W0)))  # the best iterate
    assert r.nit < 4000 and len(r.history) == r.nit + 1
    assert np.all(np.isfinite(r.history_array("loss")))


def test_divergence_on_a_network_returns_finite_params(problem):
    """gd with lr = 1e6 on the network: status diverged, params finite, ln-level MSE finite."""
    r = fo.fit(problem, problem.model.init(0), method="gd", lr=1e6, patience=None)
    assert r.status == R.DIVERGED
    for W, b in r.params:
        assert np.all(np.isfinite(W)) and np.all(np.isfinite(b))
    assert np.isfinite(problem.mse(r.params_last))


def test_armijo_gd_decreases_the_loss_monotonically(problem):
    """Backtracking from lr = 2 on the full-batch loss: the loss never goes up."""
    r = fo.fit(problem, problem.model.init(0), method="gd", line_search="armijo", lr=2.0,
               max_iter=150, patience=None)
    loss, step = r.history_array("loss"), r.history_array("step")[1:]
    assert np.all(np.diff(loss) <= 0)
    assert loss[-1] < 0.8 * loss[0]
    assert np.all(step <= 2.0) and np.any(step < 2.0)  # it did backtrack
    g = r.history_array("grad_norm")
    assert np.all(np.isfinite(g))
    assert r.nfev > r.njev == r.nit + 1  # trial evaluations counted


def test_armijo_reports_line_search_failure():
    """|w| at w = 1e-3 with lr = 1 and one allowed halving: no sufficient decrease -> reported."""
    def kink(w):  # |w| near its kink: the step lr * sign(w) overshoots, one halving is not enough
        return jnp.sum(jnp.abs(w))

    r = fo.minimize_first_order(kink, np.array([1e-3]), "gd", line_search="armijo", lr=1.0,
                                max_backtracks=1, patience=None)
    assert r.status == R.LINE_SEARCH_FAILED and not r.success
    np.testing.assert_allclose(r.x, [1e-3])


def test_patience_stops_early_by_the_keras_rule(problem):
    """Adam with a large lr oscillates; it stops after `patience` epochs without a new best."""
    p = 5
    r = fo.fit(problem, problem.model.init(0), method="adam", lr=0.3, patience=p, max_iter=4000)
    assert r.status == R.STALLED and r.success and r.nit < 4000
    loss = r.history_array("loss")
    assert np.min(loss[-p:]) >= np.min(loss[:-p])  # no improvement in the last p epochs
    assert np.min(loss[-p - 1:]) < np.min(loss[:-p - 1])  # ... but one right before them
    assert "patience" in r.message


def test_patience_monitors_the_validation_loss(val_problem):
    """With X_val the val_patience counter follows val_loss (recorded in history)."""
    p = 4
    r = fo.fit(val_problem, val_problem.model.init(0), method="adam", lr=0.3, patience=None,
               val_patience=p)
    assert r.status == R.STALLED and "validation" in r.message
    val = r.history_array("val_loss")
    assert np.all(np.isfinite(val)) and len(val) == r.nit + 1
    assert np.min(val[-p:]) >= np.min(val[:-p])
    val0 = float(val_problem.val_loss(val_problem.model.init(0)))
    assert val[0] == pytest.approx(val0, rel=1e-12)


@pytest.mark.parametrize("batch_size, lanes", [(None, 2), (7, 2)])
def test_fit_many_equals_separate_fits(problem, batch_size, lanes):
    """Three seeds in one vmapped call give each seed's separate fit (x to 1e-10, same nit/status),
    also when the runs stop at different epochs (a stopped run is frozen while the others go on)."""
    model = problem.model
    opts = {"method": "adam", "lr": 0.1, "max_iter": 150, "patience": 10, "batch_size": batch_size}
    many = fo.fit_many(problem, [model.init(s) for s in (0, 1, 2)], lanes=lanes, **opts)
    assert len({r.nit for r in many}) > 1  # the runs did stop at different epochs
    for s, rm in zip((0, 1, 2), many):
        r1 = fo.fit(problem, model.init(s), **opts)
        assert (rm.status, rm.nit, rm.nfev, rm.njev) == (r1.status, r1.nit, r1.nfev, r1.njev)
        np.testing.assert_allclose(rm.x, r1.x, rtol=0, atol=1e-10)
        np.testing.assert_allclose(rm.x_last, r1.x_last, rtol=0, atol=1e-10)
        np.testing.assert_allclose(rm.history_array("loss"), r1.history_array("loss"), rtol=1e-10)
        assert len(rm.history) == rm.nit + 1 and rm.history[-1]["iter"] == rm.nit
    if batch_size:  # ceil(20 / 7) = 3 minibatch gradients + 1 full-batch evaluation per epoch
        assert many[0].njev == 1 + 4 * many[0].nit


def test_train_front_door_with_seeds():
    """ln.train(..., seeds=[...]) uses fit_many and returns finished Results."""
    ds = ln.datasets.load("sin2", n=20)
    res = ln.train(ln.MLP("1-8-1"), ds, method="adam", seeds=[0, 1, 2], lr=0.02, max_iter=150)
    assert [r.seed for r in res] == [0, 1, 2]
    assert all(np.isfinite(r.train_mse) and r.time_s > 0 for r in res)


def test_second_run_does_not_recompile(problem):
    """The chunk function is cached; another lr or max_iter reuses the compiled code."""
    model = problem.model
    fo.fit(problem, model.init(0), method="adam", max_iter=10)
    obj = fo._network_objective(model, problem.loss, float(problem.weight_decay))
    _, run_chunk = fo._compiled(obj, "adam", False, None, False, 256)
    size = run_chunk._cache_size()
    fo.fit(problem, model.init(3), method="adam", lr=0.05, max_iter=37, patience=3)
    assert run_chunk._cache_size() == size


def test_time_budget_ends_with_max_iter_and_says_so(problem):
    r = fo.fit(problem, problem.model.init(0), method="adam", max_iter=100000, patience=None,
               time_budget=1e-6)
    assert r.status == R.MAX_ITER and "time budget" in r.message
    assert 1 <= r.nit < 100000 and np.all(np.isfinite(r.x))


def test_ctrl_c_returns_the_best_iterate_with_status_interrupted(problem):
    """A KeyboardInterrupt between chunks (raised here by the callback) ends the run cleanly."""
    calls = []

    def callback(it, theta, loss):
        calls.append((it, theta.shape, float(loss)))
        if len(calls) == 2:
            raise KeyboardInterrupt

    r = fo.fit(problem, problem.model.init(0), method="adam", lr=0.01, patience=None,
               callback=callback)
    assert r.status == R.INTERRUPTED and not r.success
    assert calls[0] == (32, (problem.model.n_params,), calls[0][2])  # the first chunk: 32 epochs
    assert r.nit == calls[1][0] and len(r.history) == r.nit + 1
    assert r.fun == pytest.approx(r.history_array("loss").min(), rel=1e-12)


def test_callback_returning_true_stops(problem):
    r = fo.fit(problem, problem.model.init(0), method="adam", patience=None,
               callback=lambda it, th, f: it >= 32, progress=True)
    assert r.status == R.INTERRUPTED and r.nit == 32 and "callback" in r.message


@pytest.mark.parametrize("kwargs, match", [
    ({"method": "sgd"}, "unknown first-order method 'sgd'; choose one of: adadelta, adam"),
    ({"method": "adam", "lrate": 0.1}, "unknown option.*'lrate'.*valid options:.*lr"),
    ({"method": "adam", "beta": 0.9}, "unknown option.*'beta'"),
    ({"method": "adam", "lr": 0.0}, "lr must be > 0"),
    ({"method": "adam", "lr": -1.0}, "lr must be > 0"),
    ({"method": "momentum", "beta": 1.0}, "beta must be >= 0 and < 1"),
    ({"method": "adam", "patience": -1}, "patience must be an integer >= 0"),
    ({"method": "adam", "gtol": -1e-3}, "gtol must be >= 0"),
    ({"method": "adam", "min_delta": -1.0}, "min_delta must be >= 0"),
    ({"method": "adam", "max_iter": 2.5}, "max_iter must be an integer"),
    ({"method": "adam", "time_budget": 0}, "time_budget must be > 0"),
    ({"method": "adam", "batch_size": 0}, "batch_size must be an integer >= 1"),
    ({"method": "adam", "batch_size": 21}, "batch_size = 21 exceeds the 20 training samples"),
    ({"method": "gd", "line_search": "wolfe"}, "unknown line_search 'wolfe'"),
    ({"method": "gd", "line_search": "armijo", "batch_size": 5}, "full-batch"),
    ({"method": "adam", "callback": 3}, "callback must be callable"),
    ({"method": "adam", "lanes": 0}, "lanes must be an integer >= 1"),
])
def test_bad_options_raise_before_work(problem, kwargs, match):
    with pytest.raises(LiftnnError, match=match):
        fo.fit(problem, problem.model.init(0), **kwargs)


def test_bad_initial_params_raise(problem):
    p = [(np.asarray(W), np.asarray(b)) for W, b in problem.model.init(0)]
    bad = [(W.copy(), b) for W, b in p]
    bad[0][0][0, 0] = np.nan
    with pytest.raises(LiftnnError, match="initial params 1 contain non-finite"):
        fo.fit_many(problem, [p, bad], method="adam")
    small = [(np.zeros((4, 1)), np.zeros(4)), (np.zeros((1, 4)), np.zeros(1))]  # a 1-4-1 net
    with pytest.raises(LiftnnError, match="params 0 have 13 entries; the network 1-8-1 has 25"):
        fo.fit(problem, small, method="adam")


def test_minimize_first_order_bad_input():
    with pytest.raises(LiftnnError, match="x0 contains non-finite"):
        fo.minimize_first_order(quad, [1.0, np.inf, 0.0], "gd")
    with pytest.raises(LiftnnError, match="unknown option.*'batch_size'"):
        fo.minimize_first_order(quad, W0, "gd", batch_size=2)
    with pytest.raises(LiftnnError, match="must return a scalar"):
        fo.minimize_first_order(lambda w: w * 2.0, W0, "gd")
    with pytest.raises(LiftnnError, match="not finite at the initial point"):
        fo.minimize_first_order(lambda w: jnp.log(w[0] - 5.0), W0, "gd")
    with pytest.raises(LiftnnError, match="unknown first-order method"):
        fo.minimize_first_order(quad, W0, "bfgs")


def test_dropout_trains_with_masks_and_reports_the_deterministic_loss():
    """Dropout (seed 003) in training: the steps use masked gradients (so the path differs from
    the plain network's), the reported loss is the deterministic (inference) one, and the
    result is reproducible; methods that train the deterministic network refuse the model."""
    ds = ln.datasets.load("sin2", n=30, seed=0)
    plain = ln.MLP([1, 12, 12, 1], activation="tanh")
    drop = ln.MLP([1, 12, 12, 1], activation="tanh", dropout=[0.2, 0.1])
    p0 = plain.init(3)
    for bs in (None, 10):
        a = ln.train(plain, ds, method="adam", params0=p0, max_iter=60, patience=None, lr=1e-2,
                     batch_size=bs)
        b = ln.train(drop, ds, method="adam", params0=p0, max_iter=60, patience=None, lr=1e-2,
                     batch_size=bs)
        b2 = ln.train(drop, ds, method="adam", params0=p0, max_iter=60, patience=None, lr=1e-2,
                      batch_size=bs)
        assert not np.allclose(a.x, b.x)
        np.testing.assert_array_equal(b.x, b2.x)
        det = float(np.mean((np.asarray(drop.apply(b.params, ds.x_train)) - ds.y_train) ** 2))
        assert b.fun == pytest.approx(det, rel=1e-10)
        assert b.fun < b.history[0]["loss"]
    with pytest.raises(ln.LiftnnError, match="dropout"):
        ln.train(drop, ds, method="lm", params0=p0)
    with pytest.raises(ln.LiftnnError, match="dropout"):
        ln.train(drop, ds, method="gd", params0=p0, line_search="armijo")
