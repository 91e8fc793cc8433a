"""sklearn-lbfgs / sklearn-adam: scikit-learn's MLPRegressor / MLPClassifier from params0.

What runs: MLPRegressor (loss "mse") or MLPClassifier (loss "cross_entropy") with
hidden_layer_sizes and activation from the liftnn model, solver "lbfgs" or "adam", the data as
given (float64; no scaling), warm_start=True, and these defaults (scikit-learn's, except
max_iter, raised to the other peers' budgets: 1000 for lbfgs as torch-lbfgs, 4000 epochs for
adam as torch-adam / liftnn's "adam"):

    alpha 1e-4, tol 1e-4; lbfgs: max_fun 15000 (scipy L-BFGS-B, gtol = tol);
    adam: lr 1e-3, betas (0.9, 0.999), eps 1e-8, batch_size min(200, n), shuffled with
    random_state = shuffle_seed, stop after n_iter_no_change = 10 epochs without a training-loss
    improvement of tol.

Objective: NOT liftnn's.  scikit-learn minimises

    regressor:   1/2 mean (f - Y)^2           + alpha / (2 n) ||W||^2,
    classifier:  mean cross-entropy            + alpha / (2 n) ||W||^2,

n = training samples, W = the weight matrices only (no biases).  liftnn's C with weight decay
is mean (f - Y)^2 + weight_decay/2 ||theta||^2 over all parameters; the two cannot be made equal
for alpha > 0, so weight_decay > 0 is refused (choose alpha instead) and the Result records the
objective ("objective" field) and alpha.  train/test MSE and `fun` are liftnn's, recomputed from
the returned weights.  History "loss" is scikit-learn's loss in liftnn's units (x2 for the
regressor: mean (f - Y)^2 + alpha/n ||W||^2, which is liftnn's C when alpha = 0; x1 for the
classifier); "sklearn_loss" is scikit-learn's value itself.

Initial weights: scikit-learn draws its own (Glorot uniform of its own); there is no public
argument for given weights.  The peer starts it from params0 through warm_start: one fit with
max_iter=1 builds every fitted attribute, then coefs_[j] = W_j^T and intercepts_[j] = b_j are
set, the adam-only history (loss_curve_, best_loss_, t_) is reset, and the real fit continues
from there (warm_start skips scikit-learn's initialisation; adam's moment estimates and step
count are rebuilt by every non-incremental fit).  The first epoch's loss then equals the
objective at params0 (a test checks it to 1e-12).  For two classes MLPClassifier has one
logistic output unit where the liftnn model has two softmax logits; the unit gets the
difference of the two output rows (W_1 - W_0, b_1 - b_0: the same probabilities and loss) and
is split back symmetrically around params0's mean row.

Model limits (LiftnnError before any work): biases required; every hidden layer one activation
among relu, tanh, sigmoid (scikit-learn's "logistic"), identity; output activation identity;
for cross_entropy, integer or one-hot labels with every class present in the training data.

History and time: adam exposes loss_curve_ (epoch k + 1's loss, the mean of its minibatch losses
before their updates, as Keras logs it); scikit-learn does not time epochs, so history "time" is
NaN except on the last entry (the end of the fit).  lbfgs exposes only its final loss: history is
iter 0 (the objective at params0, computed from the formula above) and iter n_iter_.

Status: lbfgs: no ConvergenceWarning -> "converged" (scipy's ftol / gtol test); "status=1" in the
warning (iteration or evaluation limit) -> "max_iter"; "status=2" (line search) ->
"line_search_failed".  adam: the ConvergenceWarning "Maximum iterations" -> "max_iter"; stopped
before max_iter -> "stalled" (its no-improvement rule, success, as liftnn's and torch's adam);
"Training interrupted by user" -> "interrupted".  scikit-learn's ValueError for non-finite
weights -> "diverged" with params0 returned (scikit-learn keeps no earlier iterate).
"""

from __future__ import annotations

import math
import re
import time
import warnings

import numpy as np

from liftnn.bench.peers.common import POS, POS_INT, PeerSpec, import_reason, number
from liftnn.errors import LiftnnError
from liftnn.solvers import result as R
from liftnn.solvers.result import Result

ACTIVATIONS = {"relu": "relu", "tanh": "tanh", "sigmoid": "logistic", "identity": "identity"}


def validate(name, o, model, loss, weight_decay) -> None:
    """The model and objective scikit-learn can represent (before any work)."""
    if weight_decay:
        raise LiftnnError(f"{name}: scikit-learn's penalty is alpha/(2 n) ||W||^2 on the weights "
                          "only, not liftnn's weight_decay/2 ||theta||^2; use weight_decay=0 "
                          "and the option alpha")
    if not model.bias:
        raise LiftnnError(f"{name}: scikit-learn's MLP always has biases; the model has none")
    hidden = set(model.activations[:-1])
    if len(hidden) > 1:
        raise LiftnnError(f"{name}: scikit-learn's MLP uses one activation for every hidden "
                          f"layer; the model has {sorted(hidden)}")
    act = next(iter(hidden), "identity")
    if act not in ACTIVATIONS:
        raise LiftnnError(f"{name}: activation {act!r} has no scikit-learn equivalent; choose one "
                          f"of {', '.join(ACTIVATIONS)}")
    if model.activations[-1] != "identity":
        raise LiftnnError(f"{name}: the output activation must be identity (scikit-learn applies "
                          f"its own); got {model.activations[-1]!r}")
    if loss == "cross_entropy" and model.sizes[-1] < 2:
        raise LiftnnError(f"{name}: cross_entropy needs at least 2 output logits; the model "
                          f"has {model.sizes[-1]}")


def _labels(Y: np.ndarray, k: int) -> np.ndarray:
    """Integer class labels 0..k-1 from one-hot (m, k) or index (m,) / (m, 1) targets."""
    if Y.ndim == 2 and Y.shape[1] == k and k > 1:
        labels = np.argmax(Y, axis=1)
    else:
        labels = Y.reshape(-1)
        if not np.all(labels == np.round(labels)):
            raise LiftnnError("cross_entropy targets must be class indices or one-hot rows")
        labels = labels.astype(np.int64)
    present = np.unique(labels)
    if present.size != k or present[0] != 0 or present[-1] != k - 1:
        raise LiftnnError(f"scikit-learn infers the classes from the training labels: all {k} "
                          f"classes must occur in them; found {present.tolist()}")
    return labels


def _to_sklearn(params0, binary: bool):
    coefs = [np.array(W, np.float64).T.copy() for W, _ in params0]
    intercepts = [np.array(b, np.float64).copy() for _, b in params0]
    if binary:  # one logistic unit = the difference of the two softmax logits
        W, b = params0[-1]
        coefs[-1] = (W[1] - W[0]).reshape(-1, 1).copy()
        intercepts[-1] = np.array([b[1] - b[0]])
    return coefs, intercepts


def _from_sklearn(est, params0, binary: bool):
    params = [(c.T.copy(), i.copy()) for c, i in zip(est.coefs_, est.intercepts_)]
    if binary:
        W0, b0 = params0[-1]
        mw, mb = 0.5 * (W0[0] + W0[1]), 0.5 * (b0[0] + b0[1])
        d, db = params[-1][0][0], params[-1][1][0]
        params[-1] = (np.stack([mw - 0.5 * d, mw + 0.5 * d]), np.array([mb - 0.5 * db,
                                                                       mb + 0.5 * db]))
    return params


def _sklearn_objective(params0, coefs, problem, alpha: float) -> float:
    """scikit-learn's loss at params0 in liftnn's units (module docstring), for history[0].

    The penalty is on scikit-learn's own weight matrices `coefs` (for two classes its output
    layer is the one difference row).
    """
    import jax.numpy as jnp

    p = [(jnp.asarray(W), jnp.asarray(b)) for W, b in params0]
    data = float(problem.data_loss(p))
    return data + (2.0 if problem.loss == "mse" else 1.0) * 0.5 * alpha / problem.m * sum(
        float(np.sum(c ** 2)) for c in coefs)


def fit_sklearn(problem, params0, o, name, t0) -> Result:
    """sklearn-lbfgs / sklearn-adam from params0 through warm_start (module docstring)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier, MLPRegressor

    model = problem.model
    solver = "lbfgs" if name == "sklearn-lbfgs" else "adam"
    classify = problem.loss == "cross_entropy"
    X = np.array(problem.X, np.float64)
    Y = np.array(problem.Y, np.float64)
    if classify:
        y = _labels(Y, model.sizes[-1])
    else:
        y = Y.reshape(-1) if Y.shape[1] == 1 else Y
    binary = classify and model.sizes[-1] == 2
    scale = 1.0 if classify else 2.0
    kw = {"hidden_layer_sizes": tuple(model.sizes[1:-1]),
          "activation": ACTIVATIONS[model.activations[0]] if model.n_layers > 1 else "identity",
          "solver": solver, "alpha": o["alpha"], "tol": o["tol"], "warm_start": True,
          "max_iter": 1}
    if solver == "lbfgs":
        kw["max_fun"] = o["max_fun"]
    else:
        kw.update(learning_rate_init=o["lr"], beta_1=o["b1"], beta_2=o["b2"], epsilon=o["eps"],
                  n_iter_no_change=o["n_iter_no_change"], shuffle=True, early_stopping=False,
                  random_state=o["shuffle_seed"],
                  batch_size="auto" if o["batch_size"] is None else o["batch_size"])
    est = (MLPClassifier if classify else MLPRegressor)(**kw)
    with warnings.catch_warnings():  # the one-iteration fit only builds the fitted attributes
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X, y)
    est.coefs_, est.intercepts_ = _to_sklearn(params0, binary)
    if solver == "adam":
        est.loss_curve_, est.best_loss_, est.t_ = [], np.inf, 0
    est.set_params(max_iter=o["max_iter"])
    loss0 = _sklearn_objective(params0, est.coefs_, problem, o["alpha"])
    t_start = time.perf_counter() - t0
    params, diverged = None, False
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            est.fit(X, y)
        except ValueError as exc:
            if "non-finite" not in str(exc):
                raise
            diverged, params = str(exc), [(W.copy(), b.copy()) for W, b in params0]
    t_end = time.perf_counter() - t0
    texts = [str(w.message) for w in caught]
    conv = [t for t in texts if "converge" in t or "Maximum iterations" in t]
    nit = int(getattr(est, "n_iter_", 0))
    if diverged:
        status, message = R.DIVERGED, f"scikit-learn: {diverged}; returned params0"
    elif any("interrupted" in t for t in texts):
        status, message = R.INTERRUPTED, f"interrupted after {nit} iterations"
    elif solver == "lbfgs":
        code = re.search(r"status=(\d+)", conv[0]) if conv else None
        if code is None:
            status, message = R.CONVERGED, "scikit-learn lbfgs converged (scipy L-BFGS-B)"
        else:
            status = R.LINE_SEARCH_FAILED if code.group(1) == "2" else R.MAX_ITER
            message = "scikit-learn: " + " ".join(conv[0].split())
    elif conv:
        status, message = R.MAX_ITER, "scikit-learn: " + " ".join(conv[0].split())
    else:
        status, message = R.STALLED, (f"scikit-learn adam: training loss did not improve by more "
                                      f"than tol = {o['tol']:g} for {o['n_iter_no_change']} "
                                      "consecutive epochs")
    if solver == "adam":
        curve = list(getattr(est, "loss_curve_", []))
        history = [{"iter": k + 1, "loss": scale * v, "sklearn_loss": v, "time": math.nan}
                   for k, v in enumerate(curve)]
    else:
        history = [{"iter": 0, "loss": loss0, "sklearn_loss": loss0 / scale, "time": t_start}]
        if hasattr(est, "loss_"):
            history.append({"iter": nit, "loss": scale * float(est.loss_),
                            "sklearn_loss": float(est.loss_), "time": math.nan})
    if history:
        history[-1]["time"] = t_end
    if params is None:
        params = _from_sklearn(est, params0, binary)
    what = "1/2 mean (f - Y)^2" if not classify else "mean cross-entropy"
    if solver == "adam":  # gradient evaluations: one per minibatch
        bs = min(200, problem.m) if o["batch_size"] is None else min(o["batch_size"], problem.m)
        nfev = nit * math.ceil(problem.m / bs)
    else:  # scikit-learn does not expose scipy's evaluation count
        nfev = nit
    return Result(params=params, nit=nit, nfev=nfev, njev=nfev, status=status, message=message,
                  history=history, alpha=o["alpha"],
                  objective=f"scikit-learn: {what} + alpha/(2 n) ||W||^2 (weights only)",
                  init_from="params0 (warm_start)")


HINT = "pip install 'liftnn[peers]' (or: pip install scikit-learn)"


def available() -> tuple[bool, str]:
    """scikit-learn is an optional extra (liftnn's dev extra has it)."""
    why = import_reason("sklearn.neural_network", HINT)
    return (False, why) if why else (True, "")


_TOL = number(0.0, strict=False)
_SK = {"alpha": (1e-4, _TOL), "tol": (1e-4, _TOL)}

PEERS: dict[str, PeerSpec] = {
    "sklearn-lbfgs": PeerSpec(
        "sklearn-lbfgs", "sklearn",
        "scikit-learn MLPRegressor/MLPClassifier(solver='lbfgs'), alpha 1e-4",
        {**_SK, "max_iter": (1000, POS_INT), "max_fun": (15000, POS_INT)},
        ("mse", "cross_entropy"), fit_sklearn, validate=validate),
    "sklearn-adam": PeerSpec(
        "sklearn-adam", "sklearn",
        "scikit-learn MLPRegressor/MLPClassifier(solver='adam'), lr 1e-3, alpha 1e-4",
        {**_SK, "max_iter": (4000, POS_INT), "lr": (1e-3, POS),
         "b1": (0.9, number(0.0, 1.0, strict=False)), "b2": (0.999, number(0.0, 1.0, strict=False)),
         "eps": (1e-8, POS), "n_iter_no_change": (10, POS_INT),
         "batch_size": (None, number(0, none=True, integer=True)),
         "shuffle_seed": (0, number(0, strict=False, integer=True))},
        ("mse", "cross_entropy"), fit_sklearn, validate=validate),
}
