"""liftnn.baseline: the Bayesian linear model against the exact marginal likelihood, the
Gauss-Newton evidence cycles of liftnn.train, JAX's Jacobian; and the regressor's choice between
the network and the linear model by their log evidence."""

from __future__ import annotations

import numpy as np
import pytest

import liftnn as ln
from liftnn import baseline, bayes
from liftnn.datasets.base import Dataset
from liftnn.errors import LiftnnError


def _linear_data(m=30, d=3, O=2, noise=0.3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(m, d))
    Y = X @ rng.normal(size=(d, O)) + 1.0 + noise * rng.normal(size=(m, O))
    return X, Y


@pytest.mark.parametrize("O", [1, 2])
def test_log_evidence_is_the_exact_marginal_likelihood_at_the_fixed_point(O):
    X, Y = _linear_data(O=O)
    fit = baseline.fit(X, Y)
    assert fit.log_evidence == pytest.approx(baseline.log_marginal(X, Y, fit.alpha, fit.beta),
                                             abs=1e-9)
    # the fixed point: r = alpha / beta, gamma = O sum lambda / (lambda + r), and the weights
    # are the ridge solution for r
    assert fit.ratio == pytest.approx(fit.alpha / fit.beta, rel=1e-9)
    lam = fit.design_eigenvalues
    assert fit.gamma == pytest.approx(O * np.sum(lam / (lam + fit.ratio)), rel=1e-9)
    Phi = np.hstack([X, np.ones((len(X), 1))])
    theta = np.linalg.solve(Phi.T @ Phi + fit.ratio * np.eye(Phi.shape[1]), Phi.T @ Y)
    W, b = fit.params[0]
    np.testing.assert_allclose(W, theta[:-1].T, atol=1e-10)
    np.testing.assert_allclose(b, theta[-1], atol=1e-10)
    # a weight decay off the fixed point has a lower exact evidence
    for f in (0.5, 2.0):
        assert baseline.log_marginal(X, Y, f * fit.alpha, fit.beta) < fit.log_evidence


def test_the_closed_form_equals_the_evidence_cycles_of_lm():
    X, Y = _linear_data()
    model = ln.MLP((3, 2))
    res = ln.train(model, Dataset(X, Y, X[:0], Y[:0], meta={"name": "t"}), method="lm",
                   weight_decay="bayes", bayes_tol=1e-6, bayes_max_cycles=50)
    fit = baseline.fit(X, Y)
    assert res["log_evidence"] == pytest.approx(fit.log_evidence, abs=1e-5)
    assert res["effective_params"] == pytest.approx(fit.gamma, rel=1e-4)
    np.testing.assert_allclose(np.asarray(model.apply(res["params"], X)),
                               np.asarray(model.apply(fit.params, X)), atol=1e-4)


def test_jacobian_layout_equals_jax():
    X, _ = _linear_data(m=7, d=3)
    for O in (1, 3):
        model = ln.MLP((3, O))
        np.testing.assert_array_equal(baseline.jacobian(X, O),
                                      bayes.jacobian(model, model.init(0), X))


def test_compare_and_bad_input():
    X, Y = _linear_data()
    fit = baseline.fit(X, Y)
    assert baseline.compare(fit.log_evidence + 1.0, fit) == "network"
    assert baseline.compare(fit.log_evidence - 1.0, fit) == "linear"
    assert baseline.compare(float("nan"), fit) == "linear"
    with pytest.raises(LiftnnError, match="X \\(m, d\\) and Y"):
        baseline.fit(X[:5], Y)


def _sine(m, seed):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-2, 2, size=(m, 1))
    return X, np.sin(2 * X[:, 0]) + 0.05 * rng.normal(size=m)


def test_regressor_keeps_the_model_with_the_higher_evidence():
    pytest.importorskip("sklearn")
    from liftnn.sklearn import LiftnnRegressor

    X, Y = _linear_data(m=40, O=1, noise=0.5)
    y = Y[:, 0]
    est = LiftnnRegressor(hidden_layer_sizes=(4,), method="lm", random_state=0).fit(X, y)
    assert est.kept_ == "linear"
    assert est.log_evidence_["linear"] > est.log_evidence_["network"]
    lin = baseline.fit(X, Y)
    np.testing.assert_allclose(est.predict(X), X @ lin.params[0][0][0] + lin.params[0][1][0],
                               atol=1e-10)
    mean, std = est.predict(X, return_std=True)  # the linear model's exact posterior
    np.testing.assert_allclose(mean, est.predict(X), atol=1e-12)
    assert std.shape == (40,) and np.all(std >= 1 / np.sqrt(lin.beta) - 1e-12)
    assert est.result_["method"] == "lm"  # the network's training is still on record

    net = LiftnnRegressor(hidden_layer_sizes=(4,), method="lm", random_state=0,
                          baseline=None).fit(X, y)
    assert net.kept_ == "network" and net.log_evidence_ is None

    Xs, ys = _sine(60, 1)
    est = LiftnnRegressor(hidden_layer_sizes=(6,), method="lm", random_state=0).fit(Xs, ys)
    assert est.kept_ == "network"
    assert est.log_evidence_["network"] > est.log_evidence_["linear"]


def test_regressor_baseline_bad_value_and_no_evidence():
    pytest.importorskip("sklearn")
    from liftnn.sklearn import LiftnnRegressor

    X, Y = _linear_data(m=20, O=1)
    with pytest.raises(ValueError, match="baseline must be 'linear' or None"):
        LiftnnRegressor(method="lm", baseline="ridge").fit(X, Y[:, 0])
    with pytest.warns(Warning, match="max_iter"):
        est = LiftnnRegressor(hidden_layer_sizes=(3,), method="lm", weight_decay=0.0,
                              max_iter=5).fit(X, Y[:, 0])
    assert est.kept_ == "network" and est.baseline_ is None  # no evidence, no comparison


# --- the classifier's baseline: Bayesian softmax regression -----------------------------------

def _logistic_data(m=90, d=3, K=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(m, d))
    logits = X @ rng.normal(size=(d, K)) * 1.5
    y = np.array([rng.choice(K, p=np.exp(z) / np.exp(z).sum()) for z in logits])
    return X, y, np.eye(K)[y]


def test_logistic_hessian_equals_jax():
    import jax
    import jax.numpy as jnp

    X, _, Y = _logistic_data(m=20)
    Phi = np.hstack([X, np.ones((20, 1))])
    Theta = np.random.default_rng(1).normal(size=(4, 3))

    def ce(t):
        z = jnp.asarray(Phi) @ t.reshape(4, 3)
        return -jnp.sum(jnp.asarray(Y) * jax.nn.log_softmax(z, axis=1))

    H = np.asarray(jax.hessian(ce)(jnp.asarray(Theta.reshape(-1))))
    Pr = baseline.softmax(Phi @ Theta)
    np.testing.assert_allclose(baseline._hessian(Phi, Pr), H, atol=1e-10)


def test_logistic_fit_is_the_ridge_logistic_regression_at_the_evidence_fixed_point():
    sklearn_linear = pytest.importorskip("sklearn.linear_model")
    X, y, Y = _logistic_data()
    fit = baseline.fit_logistic(X, Y)
    W, b = fit.params[0]
    Phi = np.hstack([X, np.ones((len(X), 1))])
    # scikit-learn's multinomial objective C sum CE + 1/2 ||w||^2 with the intercept as a
    # penalised column: the same minimiser for C = 1 / alpha
    ref = sklearn_linear.LogisticRegression(C=1.0 / fit.alpha, fit_intercept=False, tol=1e-12,
                                            max_iter=10000).fit(Phi, y)
    np.testing.assert_allclose(np.hstack([W, b[:, None]]), ref.coef_, atol=1e-5)
    # the fixed point: alpha = gamma / ||theta||^2, gamma = sum lam / (lam + alpha)
    Theta = np.vstack([W.T, b])
    lam = np.linalg.eigvalsh(baseline._hessian(Phi, baseline.softmax(Phi @ Theta)))
    gamma = np.sum(np.clip(lam, 0, None) / (np.clip(lam, 0, None) + fit.alpha))
    assert fit.gamma == pytest.approx(gamma, rel=1e-6)
    assert fit.alpha == pytest.approx(gamma / np.sum(Theta**2), rel=1e-3)
    with pytest.raises(LiftnnError, match="one-hot Y"):
        baseline.fit_logistic(X, y)


def test_classifier_keeps_the_linear_model_unless_the_network_predicts_held_out_rows_better():
    pytest.importorskip("sklearn")
    from liftnn.sklearn import LiftnnClassifier

    X, y, _ = _logistic_data(m=120, d=4, K=2, seed=3)  # a noisy linear boundary
    # tanh: on these 24 held-out rows the default ReLU network ties the linear model's log-loss
    # (0.447 each on such draws) and a tie keeps the network; tanh's loses it clearly
    clf = LiftnnClassifier(hidden_layer_sizes=(8,), activation="tanh", random_state=0).fit(X, y)
    assert clf.kept_ == "linear" and clf.blend_weight_ == 0.0
    ll = clf.holdout_log_loss_
    assert ll["linear"] < ll["network"] and ll["blend"] == ll["linear"]
    lin = baseline.fit_logistic(X, np.eye(2)[y])
    np.testing.assert_allclose(clf.params_[0][0], lin.params[0][0], atol=1e-12)
    proba = clf.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    assert clf.result_["method"] == "lbfgs"  # the network's training on the other rows

    rng = np.random.default_rng(4)  # XOR: no linear boundary
    Xx = rng.uniform(-1, 1, size=(160, 2))
    yx = (Xx[:, 0] * Xx[:, 1] > 0).astype(int)
    for rs in range(4):  # every split: the default prior keeps the network from overfitting
        clf = LiftnnClassifier(hidden_layer_sizes=(8,), random_state=rs).fit(Xx, yx)
        assert clf.kept_ == "network" and clf.score(Xx, yx) > 0.9 and clf.blend_weight_ == 1.0
        assert clf.holdout_log_loss_["network"] < clf.holdout_log_loss_["linear"]

    plain = LiftnnClassifier(hidden_layer_sizes=(8,), random_state=0, baseline=None).fit(X, y)
    assert plain.kept_ == "network" and plain.holdout_log_loss_ is None
    assert plain.blend_weight_ == 1.0
    tiny = LiftnnClassifier(hidden_layer_sizes=(3,), random_state=0).fit(X[:6], [0, 1] * 3)
    assert tiny.holdout_log_loss_ is None  # too few rows to hold out one of each class
    with pytest.raises(ValueError, match="baseline must be 'linear' or None"):
        LiftnnClassifier(baseline="logistic").fit(X, y)


def test_classifier_comparison_fits_the_softmax_regression_beside_the_network():
    """The held-out comparison's softmax regression runs in a second thread while the network
    trains: its held-out log-loss equals a plain fit_logistic on the same rows, and two fits
    give the same weights and losses."""
    pytest.importorskip("sklearn")
    from liftnn.sklearn import LiftnnClassifier

    X, y, _ = _logistic_data(m=150, d=3, K=3, seed=5)
    clf = LiftnnClassifier(hidden_layer_sizes=(8,), random_state=0).fit(X, y)
    part, held = clf._holdout(np.unique(y, return_inverse=True)[1])
    lin = baseline.fit_logistic(X[part], np.eye(3)[y[part]])
    p = lin.predict_proba(X[held])[np.arange(len(held)), y[held]]
    assert clf.holdout_log_loss_["linear"] == pytest.approx(float(-np.mean(np.log(p))),
                                                            rel=1e-12)
    again = LiftnnClassifier(hidden_layer_sizes=(8,), random_state=0).fit(X, y)
    assert again.holdout_log_loss_ == clf.holdout_log_loss_
    for (W, b), (W2, b2) in zip(clf.params_, again.params_):
        np.testing.assert_array_equal(W, W2)
        np.testing.assert_array_equal(b, b2)


def test_blend_weight_minimises_the_held_out_log_loss_of_the_mixture():
    """blend_weight = the grid minimiser of the mixture's mean log-loss (to its tolerance), the
    ends on ties (the network first), and a clear error for arrays of different shapes."""
    rng = np.random.default_rng(0)
    Y = np.eye(3)[rng.integers(0, 3, size=40)]
    grid = np.linspace(0.0, 1.0, 20001)
    for seed in range(6):
        r = np.random.default_rng(seed)
        pn = baseline.softmax(r.normal(size=(40, 3)) + 2.0 * Y * r.uniform())
        pl = baseline.softmax(r.normal(size=(40, 3)) + 2.0 * Y * r.uniform())
        losses = [baseline.log_loss(Y, w * pn + (1 - w) * pl) for w in grid]
        w = baseline.blend_weight(Y, pn, pl)
        assert 0.0 <= w <= 1.0
        assert baseline.log_loss(Y, w * pn + (1 - w) * pl) <= min(losses) + 1e-9
        if 0.0 < w < 1.0:
            assert abs(w - grid[int(np.argmin(losses))]) < 1e-3
    bad = baseline.softmax(-3.0 * Y)
    assert baseline.blend_weight(Y, Y, bad) == 1.0  # a network that is never wrong
    assert baseline.blend_weight(Y, bad, Y) == 0.0
    assert baseline.blend_weight(Y, bad, bad) == 1.0  # a tie keeps the network
    nan = np.full_like(Y, np.nan)  # a diverged network's probabilities get no weight
    assert baseline.blend_weight(Y, nan, bad) == 0.0 and baseline.blend_weight(Y, bad, nan) == 1.0
    with pytest.raises(LiftnnError, match="one shape"):
        baseline.blend_weight(Y, bad[:, :2], bad)


def test_classifier_mixes_the_network_and_the_linear_model_where_that_predicts_best():
    """Where a mixture of the two has the lowest held-out log-loss, both are refitted on every
    row and predict_proba is the mixture: kept_ "blend", 0 < blend_weight_ < 1, baseline_ the
    softmax regression of every row, the network's weights in params_."""
    pytest.importorskip("sklearn")
    from liftnn.sklearn import LiftnnClassifier

    X, y, _ = _logistic_data(m=100, d=3, K=2, seed=4)  # such a draw (a fifth of the rows held out)
    clf = LiftnnClassifier(hidden_layer_sizes=(8,), random_state=0).fit(X, y)
    assert clf.kept_ == "blend" and 0.0 < clf.blend_weight_ < 1.0
    ll = clf.holdout_log_loss_
    assert ll["blend"] < min(ll["network"], ll["linear"])
    lin = baseline.fit_logistic(X, np.eye(2)[y])
    np.testing.assert_allclose(clf.baseline_.params[0][0], lin.params[0][0], atol=1e-12)
    assert len(clf.params_) == 2  # the network's (8 hidden units), not the linear model's
    net = baseline.softmax(np.asarray(clf.model_.apply(clf.params_, X)))
    w = clf.blend_weight_
    np.testing.assert_allclose(clf.predict_proba(X), w * net + (1 - w) * lin.predict_proba(X),
                               rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(clf.predict(X), np.argmax(clf.predict_proba(X), axis=1))
