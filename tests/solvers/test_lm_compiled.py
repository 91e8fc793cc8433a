"""The compiled, vectorised Levenberg-Marquardt (liftnn.solvers.lm_compiled).

Proves: K seeds in one compiled loop give what the per-seed Python lm (network.fit method="lm")
gives - the same statuses, nit, nfev, njev, history and final cost to 1e-8 relative - in the primal
(P <= N: 1-5-1 on 20 points, P = 16) and the dual (P > N: 1-8-8-1, P = 97) systems, with and
without weight decay, for both lane layouts (map, vmap); per-lane weight decays equal single runs
with that weight decay; the stopping rules (stalled on mu_max, converged at x0, max_iter)
and their messages match; compile_s and loop_s are reported; ln.train(seeds=...) uses it; the
fallbacks (validation data, callback) run the Python path.  gn (weight decay > 0 on every lane)
equals the Python gn (statuses, counts, history; cost to 1e-7), and without decay keeps the
Python path.  The MLP Jacobian by written-out backpropagation is autodiff's, and its
Hadamard-product Gram J J^T is J J^T.
"""

from __future__ import annotations

import numpy as np
import pytest

import liftnn as ln
from liftnn.errors import LiftnnError
from liftnn.problem import TrainingProblem
from liftnn.solvers import lm_compiled, network

SEEDS = (0, 1, 2)
MAX_ITER = 60


def _problem(sizes, weight_decay=0.0, val=False):
    rng = np.random.default_rng(0)
    X = np.linspace(-2.0, 2.0, 20)[:, None]
    Y = np.sin(2.0 * X) + 0.05 * rng.normal(size=X.shape)
    model = ln.MLP(sizes, activation="tanh")
    kw = {"X_val": X[::3] + 0.05, "Y_val": Y[::3]} if val else {}
    return TrainingProblem(model, X, Y, loss="mse", weight_decay=weight_decay, **kw), model


def _same(a, b, rtol=1e-8):
    """A compiled Result `a` against the Python lm's `b`."""
    assert a["status"] == b["status"], (a["message"], b["message"])
    assert a["message"] == b["message"]
    assert (a["nit"], a["nfev"], a["njev"], a["nhev"]) == (b["nit"], b["nfev"], b["njev"], 0)
    np.testing.assert_allclose(a["fun"], b["fun"], rtol=rtol, atol=1e-14)
    np.testing.assert_allclose(a["x"], b["x"], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(a["mu"], b["mu"], rtol=1e-12)
    ha, hb = a["history"], b["history"]
    assert [h["iter"] for h in ha] == [h["iter"] for h in hb]
    for key in ("loss", "grad_norm", "mu", "trials", "nfev", "njev"):
        np.testing.assert_allclose(a.history_array(key), b.history_array(key), rtol=1e-6,
                                   atol=1e-14, err_msg=key)
    assert np.all(np.isfinite(a["x"]))
    assert a["residual"].shape == b["residual"].shape
    np.testing.assert_allclose(a["grad"], b["grad"], rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("sizes", [[1, 5, 1], [1, 8, 8, 1]], ids=["primal", "dual"])
@pytest.mark.parametrize("weight_decay", [0.0, 1e-3])
def test_compiled_lm_equals_python_lm(sizes, weight_decay):
    problem, model = _problem(sizes, weight_decay)
    p0s = [model.init(s) for s in SEEDS]
    got = lm_compiled.fit_many(problem, p0s, max_iter=MAX_ITER)
    assert got[0]["solver"] == "lm_compiled"
    for a, p0 in zip(got, p0s):
        _same(a, network.fit(problem, p0, method="lm", max_iter=MAX_ITER))


def test_vmap_lanes_equal_map_lanes():
    problem, model = _problem([1, 8, 8, 1], 1e-3)
    p0s = [model.init(s) for s in SEEDS]
    a = lm_compiled.fit_many(problem, p0s, max_iter=MAX_ITER, lanes="vmap")
    b = lm_compiled.fit_many(problem, p0s, max_iter=MAX_ITER, lanes="map")
    for x, y in zip(a, b):
        assert (x["lanes"], y["lanes"]) == ("vmap", "map")
        assert (x["status"], x["nit"], x["nfev"]) == (y["status"], y["nit"], y["nfev"])
        np.testing.assert_allclose(x["fun"], y["fun"], rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("lanes", ["map", "vmap"])
def test_idle_lanes_of_pad_to_change_nothing_and_share_the_program(lanes):
    problem, model = _problem([1, 5, 1], 1e-3)
    p0s = [model.init(s) for s in SEEDS]
    full = lm_compiled.fit_many(problem, p0s, max_iter=MAX_ITER, lanes=lanes, pad_to=3)
    fewer = lm_compiled.fit_many(problem, p0s[1:], max_iter=MAX_ITER, lanes=lanes, pad_to=3)
    assert len(fewer) == 2 and fewer[0]["compile_s"] == 0.0  # the 3-lane program again
    for a, b in zip(fewer, full[1:]):
        assert (a["status"], a["nit"], a["nfev"]) == (b["status"], b["nit"], b["nfev"])
        np.testing.assert_allclose(a["x"], b["x"], rtol=1e-10, atol=1e-14)
    with pytest.raises(LiftnnError, match="pad_to = 2"):
        lm_compiled.fit_many(problem, p0s, max_iter=MAX_ITER, lanes=lanes, pad_to=2)


def test_per_lane_weight_decays_equal_single_runs():
    problem, model = _problem([1, 5, 1], 0.0)
    mus = [0.0, 1e-3, 3e-2]
    p0s = [model.init(s) for s in SEEDS]
    got = lm_compiled.fit_many(problem, p0s, weight_decays=mus, max_iter=MAX_ITER)
    for a, mu, p0 in zip(got, mus, p0s):
        single = TrainingProblem(model, problem.X, problem.Y, loss="mse", weight_decay=mu)
        _same(a, network.fit(single, p0, method="lm", max_iter=MAX_ITER))
        assert a["residual"].shape == (20 + (model.n_params if mu else 0),)
    with pytest.raises(LiftnnError, match="weight_decays"):
        lm_compiled.fit_many(problem, p0s, weight_decays=[1e-3, -1.0, 0.0])
    with pytest.raises(LiftnnError, match="weight_decays"):
        lm_compiled.fit_many(problem, p0s, weight_decays=[1e-3, 0.0])


@pytest.mark.parametrize("options", [{"mu_max": 1e-1}, {"gtol": 1e3}, {"max_iter": MAX_ITER},
                                     {"ftol": 1e-3}, {"xtol": 1e-2}],
                         ids=["stalled", "gtol-at-x0", "max_iter", "ftol", "xtol"])
def test_stopping_rules_match_python(options):
    problem, model = _problem([1, 5, 1], 1e-3)
    p0s = [model.init(s) for s in SEEDS]
    options = {"max_iter": MAX_ITER, **options}
    got = lm_compiled.fit_many(problem, p0s, **options)
    for a, p0 in zip(got, p0s):
        _same(a, network.fit(problem, p0, method="lm", **options))


def test_compile_and_loop_times_are_reported():
    problem, model = _problem([1, 5, 1])
    lm_compiled._COMPILED.clear()
    p0s = [model.init(s) for s in SEEDS]
    first = lm_compiled.fit_many(problem, p0s, max_iter=MAX_ITER)
    for r in first:
        assert r["compile_s"] > 0 and r["loop_s"] > 0 and not r["compile_cached"]
        t = r.history_array("time")
        assert np.all(np.diff(t) >= 0) and t[0] >= r["compile_s"]
    again = lm_compiled.fit_many(problem, p0s, max_iter=MAX_ITER)  # same shapes: reused
    assert again[0]["compile_cached"] and again[0]["compile_s"] == 0.0 and again[0]["loop_s"] > 0


def test_train_with_seeds_runs_the_compiled_lm():
    ds = ln.datasets.load("sin2", n=20)
    model = ln.MLP([1, 5, 1], activation="tanh")
    many = ln.train(model, ds, method="lm", seeds=[0, 1], max_iter=MAX_ITER)
    for s, r in zip((0, 1), many):
        assert r["solver"] == "lm_compiled" and r["seed"] == s
        one = ln.train(model, ds, method="lm", seed=s, max_iter=MAX_ITER)  # the Python path
        assert "solver" not in one
        assert (r["status"], r["nit"]) == (one["status"], one["nit"])
        np.testing.assert_allclose(r["fun"], one["fun"], rtol=1e-8)
        np.testing.assert_allclose(r["test_mse"], one["test_mse"], rtol=1e-6)


def test_fallbacks_run_the_python_path():
    problem, model = _problem([1, 5, 1], 0.0, val=True)
    p0s = [model.init(s) for s in SEEDS[:2]]
    assert "validation" in lm_compiled.fallback_reason(problem, {})
    got = lm_compiled.fit_many(problem, p0s, weight_decays=[0.0, 1e-3], max_iter=20)
    for a, mu, p0 in zip(got, (0.0, 1e-3), p0s):
        assert "solver" not in a and "val_loss" in a
        single = TrainingProblem(model, problem.X, problem.Y, weight_decay=mu,
                                 X_val=problem.X_val, Y_val=problem.Y_val)
        b = network.fit(single, p0, method="lm", max_iter=20)
        assert (a["status"], a["nit"]) == (b["status"], b["nit"])
        np.testing.assert_allclose(a["fun"], b["fun"], rtol=1e-12)
    plain, _ = _problem([1, 5, 1])
    calls = []
    got = lm_compiled.fit_many(plain, p0s, max_iter=5,
                               callback=lambda k, x, f: calls.append(k) is not None)
    assert "solver" not in got[0] and calls
    ds = ln.datasets.load("sin2", n=20)
    res = ln.train(model, ds, method="lm", seeds=[0, 1], validation=0.25, max_iter=20)
    assert all("val_loss" in r and "solver" not in r for r in res)


def test_unknown_option_is_refused():
    problem, model = _problem([1, 5, 1])
    with pytest.raises(LiftnnError, match="not_an_option"):
        lm_compiled.fit_many(problem, [model.init(0)], not_an_option=1)


def _same_gn(a, b):
    assert (a["status"], a["nit"], a["nfev"], a["njev"]) == (b["status"], b["nit"], b["nfev"],
                                                             b["njev"]), (a["message"], b["message"])
    if "rank" not in b["message"]:  # the compiled stall message has no rank
        assert a["message"] == b["message"]
    # gn's slow tail at max_iter amplifies rounding differences (SVD vs Cholesky) a little
    np.testing.assert_allclose(a["fun"], b["fun"], rtol=1e-7, atol=1e-14)
    np.testing.assert_allclose(a.history_array("loss"), b.history_array("loss"), rtol=1e-6)
    np.testing.assert_allclose(a.history_array("step"), b.history_array("step"), rtol=1e-6)


@pytest.mark.parametrize("sizes", [[1, 5, 1], [1, 8, 8, 1]], ids=["primal", "dual"])
@pytest.mark.parametrize("options", [{}, {"max_ls": 2, "shrink": 0.1}], ids=["default", "short-ls"])
def test_compiled_gn_with_weight_decay_equals_python_gn(sizes, options):
    problem, model = _problem(sizes, 0.0)
    mus = [1e-3, 1e-2, 3e-4]
    p0s = [model.init(s) for s in SEEDS]
    got = lm_compiled.fit_many(problem, p0s, method="gn", weight_decays=mus, max_iter=MAX_ITER,
                               **options)
    for a, mu, p0 in zip(got, mus, p0s):
        assert a["solver"] == "lm_compiled" and a["method"] == "gn" and "mu" not in a
        single = TrainingProblem(model, problem.X, problem.Y, loss="mse", weight_decay=mu)
        _same_gn(a, network.fit(single, p0, method="gn", max_iter=MAX_ITER, **options))


def test_gn_without_weight_decay_keeps_the_python_path():
    problem, model = _problem([1, 5, 1], 0.0)
    p0s = [model.init(s) for s in SEEDS[:2]]
    assert "weight decay" in lm_compiled.fallback_reason(problem, {}, method="gn")
    got = lm_compiled.fit_many(problem, p0s, method="gn", weight_decays=[1e-3, 0.0], max_iter=20)
    for a, mu, p0 in zip(got, (1e-3, 0.0), p0s):
        assert "solver" not in a
        single = TrainingProblem(model, problem.X, problem.Y, weight_decay=mu)
        b = network.fit(single, p0, method="gn", max_iter=20)
        assert (a["status"], a["nit"]) == (b["status"], b["nit"])
    assert ln.methods.METHODS["gn"].fit_many is not None


@pytest.mark.parametrize("sizes, act, bias", [([3, 6, 5, 1], "relu", True),
                                              ([3, 4, 5, 2], "tanh", False),
                                              ([2, 5, 4, 3], ["softplus", "leaky_relu"], True)])
def test_mlp_jacobian_and_gram_are_autodiff_s(sizes, act, bias):
    import jax

    rng = np.random.default_rng(0)
    model = ln.MLP(sizes, activation=act, bias=bias, output_activation="sigmoid")
    X, Y = rng.normal(size=(7, sizes[0])), rng.normal(size=(7, sizes[-1]))
    problem = TrainingProblem(model, X, Y)
    theta = problem.flatten(model.init(1))
    c = (2.0 / Y.size) ** 0.5
    J = jax.jit(lm_compiled.mlp_jacobian(model, problem.unflatten, c))(theta, problem.X,
                                                                        problem.Y)
    np.testing.assert_allclose(J, jax.jit(jax.jacfwd(problem.residual))(theta), rtol=1e-12,
                               atol=1e-15)
    G = jax.jit(lm_compiled._mlp_gram(model, problem.unflatten, c))(theta, problem.X, problem.Y)
    np.testing.assert_allclose(G, J @ J.T, rtol=1e-12, atol=1e-15)


def test_compile_ahead_prepares_the_program_that_fit_many_runs():
    """compile_ahead lowers here and compiles in the background; fit_many with other weight
    decays then runs that program, with the results of a plain call to the bit; where fit_many
    would not compile (gn without weight decay), nothing is prepared."""
    import concurrent.futures

    problem, model = _problem([1, 6, 1], 1e-3)
    p0s = [model.init(s) for s in SEEDS]
    lm_compiled._COMPILED.clear()
    lm_compiled.compile_ahead(problem, p0s, weight_decays=[0.5] * 3, max_iter=MAX_ITER)
    (entry,) = lm_compiled._COMPILED.values()
    assert isinstance(entry, concurrent.futures.Future)
    ahead = lm_compiled.fit_many(problem, p0s, max_iter=MAX_ITER)
    (exe,) = lm_compiled._COMPILED.values()  # the future's executable, collected
    assert not isinstance(exe, concurrent.futures.Future)
    assert not ahead[0]["compile_cached"] and ahead[0]["compile_s"] >= 0.0
    assert lm_compiled.fit_many(problem, p0s, max_iter=MAX_ITER)[0]["compile_cached"]
    lm_compiled._COMPILED.clear()
    plain = lm_compiled.fit_many(problem, p0s, max_iter=MAX_ITER)
    for a, b in zip(ahead, plain):
        assert (a["status"], a["nit"], a["nfev"]) == (b["status"], b["nit"], b["nfev"])
        np.testing.assert_array_equal(a["x"], b["x"])
    bare, _ = _problem([1, 6, 1], 0.0)
    lm_compiled._COMPILED.clear()
    lm_compiled.compile_ahead(bare, p0s, method="gn", max_iter=MAX_ITER)
    assert not lm_compiled._COMPILED


def test_a_failed_background_compilation_is_compiled_again_in_the_call():
    """A compile_ahead future that failed is dropped, and fit_many compiles in the call."""
    import concurrent.futures

    problem, model = _problem([1, 7, 1], 1e-3)
    p0s = [model.init(s) for s in SEEDS]
    lm_compiled._COMPILED.clear()
    lm_compiled.compile_ahead(problem, p0s, max_iter=MAX_ITER)
    (key,) = lm_compiled._COMPILED
    lm_compiled._COMPILED[key].result()  # let it finish, then plant a failure in its place
    failed = concurrent.futures.Future()
    failed.set_exception(RuntimeError("XLA ran out of memory"))
    lm_compiled._COMPILED[key] = failed
    got = lm_compiled.fit_many(problem, p0s, max_iter=MAX_ITER)
    assert got[0]["compile_s"] > 0 and not got[0]["compile_cached"]
    assert not isinstance(lm_compiled._COMPILED[key], concurrent.futures.Future)
