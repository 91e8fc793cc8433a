"""scikit-learn estimators: `LiftnnRegressor` and `LiftnnClassifier` (docs/sklearn.md).

Both wrap `liftnn.train(model, dataset, method=..., seed=..., **options)` on an `liftnn.MLP`
(d_in - hidden_layer_sizes - d_out) and follow scikit-learn's conventions: hyper-parameters only
in `__init__`, `fit(X, y)` returns self, learned state in attributes ending in "_", `predict`,
`score` (R^2 / accuracy from the mixins), `predict_proba` for the classifier; they pass
`sklearn.utils.estimator_checks.check_estimator` and work in Pipeline, GridSearchCV and
cross_val_score.  Input scaling is left to the Pipeline (e.g. StandardScaler): the network sees X
as given.

- LiftnnRegressor minimises the mean squared error (loss "mse"); every liftnn method works,
  including the lifted trainer "alm".  y: (m,) or (m, k) (multi-output).
- LiftnnClassifier minimises the softmax cross-entropy (loss "cross_entropy") of one logit per
  class (two for a binary problem); predict_proba = softmax of the logits, in the order of
  `classes_`.  gn / lm use the generalised Gauss-Newton of liftnn.solvers.ggn, "alm" and
  "lifted-gn" its lifted form (docs/lifted.md "Classification").

This module imports scikit-learn; the rest of liftnn does not (`import liftnn` never loads it).
"""

from __future__ import annotations

import numbers
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import ClassVar

import numpy as np

try:
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.utils import check_random_state
    from sklearn.utils.multiclass import check_classification_targets
    from sklearn.utils.validation import check_is_fitted, validate_data
except ImportError as exc:  # pragma: no cover - scikit-learn is an optional dependency
    raise ImportError(f"liftnn.sklearn needs scikit-learn >= 1.6 (pip install scikit-learn): "
                      f"{exc}") from exc

from liftnn import baseline as linear_baseline
from liftnn import loo, padding
from liftnn.bayes import METHODS as bayes_methods
from liftnn.bayes import Posterior
from liftnn.blas_threads import limit_blas
from liftnn.datasets.base import Dataset
from liftnn.ensemble import Blend, Ensemble, Member, ensemble, select_by_evidence
from liftnn.models import MLP
from liftnn.problem import predict
from liftnn.solvers.result import MAX_ITER
from liftnn.train import train

__all__ = ["LiftnnClassifier", "LiftnnRegressor"]


class _LiftnnEstimator(BaseEstimator):
    """What both estimators share: hyper-parameters, building the network, training, predicting.

    Parameters (the defaults of __init__ are the regressor's; the classifier sets its own):
        hidden_layer_sizes: widths of the hidden layers, e.g. (16, 16); () for none; None: the
            estimator's default (_default_network).
        activation: hidden activation name ("tanh", "relu", ... as liftnn.MLP); None: the
            estimator's default.
        method: a liftnn.train method name ("lbfgs", "lm", "alm", "adam", ...).
        init: the weight initialiser (liftnn.models.initializers), e.g. "glorot_uniform".
        weight_decay: the objective's weight_decay / 2 ||theta||^2 (passed to liftnn.train
            when not 0), "auto", "bayes", or None (the default): "bayes" (Bayesian
            regularisation, docs/bayes.md) for the regressor with a Gauss-Newton method (gn, lm,
            alm, lifted-gn); for the classifier "prior" (liftnn.train's unit Gaussian prior on
            every weight, weight_decay = PRIOR_PRECISION / m for the m rows it trains on,
            docs/sklearn.md "Defaults"); 0 otherwise.
        validation: passed to liftnn.train as `validation=` when not None.
        max_iter: the method's iteration limit (liftnn.train's max_iter); None: its default.
        random_state: int, RandomState or None; the integer seed of the initial weights is drawn
            from it (an int is used as the seed itself).
        method_options: a dict of further liftnn.train options for the method (gtol,
            time_budget, mu, ...), over the estimator's METHOD_DEFAULTS (the classifier's
            lbfgs: gtol 1e-5, ftol 1e-6).
        n_init: train this many initialisations (seeds seed .. seed + n_init - 1, in one
            vectorised liftnn.train call where the method has one) and combine them.
        combine: "mean" (the ensemble of liftnn.ensemble: mean prediction, for the classifier
            the mean probability) or "evidence" (keep the start with the highest log evidence;
            needs weight_decay="bayes").
        baseline: "linear" (the default) or None: compare the network with the linear model a
            user would try first and keep the better, or a combination of the two (each
            estimator says how), or never.

    Fitted attributes: model_ (the liftnn.MLP), params_ (the weights of the best start by its
    training objective, or by evidence, a list of (W, b) NumPy arrays), result_ (its Result),
    results_ (every start's Result), ensemble_ (liftnn.ensemble.Ensemble of the kept starts),
    n_iter_ (result_.nit), loss_ (the final objective), status_ (result_.status),
    hidden_layer_sizes_ and activation_ (the network's, None resolved), weight_decay_
    (the decay the kept start was trained with: weight_decay, or the number "prior", "auto"
    or "bayes" chose),
    n_features_in_ (and feature_names_in_ for DataFrames).
    """

    _loss = "mse"
    #: method options the estimator sets unless method_options gives them
    METHOD_DEFAULTS: ClassVar[dict] = {}

    def __init__(self, hidden_layer_sizes=(16,), activation="tanh", method="alm",
                 init="glorot_uniform", weight_decay=None, validation=None, max_iter=None,
                 random_state=None, method_options=None, n_init=1, combine="mean",
                 baseline="linear"):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.method = method
        self.init = init
        self.weight_decay = weight_decay
        self.validation = validation
        self.max_iter = max_iter
        self.random_state = random_state
        self.method_options = method_options
        self.n_init = n_init
        self.combine = combine
        self.baseline = baseline

    def _check_baseline(self) -> None:
        if self.baseline not in ("linear", None):
            raise ValueError(f"baseline must be 'linear' or None; got {self.baseline!r}")

    def _weight_decay(self):
        """weight_decay with None resolved (see the class docstring)."""
        if self.weight_decay is not None:
            return self.weight_decay
        if self._loss == "cross_entropy":
            return "prior"
        return "bayes" if str(self.method).lower() in bayes_methods else 0.0

    def _seed(self) -> int:
        if isinstance(self.random_state, numbers.Integral):
            return int(self.random_state)
        return int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))

    def _default_network(self) -> tuple[tuple[int, ...], str]:
        """(hidden_layer_sizes, activation) that None stands for (the regressor: (16,) tanh)."""
        return (16,), "tanh"

    def _activation(self) -> str:
        """activation with None resolved (_default_network)."""
        return self._default_network()[1] if self.activation is None else self.activation

    def _hidden(self) -> tuple[int, ...]:
        h = self.hidden_layer_sizes
        if h is None:
            return self._default_network()[0]
        sizes = (h,) if isinstance(h, numbers.Integral) else tuple(h)
        if any(not isinstance(s, numbers.Integral) or s <= 0 for s in sizes):
            raise ValueError(f"hidden_layer_sizes must be positive integers; got {h!r}")
        return tuple(int(s) for s in sizes)

    def _options(self) -> dict:
        mo = {} if self.method_options is None else self.method_options
        if not isinstance(mo, dict):
            raise TypeError(f"method_options must be a dict or None; got {mo!r}")
        options = {**self.METHOD_DEFAULTS.get(str(self.method).lower(), {}), **mo}
        if self.max_iter is not None:
            options["max_iter"] = self.max_iter
        # weight_decay / validation go to liftnn.train as given (front-door options)
        if self._weight_decay():
            options["weight_decay"] = self._weight_decay()
        if self.validation is not None:
            options["validation"] = self.validation
        return options

    def _fit_network(self, X: np.ndarray, Y: np.ndarray):
        """Build the MLP (n_features - hidden - Y.shape[1]), train it, store the fitted state."""
        model = MLP((X.shape[1], *self._hidden(), Y.shape[1]), activation=self._activation(),
                    init=self.init)
        data = Dataset(X, Y, X[:0], Y[:0], meta={"name": "sklearn"})
        if isinstance(self.n_init, bool) or not isinstance(self.n_init, numbers.Integral) or (
                self.n_init < 1):
            raise ValueError(f"n_init must be an integer >= 1; got {self.n_init!r}")
        if self.combine not in ("mean", "evidence"):
            raise ValueError(f"combine must be 'mean' or 'evidence'; got {self.combine!r}")
        if self.combine == "evidence" and self._weight_decay() != "bayes":
            raise ValueError("combine='evidence' ranks starts by their log evidence, which only "
                             "weight_decay='bayes' computes")
        seed = self._seed()
        results = train(model, data, method=self.method, seeds=range(seed, seed + self.n_init),
                        loss=self._loss, **self._options(), **self._data_options(model, Y))
        results = self._review_starts(model, results, X, Y)
        if self.combine == "evidence":
            res = select_by_evidence(results)
            kept = [res]
        else:
            res = min(results, key=lambda r: float(np.asarray(r["fun"])))
            kept = results
        self.results_ = results
        self.hidden_layer_sizes_, self.activation_ = self._hidden(), self._activation()
        self.ensemble_ = ensemble(model, kept, X if self._weight_decay() == "bayes" else None)
        self.model_ = model
        self.params_ = [(np.asarray(W), None if b is None else np.asarray(b))
                        for W, b in res["params"]]
        self.result_ = res
        self.n_iter_ = int(res.get("nit", 0))
        self.loss_ = float(np.asarray(res["fun"])) if np.ndim(res.get("fun")) == 0 else float(
            "nan")
        self.status_ = res.get("status")
        wd = self._weight_decay()
        self.weight_decay_ = float(res.get("weight_decay", np.nan)) if isinstance(wd, str) else (
            float(wd))
        return self

    def _data_options(self, model, Y: np.ndarray) -> dict:
        """Further liftnn.train options that depend on the data (none here)."""
        return {}

    def _review_starts(self, model, results: list, X: np.ndarray, Y: np.ndarray) -> list:
        """The Results to keep, one per initialisation (here: as trained)."""
        return results

    def _warn_status(self) -> None:
        """A ConvergenceWarning when the kept network's training did not succeed; none when the
        linear model was kept (the network predicts nothing then) or when the kept network is
        a refining cycle of Bayesian regularisation that used its own iteration budget
        (bayes.REFINE_MAX_ITER, which no estimator option sets: `bayes_refined`)."""
        res = self.result_
        if self.kept_ == "linear" or res.get("success", False):
            return
        if res.get("status") == MAX_ITER and res.get("bayes_refined"):
            return
        hint = (f"; raise max_iter (here {res.get('nit')}) to train longer"
                if res.get("status") == MAX_ITER else "")
        warnings.warn(f"liftnn {self.method!r} ended with status {self.status_!r}: "
                      f"{res.get('message', '')}{hint}", ConvergenceWarning, stacklevel=3)

    def _inputs(self, X) -> np.ndarray:
        check_is_fitted(self)
        return validate_data(self, X, reset=False, dtype=np.float64)

    def _logits(self, X) -> np.ndarray:
        """The logits of each kept start, (K, m, d_out), by liftnn.problem.predict's jitted,
        padded forward pass (an eager one compiled a program per operation and shape)."""
        X = self._inputs(X)
        return np.stack([predict(self.model_, m.params, X) for m in self.ensemble_.members])


class LiftnnRegressor(RegressorMixin, _LiftnnEstimator):
    """A liftnn MLP regressor (mean squared error); parameters as _LiftnnEstimator (but method
    "alm" by default: with weight_decay="bayes" and the linear baseline it is the regressor's
    best-measured default, docs/sklearn.md "Defaults"), and

        baseline: "linear" (the default) or None.  With weight_decay="bayes", "linear" also
            fits the Bayesian linear model (liftnn.baseline: the network without hidden
            layers, in closed form, milliseconds) and keeps whichever of the two has the higher
            log evidence, MacKay's model comparison: on data a linear model explains as well,
            the network is not kept (docs/bayes.md "The linear baseline").  A network the
            evidence prefers is kept only if its leave-one-out MSE (liftnn.loo) is also at most
            the linear model's (docs/bayes.md "The leave-one-out check"); a network the
            evidence rejects is still kept when its leave-one-out errors are significantly
            smaller than the linear model's (loo.overrules_linear, docs/bayes.md "When the
            evidence picks the linear model").  A kept network is then combined with the
            linear model, w f_network + (1 - w) f_linear, with the w in [0, 1] that minimises
            the two fits' leave-one-out MSE (loo.stacking_weight, Breiman's stacking; docs/bayes.md
            "Stacking the network and the linear model"); w = 1 keeps the network alone.  None
            keeps the network always.

    fit(X: (m, d), y: (m,) or (m, k)) -> self; predict(X) -> (m,) or (m, k); score = R^2.
    Fitted attributes beyond _LiftnnEstimator's: kept_ ("network", "linear" or "blend": which
    model predict uses; with "linear", model_, params_ and ensemble_ are the linear model's,
    while result_ / results_ stay the network's training; with "blend", model_ and params_ are
    the network's and ensemble_ a liftnn.ensemble.Blend of the two), blend_weight_ (the
    network's w: 1.0 for "network" and without the comparison, 0.0 for "linear"),
    log_evidence_ ({"network": .., "linear": ..} or None without the comparison), baseline_
    (the liftnn.baseline.LinearFit or None),
    loo_ ({"network": .., "linear": .., "refitted": [rows]}: the leave-one-out MSEs, with
    "p_value" where the evidence chose the linear model and "blend_weight" where the network
    was kept; None without the comparison),
    start_loo_ (per initialisation, {"kept", "other", "p_value", "leverage", "switched"}: the
    leave-one-out comparison of the two evidence starts, liftnn.loo.other_start, or None where
    it was not made).
    """

    _loss = "mse"

    def fit(self, X, y):
        self._check_baseline()
        _check_numeric_targets(y)
        X, y = validate_data(self, X, y, dtype=np.float64, y_numeric=True, multi_output=True)
        y = np.asarray(y, dtype=np.float64)
        self._y_1d = y.ndim == 1
        Y = y.reshape(len(y), -1)
        self._fit_network(X, Y)
        self._compare_with_linear(X, Y)
        self._warn_status()
        return self

    def _data_options(self, model, Y: np.ndarray) -> dict:
        """bayes_start="both" where the data could let the weak start's network overrule the
        evidence's choice (`_review_starts`): weight_decay="bayes" with N >= P /
        loo.START_MAX_LEVERAGE target entries, unless method_options sets bayes_start."""
        if self._weight_decay() != "bayes" or "bayes_start" in (self.method_options or {}):
            return {}
        if Y.size * loo.START_MAX_LEVERAGE < model.n_params:
            return {}
        return {"bayes_start": "both"}

    def _review_starts(self, model, results: list, X: np.ndarray, Y: np.ndarray) -> list:
        """Each initialisation's Result, or its other evidence start's where that network's
        leave-one-out errors are significantly smaller (liftnn.loo.other_start; docs/bayes.md
        "When the evidence over-regularises"); sets start_loo_."""
        self.start_loo_ = []
        out = []
        for res in results:
            swap, info = (loo.other_start(model, res, X, Y) if "bayes_other_start" in res
                          else (False, {}))
            self.start_loo_.append({**info, "switched": swap} if info else None)
            if swap:
                other = res.pop("bayes_other_start")
                other.update(bayes_start_by="leave-one-out", bayes_other_start=res,
                             bayes_log_evidence_by_start=res["bayes_log_evidence_by_start"])
                res = other
            out.append(res)
        return out

    def _compare_with_linear(self, X: np.ndarray, Y: np.ndarray) -> None:
        """The evidence's choice between the fitted network and the Bayesian linear model
        (`baseline`), checked by the leave-one-out errors, and a kept network's stacking with
        the linear model (with n_init > 1 the weight is the start of highest evidence's, applied
        to the kept starts' mean); sets kept_, blend_weight_, log_evidence_, baseline_, loo_."""
        self.kept_, self.log_evidence_, self.baseline_, self.loo_ = "network", None, None, None
        self.blend_weight_ = 1.0
        if self.baseline is None or self._weight_decay() != "bayes":
            return
        with_evidence = [r for r in self.results_ if "log_evidence" in r]
        if not with_evidence:
            return
        best = select_by_evidence(with_evidence)
        network = float(best["log_evidence"])
        lin = linear_baseline.fit(X, Y)
        self.baseline_ = lin
        self.log_evidence_ = {"network": network, "linear": lin.log_evidence}
        refits: dict = {}  # the exact held-out residuals, shared by the checks below
        if linear_baseline.compare(network, lin) == "network":
            keep, self.loo_ = loo.confirms_network(self.model_, best, X, Y, lin, refits=refits)
        else:  # the evidence chose the linear model: its leave-one-out errors may overrule it
            keep, self.loo_ = loo.overrules_linear(self.model_, best, X, Y, lin,
                                                   refits=refits)
        if not keep:
            linear = self._linear_ensemble(X, Y, lin)
            self.kept_, self.blend_weight_ = "linear", 0.0
            self.model_, self.params_, self.ensemble_ = linear.model, lin.params, linear
            return
        # the kept network, shrunk towards the linear model by the leave-one-out errors of both
        # (Breiman's stacking; docs/bayes.md "Stacking the network and the linear model")
        net = loo.network(self.model_, best["params"], X, Y, loo.ratio_of(best, Y.size),
                          refits=refits)
        w = loo.stacking_weight(net, loo.linear(X, Y, lin))
        self.loo_["blend_weight"] = self.blend_weight_ = w
        if w < 1.0:
            self.kept_ = "blend"
            self.ensemble_ = Blend(self.ensemble_, self._linear_ensemble(X, Y, lin), w)

    def _linear_ensemble(self, X: np.ndarray, Y: np.ndarray, lin) -> Ensemble:
        """The Bayesian linear model `lin` as a one-member Ensemble with its Laplace posterior."""
        model = MLP((X.shape[1], Y.shape[1]), activation=self._activation(), init=self.init)
        post = Posterior.from_jacobian(model, lin.params,
                                       linear_baseline.jacobian(X, Y.shape[1]), lin.alpha,
                                       lin.beta)
        return Ensemble(model, [Member(lin.params, post)])

    def predict(self, X, return_std: bool = False):
        """Mean prediction (m,) or (m, k); with return_std=True also its std (the Laplace
        posterior of weight_decay='bayes', plus the starts' spread for n_init > 1)."""
        X = self._inputs(X)
        if not return_std:
            out = self.ensemble_.predict(X)
            return out[:, 0] if self._y_1d else out
        if not self.ensemble_.has_noise and len(self.ensemble_) == 1:
            raise ValueError("predict(X, return_std=True) needs a posterior: fit with "
                             "weight_decay='bayes' (method gn, lm, alm or lifted-gn), or with "
                             "n_init > 1 for the spread of an ensemble")
        mean, std = self.ensemble_.predict(X, return_std=True)
        return (mean[:, 0], std[:, 0]) if self._y_1d else (mean, std)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags


def _check_numeric_targets(y) -> None:
    """LiftnnRegressor's targets must be numbers: raise a ValueError that says so (and points to
    LiftnnClassifier) for strings or other values that do not convert to float."""
    if y is None:
        return  # scikit-learn's own "requires y" error
    try:
        arr = np.asarray(y)
    except (TypeError, ValueError):
        return  # ragged etc.: scikit-learn's validation reports it
    if arr.dtype.kind not in "USO":
        return
    try:
        arr.astype(np.float64)
    except (TypeError, ValueError):
        first = next((v for v in arr.reshape(-1) if not _is_number(v)), None)
        first = str(first) if isinstance(first, str) else first
        raise ValueError(f"LiftnnRegressor needs numeric targets; y holds {first!r} (dtype "
                         f"{arr.dtype}); for class labels use LiftnnClassifier") from None


def _is_number(v) -> bool:
    try:
        float(v)
    except (TypeError, ValueError):
        return False
    return True


def _check_labels(y: np.ndarray) -> None:
    """Raise ValueError unless the labels are integers or strings (numbers are then checked by
    sklearn's check_classification_targets: integral floats pass, continuous values raise its
    "Unknown label type" error, which check_estimator expects)."""
    if y.dtype.kind in "iubfUS":
        return
    if y.dtype.kind == "O":
        kinds = {bool if isinstance(v, (bool, np.bool_)) else
                 int if isinstance(v, numbers.Integral) else
                 str if isinstance(v, str) else type(v) for v in y}
        if len(kinds) == 1 and kinds <= {bool, int, str}:
            return
        names = ", ".join(sorted(k.__name__ for k in kinds))
        raise ValueError(f"LiftnnClassifier needs class labels that are all integers or all "
                         f"strings; y holds {names}")
    raise ValueError(f"LiftnnClassifier needs class labels that are integers or strings; y has "
                     f"dtype {y.dtype}")


class LiftnnClassifier(ClassifierMixin, _LiftnnEstimator):
    """A liftnn MLP classifier (softmax cross-entropy); parameters as _LiftnnEstimator, but

        hidden_layer_sizes, activation: None (the defaults) stands for one hidden layer of 32
            ReLU units (measured against (16,) tanh on sixteen tables, docs/sklearn.md
            "Defaults"), and for (16,) tanh with the Gauss-Newton methods gn, lm, alm and
            lifted-gn; fitted as hidden_layer_sizes_ and activation_.
        baseline: "linear" (the default) or None.  "linear" holds out a stratified HOLDOUT
            fraction of the rows (seeded by random_state), trains the network and the Bayesian
            softmax regression (liftnn.baseline.fit_logistic, the network without hidden
            layers, its weight decay by the evidence) on the rest, and finds the mixture
            w p_network + (1 - w) p_linear of their class probabilities with the lowest mean
            log-loss on the held-out rows (liftnn.baseline.blend_weight; the ends win ties,
            the network first).  Then, on every row, w = 1 trains the network again, w = 0 fits
            the softmax regression, and 0 < w < 1 both, whose mixture predict_proba returns
            (docs/sklearn.md "The classifier's linear baseline").  None (and data too small to
            stratify) trains the network on every row with no comparison.

    fit(X: (m, d), y: (m,) labels, integers or strings, at least two classes) -> self;
    predict(X) -> (m,) labels from classes_; predict_proba(X) -> (m, n_classes);
    score = accuracy.  Fitted attributes beyond _LiftnnEstimator's: kept_ ("network", "linear"
    or "blend"), blend_weight_ (the network's w: 1.0 for "network" and without the comparison,
    0.0 for "linear"), holdout_log_loss_ ({"network": .., "linear": .., "blend": ..} or None
    without the comparison), baseline_ (the softmax regression on every row, a
    liftnn.baseline.LogisticFit, where it is kept or mixed in; else None).  With "linear" kept,
    model_, params_ and ensemble_ are the softmax regression's, and result_ / results_ are the
    network's training on the rows not held out; with "blend" they are the network's.
    """

    _loss = "cross_entropy"
    #: lbfgs stops at ||grad||_inf <= 1e-5 (liftnn's 1e-8 is for reaching a minimiser to
    #: rounding): on moons, circles, XOR, iris, wine, breast cancer, Spector and Fair the same
    #: cross-validated accuracy and log-loss to 3 digits in 25-45 % fewer iterations; and at a
    #: relative decrease <= 1e-6 per iteration (a ReLU network's kinked loss rarely meets the
    #: gtol, and without it most fits ran to max_iter; 1e-6 against 1e-7: the same accuracy to
    #: 0.002 on sixteen tables at 0.6x the wall) (docs/sklearn.md "Defaults")
    METHOD_DEFAULTS: ClassVar[dict] = {"lbfgs": {"gtol": 1e-5, "ftol": 1e-6}}
    #: the fraction of the rows held out to compare the network with the linear baseline
    HOLDOUT = 0.2

    def __init__(self, hidden_layer_sizes=None, activation=None, method="lbfgs",
                 init="glorot_uniform", weight_decay=None, validation=None, max_iter=None,
                 random_state=None, method_options=None, n_init=1, combine="mean",
                 baseline="linear"):
        super().__init__(hidden_layer_sizes=hidden_layer_sizes, activation=activation,
                         method=method, init=init, weight_decay=weight_decay,
                         validation=validation, max_iter=max_iter, random_state=random_state,
                         method_options=method_options, n_init=n_init, combine=combine,
                         baseline=baseline)

    def _default_network(self) -> tuple[tuple[int, ...], str]:
        """(32,) ReLU; (16,) tanh for the Gauss-Newton family (gn, lm, alm, lifted-gn), where
        ReLU was no more accurate and 2-5x slower (docs/sklearn.md "Defaults")."""
        if str(self.method).lower() in bayes_methods:
            return (16,), "tanh"
        return (32,), "relu"

    def fit(self, X, y):
        self._check_baseline()
        X, y = validate_data(self, X, y, dtype=np.float64)
        _check_labels(np.asarray(y))
        check_classification_targets(y)
        self.classes_, idx = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError(f"LiftnnClassifier needs at least two classes; y has one class "
                             f"({self.classes_[0]!r})")
        Y = np.eye(len(self.classes_))[idx]  # one-hot (m, n_classes)
        self.kept_, self.holdout_log_loss_, self.baseline_ = "network", None, None
        self.blend_weight_ = 1.0
        split = None if self.baseline is None else self._holdout(idx)
        if split is None:
            self._fit_network(X, Y)
            self._warn_status()
            return self
        part, held = split
        with padding.at_least(len(X)):  # the programs of the later fit on every row
            lin = self._fit_beside_logistic(X[part], Y[part])
        p_net, p_lin = self.predict_proba(X[held]), lin.predict_proba(X[held])
        w = linear_baseline.blend_weight(Y[held], p_net, p_lin)
        self.holdout_log_loss_ = {
            "network": linear_baseline.log_loss(Y[held], p_net),
            "linear": linear_baseline.log_loss(Y[held], p_lin),
            "blend": linear_baseline.log_loss(Y[held], w * p_net + (1.0 - w) * p_lin)}
        self.blend_weight_ = w
        if w == 1.0:
            self._fit_network(X, Y)
            self._warn_status()
            return self
        if w > 0.0:  # both on every row
            self.baseline_ = self._fit_beside_logistic(X, Y)
            self.kept_ = "blend"
            self._warn_status()
            return self
        lin = linear_baseline.fit_logistic(X, Y)
        model = MLP((X.shape[1], Y.shape[1]), activation=self._activation(), init=self.init)
        self.kept_, self.baseline_, self.model_, self.params_ = "linear", lin, model, lin.params
        self.ensemble_ = Ensemble(model, [Member(lin.params, None)])
        return self

    def _fit_beside_logistic(self, X: np.ndarray, Y: np.ndarray):
        """Train the network on (X, Y) and return the softmax regression of the same rows
        (liftnn.baseline.LogisticFit), fitted in a second thread meanwhile: the two are
        independent (numpy and XLA release the GIL), and on digits that hides its 0.5 s per
        fit; one BLAS limit over both, so neither thread's limit_blas restores the other's BLAS
        threads."""
        with limit_blas(), ThreadPoolExecutor(1) as pool:
            linear = pool.submit(linear_baseline.fit_logistic, X, Y)
            self._fit_network(X, Y)
            return linear.result()

    def _holdout(self, idx: np.ndarray):
        """(rows trained on, rows held out): a stratified HOLDOUT split seeded by random_state,
        or None when some class has fewer than two rows (no stratified split exists)."""
        from sklearn.model_selection import train_test_split

        if np.bincount(idx).min() < 2 or round(self.HOLDOUT * len(idx)) < len(self.classes_):
            return None
        rows = np.arange(len(idx))
        return tuple(train_test_split(rows, test_size=self.HOLDOUT, stratify=idx,
                                      random_state=self._seed()))

    def predict_proba(self, X) -> np.ndarray:
        """Softmax of the logits in the order of classes_, averaged over the kept starts; with
        kept_ "blend" mixed with the softmax regression's (weights blend_weight_, 1 -
        blend_weight_)."""
        proba = np.mean([linear_baseline.softmax(z) for z in self._logits(X)], axis=0)
        if self.kept_ != "blend":
            return proba
        w = self.blend_weight_
        return w * proba + (1.0 - w) * self.baseline_.predict_proba(self._inputs(X))

    def predict(self, X) -> np.ndarray:
        proba = self.predict_proba(X)  # checks the fit first
        return self.classes_[np.argmax(proba, axis=1)]
