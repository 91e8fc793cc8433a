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


def test_network_refits_the_samples_of_high_leverage():
    """An isolated input far from the rest: the network fits it by itself (leverage near 1), the
    linearised residual overstates the held-out error, and the refit replaces it."""
    rng = np.random.default_rng(3)
    X = np.vstack([rng.uniform(-1, 1, size=(30, 1)), [[6.0]]])
    Y = 0.5 * X + 0.1 * rng.normal(size=(31, 1))
    Y[-1] += 2.0
    model, res = _network_fit(X, Y, hidden=6, r=0.05)
    r = loo.ratio_of(res, Y.size)
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
    assert est.kept_ == "network"
    assert est.loo_["network"] <= est.loo_["linear"]
    lin = LiftnnRegressor(hidden_layer_sizes=(4,), method="lm", random_state=0).fit(
        X, 0.5 * X[:, 0] + 0.3 * rng.normal(size=60))
    assert lin.kept_ == "linear" and lin.loo_ is None  # the evidence already chose the line
