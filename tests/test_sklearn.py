"""liftnn.sklearn: the scikit-learn estimators.

Proves: both estimators pass scikit-learn's conformance suite (all checks: slow; also the
classifier with the lifted trainers alm and lifted-gn; a fast subset of the API and bad-input
checks in CI); they work in Pipeline, GridSearchCV and cross_val_score (the regressor also with
the lifted trainer "alm"); the classifier trains with alm and lifted-gn; predict_proba is a
softmax consistent with predict; labels keep their type; one class and labels that are neither
integers nor strings raise ValueError; `import liftnn` does not import scikit-learn.
"""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn")

from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import (
    estimator_checks_generator,
    parametrize_with_checks,
)

from liftnn.sklearn import LiftnnClassifier, LiftnnRegressor
from liftnn.train import PRIOR_PRECISION

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

#: checks that must fail, with the reason (none: both estimators pass every check that runs;
#: pandas- and array-API checks skip themselves when those are not installed)
EXPECTED_FAILED: dict[str, str] = {}


def _small():
    """The estimators as the conformance checks run them: small and few iterations."""
    return [LiftnnRegressor(hidden_layer_sizes=(8,), max_iter=50),
            LiftnnClassifier(hidden_layer_sizes=(8,), max_iter=50)]


def _lifted_classifiers():
    """The classifier with the lifted trainers (the lifted GGN of the cross-entropy), few
    iterations: alm (max_outer 20, about 1 min of checks) and lifted-gn (30 iterations, about
    4 min on a loaded machine)."""
    return [LiftnnClassifier(hidden_layer_sizes=(8,), method="alm", max_iter=20),
            LiftnnClassifier(hidden_layer_sizes=(8,), method="lifted-gn", max_iter=30)]


def _bayes_regressor():
    """The regressor with Bayesian regularisation and the linear baseline (lm's defaults:
    weight_decay="bayes", baseline="linear"), few iterations: about 20 s of checks."""
    return [LiftnnRegressor(hidden_layer_sizes=(4,), method="lm", max_iter=20)]


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@parametrize_with_checks(_small() + _lifted_classifiers() + _bayes_regressor(),
                         expected_failed_checks=lambda est: EXPECTED_FAILED)
def test_check_estimator(estimator, check):
    """Every check of sklearn.utils.estimator_checks (about 2-3 min on a loaded machine for the
    first two, 5 more for the lifted classifiers)."""
    check(estimator)


#: the fast (CI) subset: the API contract and the bad-input checks issue 13 names
FAST_CHECKS = {
    "check_no_attributes_set_in_init", "check_parameters_default_constructible",
    "check_get_params_invariance", "check_set_params", "check_estimator_cloneable",
    "check_estimators_unfitted", "check_estimators_nan_inf", "check_fit1d",
    "check_fit2d_1sample", "check_fit2d_predict1d", "check_requires_y_none",
    "check_classifiers_one_label", "check_classifiers_regression_target",
}


def _fast_cases():
    for est in _small():
        for e, check in estimator_checks_generator(est, legacy=True,
                                                   expected_failed_checks=EXPECTED_FAILED):
            name = getattr(check, "func", check).__name__
            if name in FAST_CHECKS:
                yield pytest.param(e, check, id=f"{type(e).__name__}-{name}")


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("estimator, check", list(_fast_cases()))
def test_check_estimator_fast_subset(estimator, check):
    check(estimator)


def test_fast_subset_covers_both_estimators():
    names = {c.id.split("-", 1)[1] for c in _fast_cases()}
    assert names == FAST_CHECKS  # each listed check exists in sklearn and runs for some estimator


def test_import_liftnn_does_not_import_sklearn():
    code = ("import sys, liftnn, liftnn.datasets; ln = liftnn; ln.datasets.names(); "
            "assert 'sklearn' not in sys.modules, 'sklearn imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


# --- data ------------------------------------------------------------------------------------

def _regression(m=60, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-3, 3, (m, 1))
    return X, np.sin(X[:, 0]) ** 2 + 0.05 * rng.normal(size=m)


def _blobs(m=90, seed=0, labels=("a", "b", "c")):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, len(labels), m)
    X = 3.0 * np.eye(2)[y % 2] * (1 + y[:, None]) + rng.normal(size=(m, 2))
    return X, np.asarray(labels, dtype=object)[y]


# --- regressor --------------------------------------------------------------------------------

def test_regressor_learns_and_predicts_in_the_shape_of_y():
    X, y = _regression()
    reg = LiftnnRegressor(hidden_layer_sizes=(8,), method="lm", max_iter=100, random_state=0)
    assert reg.fit(X, y) is reg
    assert reg.predict(X).shape == (60,)
    assert reg.score(X, y) > 0.9
    assert reg.n_features_in_ == 1 and reg.n_iter_ == reg.result_.nit
    assert reg.model_.sizes == (1, 8, 1)
    Y2 = np.stack([y, -y], 1)
    reg2 = LiftnnRegressor(hidden_layer_sizes=(8,), max_iter=200, random_state=0).fit(X, Y2)
    assert reg2.predict(X).shape == (60, 2) and reg2.model_.sizes == (1, 8, 2)


def test_random_state_makes_fits_reproducible():
    X, y = _regression()
    a = LiftnnRegressor(max_iter=20, random_state=3).fit(X, y).predict(X)
    b = LiftnnRegressor(max_iter=20, random_state=3).fit(X, y).predict(X)
    c = LiftnnRegressor(max_iter=20, random_state=4).fit(X, y).predict(X)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_method_options_and_max_iter_reach_liftnn():
    X, y = _regression()
    with pytest.warns(ConvergenceWarning, match=r"raise max_iter \(here 7\) to train longer"):
        reg = LiftnnRegressor(method="adam", max_iter=7,
                              method_options={"lr": 1e-2, "patience": None}).fit(X, y)
    assert reg.n_iter_ == 7 and reg.status_ == "max_iter"
    with pytest.raises(ValueError, match="unknown option"):
        LiftnnRegressor(method="lbfgs", method_options={"no_such_option": 1}).fit(X, y)


def test_classifier_default_network_depends_on_the_method():
    """None stands for (32,) ReLU, and for (16,) tanh with the Gauss-Newton family; explicit
    values are used as given; get_params keeps None (scikit-learn's clone sees the defaults)."""
    rng = np.random.default_rng(1)
    X = rng.normal(size=(40, 2))
    y = (X[:, 0] > 0).astype(int)
    clf = LiftnnClassifier(baseline=None, random_state=0, max_iter=5).fit(X, y)
    assert (clf.hidden_layer_sizes_, clf.activation_) == ((32,), "relu")
    assert clf.model_.sizes == (2, 32, 2)
    assert clf.get_params()["activation"] is None
    gn = LiftnnClassifier(method="lm", baseline=None, random_state=0, max_iter=3).fit(X, y)
    assert (gn.hidden_layer_sizes_, gn.activation_) == ((16,), "tanh")
    own = LiftnnClassifier(hidden_layer_sizes=(5,), activation="tanh", baseline=None,
                           random_state=0, max_iter=5).fit(X, y)
    assert (own.hidden_layer_sizes_, own.activation_) == ((5,), "tanh")
    reg = LiftnnRegressor(method="lbfgs", baseline=None, max_iter=5).fit(X, X[:, 0])
    assert (reg.hidden_layer_sizes_, reg.activation_) == ((16,), "tanh")


def test_classifier_default_weight_decay_is_a_unit_prior_over_the_rows():
    """weight_decay=None: the classifier trains with PRIOR_PRECISION / m (the mean
    cross-entropy's decay of a N(0, 1) prior); the objective carries it; a number overrides it;
    the regressor's non-Gauss-Newton methods keep no decay."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 3))
    y = (X[:, 0] + X[:, 1] ** 2 > 1).astype(int)
    # tanh: a smooth loss, where lbfgs can meet a tight gtol (a ReLU network's kinks stall it)
    clf = LiftnnClassifier(hidden_layer_sizes=(4,), activation="tanh", baseline=None,
                           random_state=0).fit(X, y)
    assert clf.weight_decay_ == pytest.approx(PRIOR_PRECISION / 50)
    theta = np.concatenate([np.ravel(a) for W, b in clf.params_ for a in (W, b)])
    logits = clf._logits(X)[0]
    z = logits - logits.max(axis=1, keepdims=True)
    ce = np.mean(np.log(np.exp(z).sum(axis=1)) - z[np.arange(50), y])
    assert clf.loss_ == pytest.approx(ce + 0.5 * clf.weight_decay_ * theta @ theta, rel=1e-8)
    assert "gtol = 1e-05" in clf.result_["message"] or (  # the classifier's lbfgs defaults
        "ftol = 1e-06" in clf.result_["message"])
    tight = LiftnnClassifier(hidden_layer_sizes=(4,), activation="tanh", baseline=None,
                             random_state=0, method_options={"gtol": 1e-8, "ftol": 0.0}).fit(X, y)
    assert "gtol = 1e-08" in tight.result_["message"] and tight.n_iter_ > clf.n_iter_
    fixed = LiftnnClassifier(hidden_layer_sizes=(4,), activation="tanh", baseline=None,
                             weight_decay=0.0, random_state=0).fit(X, y)
    assert fixed.weight_decay_ == 0.0 and fixed.loss_ < clf.loss_
    reg = LiftnnRegressor(hidden_layer_sizes=(4,), method="lbfgs", max_iter=20,
                          baseline=None).fit(X, X[:, 0])
    assert reg.weight_decay_ == 0.0


def test_regressor_alm_in_cross_val_score():
    X, y = _regression(m=120)
    scores = cross_val_score(
        LiftnnRegressor(hidden_layer_sizes=(8,), method="alm", random_state=0), X, y,
        cv=KFold(3, shuffle=True, random_state=0))
    assert scores.shape == (3,) and np.all(scores > 0.8)  # R^2 on held-out folds


def test_pipeline_and_grid_search():
    X, y = _regression()
    pipe = make_pipeline(StandardScaler(), LiftnnRegressor(max_iter=100, random_state=0))
    grid = GridSearchCV(pipe, {"liftnnregressor__hidden_layer_sizes": [(2,), (8,)],
                               "liftnnregressor__method": ["lbfgs", "lm"]}, cv=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        grid.fit(X, y)
    assert set(grid.best_params_) == {"liftnnregressor__hidden_layer_sizes",
                                      "liftnnregressor__method"}
    assert len(grid.cv_results_["mean_test_score"]) == 4
    assert grid.score(X, y) > 0.8


# --- classifier -------------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["lbfgs", "lm"])
def test_classifier_string_labels_proba_and_score(method):
    X, y = _blobs()
    clf = LiftnnClassifier(hidden_layer_sizes=(6,), method=method, max_iter=100,
                           weight_decay=1e-3, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, y)
    assert list(clf.classes_) == ["a", "b", "c"]
    P = clf.predict_proba(X)
    assert P.shape == (90, 3)
    np.testing.assert_allclose(P.sum(1), 1.0, rtol=1e-12)
    pred = clf.predict(X)
    np.testing.assert_array_equal(pred, clf.classes_[np.argmax(P, 1)])
    assert clf.score(X, y) == pytest.approx(np.mean(pred == y))
    assert clf.score(X, y) > 0.9
    assert clf.result_.train_accuracy == pytest.approx(clf.score(X, y))


def test_binary_classifier_has_two_outputs_and_works_in_cross_val_score():
    X, y = _blobs(labels=(0, 1, 1))  # two classes, integers
    clf = make_pipeline(StandardScaler(), LiftnnClassifier(hidden_layer_sizes=(4,), max_iter=100,
                                                           random_state=0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        scores = cross_val_score(clf, X, y.astype(int), cv=3)
        clf.fit(X, y.astype(int))
    assert np.all(scores > 0.8)
    assert clf[-1].model_.d_out == 2 and clf.predict_proba(X).shape == (90, 2)
    assert clf.predict(X).dtype.kind == "i"


def test_classifier_bad_labels():
    X, _ = _blobs(m=12)
    with pytest.raises(ValueError, match="one class"):
        LiftnnClassifier().fit(X, np.full(12, "a"))
    with pytest.raises(ValueError, match="Unknown label type"):  # continuous targets
        LiftnnClassifier().fit(X, np.linspace(0, 1, 12))
    with pytest.raises(ValueError, match="all integers or all strings"):  # mixed labels
        LiftnnClassifier().fit(X, np.array([1, "a"] * 6, dtype=object))
    with pytest.raises(ValueError, match="all integers or all strings"):  # integral floats + bools
        LiftnnClassifier().fit(X, np.array([1.0, True] * 6, dtype=object))


def test_bad_input_uses_sklearn_errors():
    X, y = _regression(m=10)
    with pytest.raises(NotFittedError):
        LiftnnRegressor().predict(X)
    with pytest.raises(NotFittedError):
        LiftnnClassifier().predict_proba(X)
    Xn = X.copy()
    Xn[3, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        LiftnnRegressor().fit(Xn, y)
    reg = LiftnnRegressor(max_iter=5).fit(X, y)
    with pytest.raises(ValueError, match="features"):
        reg.predict(np.ones((3, 2)))
    with pytest.raises(ValueError, match="hidden_layer_sizes"):
        LiftnnRegressor(hidden_layer_sizes=(0,)).fit(X, y)
    with pytest.raises(ValueError, match="method"):
        LiftnnRegressor(method="no-such-method").fit(X, y)


@pytest.mark.parametrize("method", ["alm", "lifted-gn"])
def test_classifier_with_the_lifted_trainers(method):
    """alm and lifted-gn train the classifier (the lifted GGN of the cross-entropy): string
    labels kept, probabilities a softmax consistent with predict, training accuracy > 0.9."""
    X, y = _blobs(m=60)
    clf = LiftnnClassifier(hidden_layer_sizes=(6,), method=method, max_iter=20,
                           random_state=0).fit(X, y)
    assert list(clf.classes_) == ["a", "b", "c"] and clf.result_.linear_solver in (
        "primal", "dual", "cg")
    proba = clf.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    assert np.all(clf.classes_[np.argmax(proba, axis=1)] == clf.predict(X))
    assert clf.score(X, y) > 0.9


@pytest.mark.parametrize("y", [np.array(["a", "b"] * 10), np.array(["1.5", "x"] * 10, dtype=object)])
def test_regressor_with_string_targets_says_numeric_and_points_to_the_classifier(y):
    X = np.random.default_rng(0).normal(size=(20, 2))
    with pytest.raises(ValueError, match=r"numeric targets.*LiftnnClassifier"):
        LiftnnRegressor(max_iter=2).fit(X, y)


def test_regressor_accepts_numeric_strings_as_scikit_learn_does():
    X = np.random.default_rng(0).normal(size=(20, 2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reg = LiftnnRegressor(max_iter=2, random_state=0).fit(X, np.array(["1.5", "2"] * 10))
    assert reg.predict(X).shape == (20,)


def test_no_convergence_warning_for_a_network_that_is_not_kept_or_a_refining_budget():
    """A ConvergenceWarning names a training the user can act on: none when the linear model is
    kept (the network predicts nothing), none for a refining cycle's own iteration limit
    (bayes.REFINE_MAX_ITER, `bayes_refined`); a network kept after max_iter warns."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 3))
    y = X @ [1.0, -2.0, 0.5] + 0.1 * rng.normal(size=60)  # linear: the linear model is kept
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        reg = LiftnnRegressor(method="lm", max_iter=1, random_state=0).fit(X, y)
    assert reg.kept_ == "linear" and reg.status_ == "max_iter"
    reg.kept_ = "network"
    reg.result_ = {**reg.result_, "status": "max_iter", "success": False, "bayes_refined": True}
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        reg._warn_status()
    reg.result_["bayes_refined"] = False
    with pytest.warns(ConvergenceWarning, match="max_iter"):
        reg._warn_status()
