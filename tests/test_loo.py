"""liftnn.loo: leverages against the dense hat matrix, the linear model's leave-one-out residuals
against refitting without each sample, a network's linearised residuals against lm refits, and
the regressor's leave-one-out check of the evidence's choice."""

from __future__ import annotations

import numpy as np
import pytest

import liftnn as ln
from liftnn import baseline, bayes, loo
from liftnn.errors import LiftnnError


def _hat_diag(J, r):
    return np.diag(J @ np.linalg.solve(J.T @ J + r * np.eye(J.shape[1]), J.T))


@pytest.mark.parametrize("shape", [(30, 5), (6, 20)])  # the "params" and the "samples" side
def test_leverages_equal_the_dense_hat_matrix(shape):
    J = np.random.default_rng(0).normal(size=shape)
    for r in (1e-3, 1.0, 50.0):
        np.testing.assert_allclose(loo.leverages(J, r), _hat_diag(J, r), atol=1e-10)
    with pytest.raises(LiftnnError, match="r > 0"):
        loo.leverages(J, 0.0)


def test_linear_residuals_equal_refits_without_each_sample():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(25, 3))
    Y = X @ rng.normal(size=(3, 2)) + 0.3 * rng.normal(size=(25, 2))
    fit = baseline.fit(X, Y)
    est = loo.linear(X, Y, fit)
    Phi = np.hstack([X, np.ones((25, 1))])
    for i in range(25):
        keep = np.arange(25) != i
        theta = np.linalg.solve(Phi[keep].T @ Phi[keep] + fit.ratio * np.eye(4),
                                Phi[keep].T @ Y[keep])
        np.testing.assert_allclose(est.residuals[i], Phi[i] @ theta - Y[i], atol=1e-10)
    assert est.mse == pytest.approx(np.mean(est.residuals**2))


def _network_fit(X, Y, hidden=4, r=0.5, seed=0):
    model = ln.MLP((X.shape[1], hidden, Y.shape[1]), activation="tanh")
    data = ln.datasets.Dataset(X, Y, X[:0], Y[:0], meta={"name": "t"})
    res = ln.train(model, data, method="lm", seed=seed, weight_decay=2 * r / Y.size,
                   max_iter=500, gtol=1e-12)
    res["weight_decay"] = 2 * r / Y.size  # as weight_decay="bayes" records the mu_w it used
    return model, res


def test_network_linearised_residuals_are_first_order_in_the_removed_sample():
    rng = np.random.default_rng(2)
    X = rng.uniform(-2, 2, size=(40, 1))
    Y = np.sin(X) + 0.1 * rng.normal(size=(40, 1))
    model, res = _network_fit(X, Y)
    r = loo.ratio_of(res, Y.size)
    assert r == pytest.approx(0.5)
    lin = loo.network(model, res["params"], X, Y, r, refit=False)
    J = bayes.jacobian(model, res["params"], X)
    np.testing.assert_allclose(lin.leverage[:, 0], _hat_diag(J, r), atol=1e-8)
    assert lin.refitted == () and np.all(lin.leverage < loo.REFIT_LEVERAGE)
    for i in (0, 7, 21):  # refit without sample i: close to e_i / (1 - h_ii) at low leverage
        exact = loo._held_out_residual(model, res["params"], X, Y, i, r)
        assert exact == pytest.approx(lin.residuals[i], abs=0.02 * max(1.0, abs(exact[0])))


def _isolated_sample_fit():
    """A line with one isolated input far from the rest (sample 30), and a network fitted to it
    that spends a hidden unit on that sample: X, Y, model, Result, r."""
    rng = np.random.default_rng(3)
    X = np.vstack([rng.uniform(-1, 1, size=(30, 1)), [[6.0]]])
    Y = 0.5 * X + 0.1 * rng.normal(size=(31, 1))
    Y[-1] += 2.0
    model, res = _network_fit(X, Y, hidden=6, r=0.05)
    return X, Y, model, res, loo.ratio_of(res, Y.size)


def test_network_refits_the_samples_of_high_leverage():
    """An isolated input far from the rest: the network fits it by itself (leverage near 1), the
    linearised residual overstates the held-out error, and the refit replaces it."""
    X, Y, model, res, r = _isolated_sample_fit()
    lin = loo.network(model, res["params"], X, Y, r, refit=False)
    assert lin.leverage[-1, 0] > loo.REFIT_LEVERAGE
    full = loo.network(model, res["params"], X, Y, r)
    assert 30 in full.refitted and len(full.refitted) <= loo.MAX_REFITS
    exact = loo._held_out_residual(model, res["params"], X, Y, 30, r)
    np.testing.assert_allclose(full.residuals[30], exact, atol=1e-12)
    assert abs(full.residuals[30, 0]) < abs(lin.residuals[30, 0])
    rest = [i for i in range(31) if i not in full.refitted]
    np.testing.assert_allclose(full.residuals[rest], lin.residuals[rest], atol=1e-12)


def test_confirms_network_on_a_curve_and_not_on_a_line_with_an_outlier():
    rng = np.random.default_rng(4)
    X = rng.uniform(-2, 2, size=(40, 1))
    Y = np.sin(2 * X) + 0.05 * rng.normal(size=(40, 1))
    model, res = _network_fit(X, Y, hidden=6, r=0.05)
    ok, info = loo.confirms_network(model, res, X, Y, baseline.fit(X, Y))
    assert ok and info["network"] < info["linear"] and info["refitted"] == []

    X = np.vstack([rng.uniform(-1, 1, size=(30, 1)), [[6.0]]])
    Y = 0.5 * X + 0.1 * rng.normal(size=(31, 1))
    Y[-1] += 2.0  # the network bends to the isolated sample; held out, it is predicted worse
    model, res = _network_fit(X, Y, hidden=6, r=0.05)
    ok, info = loo.confirms_network(model, res, X, Y, baseline.fit(X, Y))
    assert not ok and info["network"] > info["linear"]


def test_regressor_records_the_check_when_the_evidence_prefers_the_network():
    pytest.importorskip("sklearn")
    from liftnn.sklearn import LiftnnRegressor

    rng = np.random.default_rng(5)
    X = rng.uniform(-2, 2, size=(60, 1))
    y = np.sin(2 * X[:, 0]) + 0.05 * rng.normal(size=60)
    est = LiftnnRegressor(hidden_layer_sizes=(6,), method="lm", random_state=0).fit(X, y)
    assert est.kept_ in ("network", "blend") and est.blend_weight_ > 0.95  # stacked, barely
    assert est.loo_["network"] <= est.loo_["linear"]
    lin = LiftnnRegressor(hidden_layer_sizes=(4,), method="lm", random_state=0).fit(
        X, 0.5 * X[:, 0] + 0.3 * rng.normal(size=60))
    assert lin.kept_ == "linear"  # the evidence chose the line, and the check did not overrule
    assert lin.log_evidence_["linear"] > lin.log_evidence_["network"]
    assert lin.loo_["p_value"] >= loo.OVERRULE_LEVEL


def test_p_value_is_the_one_sided_paired_t_test():
    from scipy import stats

    rng = np.random.default_rng(0)
    Rl, Rn = rng.normal(size=(30, 2)), 0.8 * rng.normal(size=(30, 2))
    lin, net = (loo.Loo(float(np.mean(R**2)), R, np.zeros_like(R), ()) for R in (Rl, Rn))
    d = np.mean(Rl**2, axis=1) - np.mean(Rn**2, axis=1)
    assert loo.p_value(lin, net) == pytest.approx(
        stats.ttest_1samp(d, 0.0, alternative="greater").pvalue, rel=1e-12)
    assert loo.p_value(lin, lin) == 1.0  # no difference: nothing to overrule with
    assert loo.p_value(net, lin) == pytest.approx(1.0 - loo.p_value(lin, net), abs=1e-12)


def test_leave_one_out_overrules_the_evidence_on_a_small_curve():
    """sin^2 on 20 points: the evidence prefers the line (-24.3 against -20.2 on this draw),
    the network's leave-one-out errors are significantly smaller, and it is kept (test MSE
    0.0055 against the line's 0.42)."""
    pytest.importorskip("sklearn")
    import liftnn as ln
    from liftnn.sklearn import LiftnnRegressor

    d = ln.datasets.load("sin2", seed=2, n=20)
    est = LiftnnRegressor(random_state=2).fit(d.x_train, d.y_train[:, 0])
    assert est.log_evidence_["linear"] > est.log_evidence_["network"]
    assert est.kept_ in ("network", "blend") and est.blend_weight_ > 0.9
    assert est.loo_["p_value"] < loo.OVERRULE_LEVEL
    assert est.loo_["network"] < 0.5 * est.loo_["linear"]
    mse = float(np.mean((est.predict(d.x_test) - d.y_test[:, 0]) ** 2))
    assert mse < 0.05


def test_overrules_linear_needs_significance_not_just_a_lower_error():
    rng = np.random.default_rng(4)
    X = rng.uniform(-2, 2, size=(40, 1))
    Y = 0.5 * X + 0.3 * rng.normal(size=(40, 1))  # a line: the network is no better
    model, res = _network_fit(X, Y, hidden=6, r=0.05)
    ok, info = loo.overrules_linear(model, res, X, Y, baseline.fit(X, Y))
    assert not ok and info["p_value"] >= loo.OVERRULE_LEVEL
    X = rng.uniform(-2, 2, size=(40, 1))
    Y = np.sin(2 * X) + 0.05 * rng.normal(size=(40, 1))
    model, res = _network_fit(X, Y, hidden=6, r=0.05)
    ok, info = loo.overrules_linear(model, res, X, Y, baseline.fit(X, Y))
    assert ok and info["p_value"] < 1e-6 and info["network"] < info["linear"]


def test_other_start_overrules_an_over_regularised_network_and_respects_the_leverage_bound():
    """A near-linear network (weight decay far too strong) against a fitted one on a curve with
    N = 200 >> P: the fitted one's leave-one-out errors are significantly smaller; the same pair
    is not compared when the other start spends more than START_MAX_LEVERAGE effective
    parameters per target, nor without an other start."""
    rng = np.random.default_rng(6)
    X = rng.uniform(-2, 2, size=(200, 1))
    Y = np.sin(2 * X) + 0.1 * rng.normal(size=(200, 1))
    model, strong = _network_fit(X, Y, hidden=4, r=200.0)
    _, weak = _network_fit(X, Y, hidden=4, r=0.05)
    assert loo.other_start(model, strong, X, Y) == (False, {})
    weak["effective_params"] = 12.0
    strong["bayes_other_start"] = weak
    swap, info = loo.other_start(model, strong, X, Y)
    assert swap and info["other"] < info["kept"] and info["p_value"] < loo.OVERRULE_LEVEL
    assert info["leverage"] == pytest.approx(12.0 / 200)
    weak["effective_params"] = loo.START_MAX_LEVERAGE * Y.size + 1.0
    assert loo.other_start(model, strong, X, Y) == (False, {})
    # the other way round: the over-regularised network never overrules the fitted one
    weak.pop("bayes_other_start", None)
    strong["effective_params"] = 3.0
    weak["bayes_other_start"] = strong
    assert loo.other_start(model, weak, X, Y)[0] is False


def test_regressor_trains_both_starts_with_many_targets_and_records_the_comparison():
    pytest.importorskip("sklearn")
    from liftnn.sklearn import LiftnnRegressor

    rng = np.random.default_rng(7)
    X = rng.uniform(-2, 2, size=(120, 1))
    y = np.sin(2 * X[:, 0]) + 0.1 * rng.normal(size=120)
    est = LiftnnRegressor(hidden_layer_sizes=(3,), method="lm", random_state=0)
    model = ln.MLP((1, 3, 1))  # P = 10: 120 targets >= P / START_MAX_LEVERAGE = 50
    assert est._data_options(model, y[:, None]) == {"bayes_start": "both"}
    assert est._data_options(model, y[:40, None]) == {}  # 40 < 50
    assert LiftnnRegressor(method_options={"bayes_start": "strong"})._data_options(
        model, y[:, None]) == {}
    est.fit(X, y)
    assert len(est.start_loo_) == 1 and est.start_loo_[0] is not None
    info = est.start_loo_[0]
    assert set(info) == {"kept", "other", "p_value", "leverage", "switched"}
    used = est.result_["bayes_start_used"]
    assert used in ("weak", "strong")
    assert est.result_["bayes_other_start"]["bayes_start_used"] != used
    assert ("bayes_start_by" in est.result_) == info["switched"]


def test_stacking_weight_minimises_the_leave_one_out_error_of_the_combination():
    """The closed form = the minimiser over a dense grid of w; the ends where one fit's
    held-out errors are all zero; 1 where both coincide; a clear error for other shapes."""
    rng = np.random.default_rng(8)
    grid = np.linspace(0.0, 1.0, 100001)
    for seed in range(5):
        r = np.random.default_rng(seed)
        e_l = r.normal(size=(30, 2))
        e_n = 0.6 * e_l + r.uniform(0.2, 1.5) * r.normal(size=(30, 2))
        net, lin = loo._estimate(e_n, np.zeros_like(e_n)), loo._estimate(e_l, np.zeros_like(e_l))
        w = loo.stacking_weight(net, lin)
        mse = [np.mean((g * e_n + (1 - g) * e_l) ** 2) for g in grid]
        assert w == pytest.approx(grid[int(np.argmin(mse))], abs=2e-5)
    e = rng.normal(size=(10, 1))
    zero = loo._estimate(np.zeros((10, 1)), np.zeros((10, 1)))
    noisy = loo._estimate(e, np.zeros((10, 1)))
    assert loo.stacking_weight(zero, noisy) == 1.0
    assert loo.stacking_weight(noisy, zero) == 0.0
    assert loo.stacking_weight(noisy, noisy) == 1.0
    with pytest.raises(LiftnnError, match="one shape"):
        loo.stacking_weight(noisy, loo._estimate(e[:5], np.zeros((5, 1))))


def test_shared_refits_are_reused_not_repeated():
    """network(..., refits=d) fills d with the exact held-out residuals and takes them from d
    on a later call (a planted value shows it)."""
    X, Y, model, res, r = _isolated_sample_fit()
    shared: dict = {}
    first = loo.network(model, res["params"], X, Y, r, refits=shared)
    assert sorted(shared) == sorted(first.refitted) and 30 in shared
    shared[30] = np.array([0.125])
    again = loo.network(model, res["params"], X, Y, r, refits=shared)
    assert again.residuals[30, 0] == 0.125


def test_regressor_stacks_a_kept_network_with_the_linear_model():
    """A kept network is combined with the linear model by the stacking weight: predict and
    predict(return_std=True) are the Blend of the two (the weighted mean; the weighted std of
    the quantile average), and blend_weight_ / loo_ record w."""
    pytest.importorskip("sklearn")
    from liftnn.ensemble import Blend
    from liftnn.sklearn import LiftnnRegressor

    rng = np.random.default_rng(0)  # a line plus a wave: the network wins, the line helps
    X = rng.uniform(-2, 2, size=(60, 1))
    y = X[:, 0] + np.sin(2 * X[:, 0]) + 0.3 * rng.normal(size=60)
    est = LiftnnRegressor(hidden_layer_sizes=(4,), random_state=0).fit(X, y)
    assert est.kept_ == "blend" and 0.5 < est.blend_weight_ < 1.0
    assert est.loo_["blend_weight"] == est.blend_weight_
    assert est.loo_["network"] < est.loo_["linear"]
    assert isinstance(est.ensemble_, Blend) and len(est.params_) == 2  # the network's weights
    w, net, line = est.blend_weight_, est.ensemble_.first, est.ensemble_.second
    Xt = np.linspace(-2.5, 2.5, 11)[:, None]
    combined = w * net.predict(Xt) + (1 - w) * line.predict(Xt)
    np.testing.assert_allclose(est.predict(Xt), combined[:, 0], rtol=1e-12, atol=1e-12)
    W, b = est.baseline_.params[0]
    np.testing.assert_allclose(line.predict(Xt), Xt @ np.asarray(W).T + b, rtol=1e-12,
                               atol=1e-12)
    mean, std = est.predict(Xt, return_std=True)
    (_, s1), (_, s2) = net.predict(Xt, True), line.predict(Xt, True)
    np.testing.assert_allclose(mean, est.predict(Xt), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(std, (w * s1 + (1 - w) * s2)[:, 0], rtol=1e-12)  # quantiles
    assert np.all(std >= np.minimum(s1, s2)[:, 0] - 1e-12)
    with pytest.raises(LiftnnError, match="weight"):
        Blend(net, line, 1.5)
