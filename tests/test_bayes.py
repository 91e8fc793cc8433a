"""weight_decay="bayes" (liftnn.bayes) and ensembles (liftnn.ensemble): the evidence quantities
against dense linear algebra, the Laplace predictive variance against its dense formula, the
coverage of the predictive interval on a problem whose noise is known, and the bad inputs."""

from __future__ import annotations

import math
import os

import jax
import numpy as np
import pytest

import liftnn as ln
from liftnn import bayes
from liftnn.datasets.base import Dataset
from liftnn.ensemble import Ensemble, Member, ensemble, select_by_evidence
from liftnn.errors import LiftnnError
from liftnn.problem import TrainingProblem


def _net(sizes=(2, 5, 1), seed=0):
    model = ln.MLP(sizes, activation="tanh")
    return model, model.init(seed)


@pytest.mark.parametrize("m", [40, 6], ids=["P<N", "P>N"])
def test_gamma_from_the_smaller_gram_equals_the_dense_trace(m):
    """gamma = P - alpha tr((beta J^T J + alpha I)^-1) (dense) = sum lambda/(lambda + r)."""
    model, params = _net()
    X = np.random.default_rng(0).normal(size=(m, 2))
    J = bayes.jacobian(model, params, X)
    P = J.shape[1]
    lam, _, side = bayes.gram_eigh(J)
    assert side == ("params" if P <= m else "samples")
    alpha, beta = 0.3, 7.0
    dense = P - alpha * np.trace(np.linalg.inv(beta * J.T @ J + alpha * np.eye(P)))
    assert bayes.effective_params(lam, alpha / beta) == pytest.approx(dense, rel=1e-10)


def test_jacobian_matches_finite_differences():
    model, params = _net()
    X = np.random.default_rng(1).normal(size=(4, 2))
    J = bayes.jacobian(model, params, X)
    problem = TrainingProblem(model, X, np.zeros((4, 1)))
    theta = np.asarray(problem.flatten(params))
    h = 1e-6
    for j in (0, 7, J.shape[1] - 1):
        e = np.zeros_like(theta)
        e[j] = h
        fd = (np.asarray(model.apply(problem.unflatten(theta + e), X))
              - np.asarray(model.apply(problem.unflatten(theta - e), X))).ravel() / (2 * h)
        np.testing.assert_allclose(J[:, j], fd, atol=1e-8)


@pytest.mark.parametrize("sizes, kw", [((3, 4, 5, 2), {"activation": "relu"}),
                                       ((2, 6, 3), {"activation": "tanh", "bias": False}),
                                       ((2, 4, 1), {"activation": "sigmoid",
                                                    "output_activation": "tanh"})])
def test_the_mlp_jacobian_by_backpropagation_equals_autodiff(sizes, kw):
    """bayes.jacobian takes an MLP's Jacobian from the written-out backpropagation of
    lm_compiled (not jax.jacfwd): the same matrix, rows (sample, output) in ravel order."""
    model = ln.MLP(sizes, **kw)
    params = model.init(3)
    X = np.random.default_rng(4).normal(size=(7, sizes[0]))
    problem = TrainingProblem(model, X, np.zeros((7, sizes[-1])))
    theta = problem.flatten(params)
    ref = jax.jacfwd(lambda t: model.apply(problem.unflatten(t), X).reshape(-1))(theta)
    np.testing.assert_allclose(bayes.jacobian(model, params, X), np.asarray(ref), rtol=1e-12,
                               atol=1e-13)


@pytest.mark.parametrize("m", [40, 6], ids=["P<N", "P>N"])
def test_evidence_updates_and_log_evidence_against_dense_formulas(m):
    model, params = _net()
    rng = np.random.default_rng(2)
    X, Y = rng.normal(size=(m, 2)), rng.normal(size=(m, 1))
    J = bayes.jacobian(model, params, X)
    N, P = J.shape
    e = np.asarray(model.apply(params, X)) - Y
    sse = float(np.sum(e**2))
    ssw = float(np.sum(np.asarray(TrainingProblem(model, X, Y).flatten(params)) ** 2))
    ratio = 0.05
    ev = bayes.evidence(bayes.gram_eigh(J)[0], sse, ssw, N, P, ratio)
    gamma = float(np.sum(np.linalg.eigvalsh(J.T @ J) / (np.linalg.eigvalsh(J.T @ J) + ratio)))
    assert ev.gamma == pytest.approx(gamma, rel=1e-9)
    assert ev.alpha == pytest.approx(gamma / ssw) and ev.beta == pytest.approx((N - gamma) / sse)
    A = ev.beta * J.T @ J + ev.alpha * np.eye(P)
    log_ev = (-0.5 * ev.beta * sse - 0.5 * ev.alpha * ssw - 0.5 * np.linalg.slogdet(A)[1]
              + 0.5 * P * math.log(ev.alpha) + 0.5 * N * math.log(ev.beta)
              - 0.5 * N * math.log(2 * math.pi))
    assert ev.log_evidence == pytest.approx(log_ev, rel=1e-10)
    assert ev.ratio == pytest.approx(ev.alpha / ev.beta)


@pytest.mark.parametrize("m", [40, 6], ids=["P<N", "P>N"])
def test_posterior_variance_equals_the_dense_laplace_formula(m):
    model, params = _net()
    rng = np.random.default_rng(3)
    X, Xn = rng.normal(size=(m, 2)), rng.normal(size=(5, 2))
    alpha, beta = 0.7, 20.0
    post = bayes.Posterior.from_fit(model, params, X, alpha, beta)
    mean, std = post.predict(Xn)
    J, G = bayes.jacobian(model, params, X), bayes.jacobian(model, params, Xn)
    Ainv = np.linalg.inv(beta * J.T @ J + alpha * np.eye(J.shape[1]))
    var = 1.0 / beta + np.einsum("ip,pq,iq->i", G, Ainv, G)
    np.testing.assert_allclose(std[:, 0] ** 2, var, rtol=1e-9)
    np.testing.assert_allclose(mean, np.asarray(model.apply(params, Xn)), atol=1e-14)


def test_weak_start_puts_half_the_weights_under_the_prior():
    model, params = _net()
    X = np.random.default_rng(4).normal(size=(30, 2))
    lam = bayes.gram_eigh(bayes.jacobian(model, params, X))[0]
    r0 = bayes.weak_start(lam, 30, 21)
    assert bayes.effective_params(lam, r0) == pytest.approx(min(30, 21) / 2, rel=1e-6)


def test_rank_prefers_a_non_degenerate_network_then_the_evidence():
    assert bayes.rank(10.0, -21.0) > bayes.rank(0.5, -20.0)
    assert bayes.rank(10.0, -20.0) > bayes.rank(8.0, -21.0)
    assert bayes.rank(0.5, -19.0) > bayes.rank(0.4, -20.0)


def _noisy_sine(n, seed, noise=0.1):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2, 2, size=(n, 1))
    return x, np.sin(2 * x) + noise * rng.normal(size=(n, 1))


@pytest.fixture(scope="module")
def bayes_lm_fit():
    X, Y = _noisy_sine(60, 0)
    Xt, Yt = _noisy_sine(400, 1)
    data = Dataset(X, Y, Xt, Yt, meta={"name": "noisy-sine"})
    model = ln.MLP((1, 8, 1), activation="tanh")
    return model, data, ln.train(model, data, method="lm", seed=0, weight_decay="bayes")


def test_bayes_reports_its_evidence_and_trains_with_the_re_estimated_decay(bayes_lm_fit):
    _model, _data, res = bayes_lm_fit
    for key in ("alpha", "beta", "effective_params", "log_evidence", "weight_decay",
                "bayes_path", "bayes_start_used"):
        assert key in res
    assert 1.0 <= res.effective_params < 25  # P = 25 weights, well below all of them
    assert res.weight_decay == pytest.approx(
        next(r["weight_decay"] for r in res.bayes_path if r["cycle"] == res.bayes_cycle))
    # the noise level the evidence estimates is the one the data were made with (0.1)
    assert 0.06 < 1 / math.sqrt(res.beta) < 0.15
    assert res.test_mse < 0.02


def test_the_cycles_end_once_the_evidence_has_fallen_past_its_best(bayes_lm_fit):
    """CYCLE_PATIENCE trainings in a row below the best candidate end a path: none runs on."""
    _model, _data, res = bayes_lm_fit
    path = res.bayes_path
    best = max(range(len(path)), key=lambda i: bayes.rank(path[i]["gamma"],
                                                          path[i]["log_evidence"]))
    assert path[best]["cycle"] == res.bayes_cycle
    assert len(path) - res.bayes_cycle <= bayes.CYCLE_PATIENCE
    if not res.bayes_settled:
        assert len(path) - res.bayes_cycle == bayes.CYCLE_PATIENCE or len(path) == 12


def test_predictive_interval_covers_the_noisy_test_targets(bayes_lm_fit):
    """95 % interval (+-1.96 std) on test targets that carry the training noise."""
    model, data, res = bayes_lm_fit
    post = bayes.Posterior.from_fit(model, res.params, data.x_train, res.alpha, res.beta)
    mean, std = post.predict(data.x_test)
    inside = np.abs(data.y_test - mean) <= 1.96 * std
    assert 0.85 <= inside.mean() <= 0.99


def test_ensemble_mean_and_mixture_std():
    model, p0 = _net(seed=0)
    _, p1 = _net(seed=1)
    X = np.random.default_rng(5).normal(size=(7, 2))
    ens = Ensemble(model, [Member(p0, None), Member(p1, None)])
    f0, f1 = np.asarray(model.apply(p0, X)), np.asarray(model.apply(p1, X))
    np.testing.assert_allclose(ens.predict(X), (f0 + f1) / 2, atol=1e-14)
    _, std = ens.predict(X, return_std=True)
    np.testing.assert_allclose(std, np.abs(f0 - f1) / 2, atol=1e-12)  # the spread alone
    assert not ens.has_noise
    with pytest.raises(LiftnnError, match="weight_decay='bayes'"):
        Ensemble(model, [Member(p0, None)]).predict(X, return_std=True)


def test_select_by_evidence_and_its_bad_input():
    assert select_by_evidence([{"log_evidence": -3.0}, {"log_evidence": -1.0}])[
        "log_evidence"] == -1.0
    with pytest.raises(LiftnnError, match="weight_decay='bayes'"):
        select_by_evidence([{"fun": 1.0}])
    model, p0 = _net()
    assert len(ensemble(model, [{"params": p0}])) == 1


def test_alm_with_one_weight_decay_per_seed_equals_separate_runs():
    """Per-seed decays in one batch = the problem's decay (bit for bit when they are all equal)
    and = one run per seed up to the rounding of a batched vs single solve (1e-7 after five
    outer iterations)."""
    from liftnn.lifted import alm

    data = ln.datasets.load("sin2", n=10)
    model = ln.MLP("1-4-1", activation="tanh")
    p0s = [model.init(0), model.init(1)]

    def problem(mu):
        return TrainingProblem(model, data.x_train, data.y_train, weight_decay=mu)

    same = alm.fit_many(problem(0.5), p0s, weight_decays=[1e-3, 1e-3], max_outer=5)
    ref = alm.fit_many(problem(1e-3), p0s, max_outer=5)
    for a, b in zip(same, ref):
        np.testing.assert_array_equal(a["x"], b["x"])
    mus = [1e-3, 1e-2]
    many = alm.fit_many(problem(0.5), p0s, weight_decays=mus, max_outer=5)
    for mu, p0, r in zip(mus, p0s, many):
        one = alm.fit(problem(mu), p0, max_outer=5)
        # a batch of two and a batch of one round differently in XLA's kernels (machine
        # dependent: 3e-6 relative on one CPU after ~100 Gauss-Newton steps); the same decay
        # in both lanes above is exact
        np.testing.assert_allclose(r["x"], one["x"], rtol=1e-4, atol=1e-8)
        assert r["fun"] == pytest.approx(one["fun"], rel=1e-4)


@pytest.mark.parametrize("kw, match", [
    ({"method": "adam", "weight_decay": "bayes"}, "Gauss-Newton method"),
    ({"method": "lm", "weight_decay": "bayes", "bayes_start": "middle"}, "bayes_start"),
    ({"method": "lm", "weight_decay": "bayes", "bayes_max_cycles": 0}, "bayes_max_cycles"),
    ({"method": "lm", "weight_decay": "bayes", "bayes_tol": 2.0}, "bayes_tol"),
    ({"method": "lm", "weight_decay": "bayesian"}, "'bayes'"),
    ({"method": "alm", "weight_decay": "bayes", "bayes_refine": "adam"}, "bayes_refine"),
])
def test_bad_bayes_options_are_refused_before_work(kw, match):
    data = ln.datasets.load("sin2", n=10)
    with pytest.raises(LiftnnError, match=match):
        ln.train(ln.MLP("1-4-1"), data, **kw)


def _ce_net(m, seed=0):
    model = ln.MLP((2, 4, 3), activation="tanh")
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(m, 2))
    Y = np.eye(3)[rng.integers(0, 3, size=m)]
    return model, model.init(seed), X, Y


@pytest.mark.parametrize("m", [30, 4], ids=["P<N", "P>N"])
def test_classification_gram_is_the_ggn_of_the_summed_cross_entropy(m):
    """F^T F = J^T H J for the factor F of bayes.ggn_jacobian, H = jax.hessian of the summed
    cross-entropy in the logits; gamma from its eigenvalues = the dense trace P - alpha tr((J^T H J + alpha I)^-1)."""
    import jax

    model, params, X, Y = _ce_net(m)
    JH = bayes.ggn_jacobian(model, params, X, Y)
    J = bayes.jacobian(model, params, X)
    logits = np.asarray(model.apply(params, X)).reshape(-1)
    H = np.asarray(jax.hessian(
        lambda z: -np.float64(1.0) * jax.numpy.sum(
            jax.numpy.asarray(Y) * jax.nn.log_softmax(z.reshape(m, 3), axis=1)))(logits))
    np.testing.assert_allclose(JH.T @ JH, J.T @ H @ J, atol=1e-10)
    lam = bayes.gram_eigh(JH)[0]
    P, alpha = J.shape[1], 0.4
    dense = P - alpha * np.trace(np.linalg.inv(J.T @ H @ J + alpha * np.eye(P)))
    ev = bayes.evidence_ce(lam, 1.0, 2.0, P, alpha)
    assert ev.gamma == pytest.approx(dense, rel=1e-9)
    assert ev.alpha == pytest.approx(dense / 2.0, rel=1e-9)
    # the log evidence by the dense determinant of A = J^T H J + alpha' I
    A = J.T @ H @ J + ev.alpha * np.eye(P)
    want = (-1.0 - 0.5 * ev.alpha * 2.0 - 0.5 * np.linalg.slogdet(A)[1]
            + 0.5 * P * np.log(ev.alpha))
    assert ev.log_evidence == pytest.approx(want, rel=1e-9)


@pytest.mark.parametrize("method", ["lm", "alm"])
def test_bayes_classifies_and_reports_the_evidence(method):
    data = ln.datasets.load("iris", labels="onehot")
    res = ln.train(ln.MLP("4-6-3"), data, method=method, loss="cross_entropy",
                   weight_decay="bayes", bayes_max_cycles=3,
                   **({"max_iter": 50} if method == "lm" else {"max_outer": 10}))
    assert 1.0 <= res.effective_params < 51 and res.alpha > 0 and math.isnan(res.beta)
    assert res.weight_decay == pytest.approx(
        next(r["weight_decay"] for r in res.bayes_path if r["cycle"] == res.bayes_cycle))
    assert res.test_accuracy > 0.8


def test_estimator_return_std_needs_a_posterior():
    pytest.importorskip("sklearn")
    from liftnn.sklearn import LiftnnRegressor

    X, Y = _noisy_sine(30, 2)
    est = LiftnnRegressor(hidden_layer_sizes=(4,), method="lbfgs", weight_decay=0.0,
                          random_state=0, max_iter=20).fit(X, Y[:, 0])
    with pytest.raises(ValueError, match="weight_decay='bayes'"):
        est.predict(X, return_std=True)
    with pytest.raises(ValueError, match="combine='evidence'"):
        LiftnnRegressor(method="lm", combine="evidence", weight_decay=0.0).fit(X, Y[:, 0])


def test_estimator_bayes_ensemble_predicts_mean_and_std():
    pytest.importorskip("sklearn")
    from liftnn.sklearn import LiftnnRegressor

    X, Y = _noisy_sine(40, 3)
    est = LiftnnRegressor(hidden_layer_sizes=(6,), method="lm", weight_decay="bayes", n_init=2,
                          random_state=0).fit(X, Y[:, 0])
    mean, std = est.predict(X, return_std=True)
    assert mean.shape == std.shape == (40,) and np.all(std > 0)
    np.testing.assert_allclose(mean, est.predict(X), atol=1e-14)
    members = [np.asarray(est.model_.apply(r["params"], X))[:, 0] for r in est.results_]
    np.testing.assert_allclose(mean, np.mean(members, axis=0), atol=1e-12)


def test_an_interrupted_training_ends_the_cycles_with_status_interrupted(monkeypatch):
    """Ctrl-C (or the CLI's SIGTERM) caught by a trainer ends every cycle and start: the best
    network so far comes back with status interrupted, as from the trainers themselves."""
    monkeypatch.setenv(bayes.THREADS_ENV, "off")  # the starts one after the other
    model, p0 = _net((1, 4, 1))
    X, Y = _noisy_sine(20, 6)
    calls = []

    def train_cycle(mus, params_list):
        calls.append(len(mus))
        return [{"params": p, "status": "interrupted", "nit": 1, "message": ""}
                for p in params_list]

    own = {**bayes.DEFAULTS}
    [res] = bayes.fit(train_cycle, model, X, Y, "mse", [p0], own)
    assert calls == [1]  # one cycle of one start, then nothing more
    assert res["status"] == "interrupted" and not res["success"]
    assert "interrupted during Bayesian regularisation" in res["message"]


@pytest.mark.parametrize("start", ["both", "auto"])
def test_with_the_starts_side_by_side_an_interrupt_ends_both(monkeypatch, start):
    """The first start (this thread) is interrupted: the second start (a worker thread) ends
    after the training it is in, and every Result says interrupted."""
    monkeypatch.setenv(bayes.THREADS_ENV, "on")
    model, p0 = _net((1, 4, 1))
    X, Y = _noisy_sine(20, 6)
    import threading

    calls = []

    def train_cycle(mus, params_list):
        main = threading.current_thread() is threading.main_thread()
        calls.append(main)
        status = "interrupted" if main else "max_iter"
        return [{"params": p, "status": status, "nit": 1, "message": ""} for p in params_list]

    [res] = bayes.fit(train_cycle, model, X, Y, "mse", [p0],
                      {**bayes.DEFAULTS, "bayes_start": start})
    assert calls.count(True) == 1 and 1 <= calls.count(False) <= bayes.DEFAULTS["bayes_max_cycles"]
    assert res["status"] == "interrupted" and not res["success"]
    assert "interrupted during Bayesian regularisation" in res["message"]


@pytest.mark.parametrize("method", ["alm", "lm"])
def test_the_starts_side_by_side_give_what_they_give_one_after_the_other(monkeypatch, method):
    data = ln.datasets.load("sin2", n=20, noise=0.1)
    model = ln.MLP("1-4-1", activation="tanh")
    out = {}
    for how in ("off", "on"):
        monkeypatch.setenv(bayes.THREADS_ENV, how)
        out[how] = ln.train(model, data, method=method, seeds=range(2), weight_decay="bayes",
                            bayes_start="both", bayes_max_cycles=3, max_iter=30)
    for a, b in zip(out["off"], out["on"]):
        assert a["bayes_start_used"] == b["bayes_start_used"]
        assert a["bayes_log_evidence_by_start"] == pytest.approx(b["bayes_log_evidence_by_start"])
        np.testing.assert_allclose(a["x"], b["x"], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("threads", ["off", "on"])
def test_auto_start_trains_the_weak_start_only_where_the_strong_one_is_a_constant(
        monkeypatch, threads):
    """bayes_start="auto" (least squares): the strong start for every initialisation, the weak
    start's Results only for those whose strong network has fewer than d_out + 1 effective
    parameters (one after the other it trains only those; side by side it trains all in the
    worker thread while the strong start trains in this one)."""
    import threading

    monkeypatch.setenv(bayes.THREADS_ENV, threads)
    model, p0 = _net((1, 4, 1))
    _, p1 = _net((1, 4, 1), seed=1)
    X, Y = _noisy_sine(20, 6)
    calls = []

    def train_cycle(mus, params_list):
        main = threading.current_thread() is threading.main_thread()
        strong = main and (threads == "on" or not calls)  # the strong start trains here first
        calls.append(len(mus))
        # initialisation 0's strong start collapses to the zero network; the rest keep theirs
        return [{"params": jax.tree_util.tree_map(lambda a: 0.0 * a, p)
                 if strong and p is p0 else p, "status": "max_iter", "nit": 1, "message": ""}
                for p in params_list]

    own = {**bayes.DEFAULTS, "bayes_max_cycles": 1}
    assert own["bayes_start"] == "auto"
    res = bayes.fit(train_cycle, model, X, Y, "mse", [p0, p1], own)
    assert sorted(calls) == ([1, 2] if threads == "off" else [2, 2])
    assert set(res[0]["bayes_log_evidence_by_start"]) == {"strong", "weak"}
    assert res[0]["bayes_start_used"] == "weak"  # a non-degenerate network beats the constant
    assert res[1]["bayes_start_used"] == "strong"
    assert set(res[1]["bayes_log_evidence_by_start"]) == {"strong"}
    assert res[1]["effective_params"] >= 2
    # needed for none: one after the other the weak start never trains; side by side it is
    # stopped after its current training and dropped, and the call is not interrupted
    calls.clear()
    [r1] = bayes.fit(train_cycle, model, X, Y, "mse", [p1], {**own, "bayes_max_cycles": 3})
    assert set(r1["bayes_log_evidence_by_start"]) == {"strong"}
    assert r1["status"] == "max_iter" and "interrupted" not in r1["message"]

    def net(gamma):
        return {"effective_params": gamma, "log_evidence": -10.0}

    # more targets than weights: only a constant asks for the weak start
    assert bayes.second_start(net(0.8), 1, 10, 20) and not bayes.second_start(net(2.0), 1, 10, 20)
    assert bayes.second_start(net(float("nan")), 1, 10, 20)
    assert bayes.second_start(net(2.5), 2, 10, 20)
    # more weights than targets: always
    assert bayes.second_start(net(25.0), 1, 50, 20)


def test_auto_start_on_sin2_keeps_the_weak_start_where_the_strong_one_collapses():
    data = ln.datasets.load("sin2", n=40, noise=0.1)
    model = ln.MLP("1-16-1", activation="tanh")
    [res] = ln.train(model, data, method="alm", seeds=[0], weight_decay="bayes")
    assert set(res["bayes_log_evidence_by_start"]) == {"strong", "weak"}
    assert res["bayes_start_used"] == "weak" and res["effective_params"] > 5
    [strong] = ln.train(model, data, method="alm", seeds=[0], weight_decay="bayes",
                        bayes_start="strong")
    assert strong["effective_params"] < 2  # the constant the auto start does not keep
    assert res["log_evidence"] == pytest.approx(res["bayes_log_evidence_by_start"]["weak"])


def test_the_refiner_of_the_later_cycles():
    own = {**bayes.DEFAULTS}
    N, P = 100, 150
    assert bayes.refiner("alm", "mse", own, N, P) == "lm"
    assert bayes.refiner("lifted-gn", "sse", own, N, P) == "lm"
    # far more weights than targets: the method itself, unless asked
    assert bayes.refiner("alm", "mse", own, N, 4 * N) is None
    assert bayes.refiner("alm", "mse", {**own, "bayes_refine": "lm"}, N, 4 * N) == "lm"
    assert bayes.refiner("alm", "cross_entropy", own, N, P) is None  # no compiled GGN lm
    assert bayes.refiner("lm", "mse", own, N, P) is None and bayes.refiner("gn", "mse", own, N, P) is None
    assert bayes.refiner("alm", "mse", {**own, "bayes_refine": "same"}, N, P) is None


def test_refining_with_lm_trains_the_first_cycle_by_alm_and_the_later_ones_by_lm():
    data = ln.datasets.load("sin2", n=20, noise=0.1)
    model = ln.MLP("1-4-1", activation="tanh")
    kw = {"method": "alm", "seeds": range(2), "weight_decay": "bayes", "bayes_max_cycles": 3,
              "max_outer": 10}
    refined = ln.train(model, data, **kw, bayes_refine="lm")  # P = 13 < N = 20: auto is lm too
    same = ln.train(model, data, **kw, bayes_refine="same")
    for r, s in zip(refined, same):
        assert [row["trainer"] for row in r["bayes_path"]][:1] == ["alm"]
        assert {row["trainer"] for row in r["bayes_path"][1:]} <= {"lm"}
        assert {row["trainer"] for row in s["bayes_path"]} == {"alm"}
        # the first training is the same in both
        assert r["bayes_path"][0]["log_evidence"] == pytest.approx(
            s["bayes_path"][0]["log_evidence"], rel=1e-9)
        kept = r["bayes_path"][r["bayes_cycle"] - 1]
        assert r["bayes_trainer"] == kept["trainer"]
        assert r["log_evidence"] == pytest.approx(kept["log_evidence"])
        assert np.isfinite(r["fun"]) and r["test_mse"] < 0.5


def test_refining_a_classifier_with_lm_is_refused():
    data = ln.datasets.load("iris", labels="onehot")
    with pytest.raises(LiftnnError, match="bayes_refine"):
        ln.train(ln.MLP("4-6-3"), data, method="alm", loss="cross_entropy",
                 weight_decay="bayes", bayes_refine="lm")


def test_the_cross_entropy_starts_train_one_after_the_other_unless_asked(monkeypatch):
    """Lifted cross-entropy trainings side by side contend (bayes.parallel_starts)."""
    monkeypatch.delenv(bayes.THREADS_ENV, raising=False)
    assert not bayes.parallel_starts("cross_entropy")
    assert bayes.parallel_starts("mse") == (len(os.sched_getaffinity(0)) >= 2)
    monkeypatch.setenv(bayes.THREADS_ENV, "on")
    assert bayes.parallel_starts("cross_entropy") and bayes.parallel_starts("mse")
    monkeypatch.setenv(bayes.THREADS_ENV, "off")
    assert not bayes.parallel_starts("mse")
