"""`ln.train(model, dataset, method=..., seed=...)`: the one front door for training networks.

Every method starts from `model.init(seed)` (the same initial weights for every method given the
seed) and minimises the same objective (liftnn.problem.TrainingProblem).  The method is resolved
once, in the table liftnn.methods.METHODS (name -> Method record with fit / fit_many); the
trainers receive the problem and the initial weights only:

    fit(problem, params0, **options) -> Result
    fit_many(problem, params0_list, **options) -> list[Result]     (vectorised `seeds=[...]`)

Timing has one home: this front door sets ``time_s`` (wall seconds of the method's call; with
`seeds` the batch's wall time / K, and ``batch_time_s`` the whole; with weight_decay="auto" the
whole path), overwriting anything a trainer reports (a single run: batch_time_s = time_s).

Model selection (`validation=`, `weight_decay="auto"`) is done here on a split of the training
data only, never on the test set; the split goes into TrainingProblem(X_val=..., Y_val=...), and
every trainer then records "val_loss", stops early on it (`val_patience`) and returns the iterate
with the lowest validation loss.  docs/solvers.md lists the methods and the Result fields.
"""

from __future__ import annotations

import dataclasses
import time
import warnings

import jax
import numpy as np

from liftnn import bayes, compile_clock
from liftnn._validate import (
    canonical,
    check_positive,
    check_samples,
    check_scale,
    class_targets,
)
from liftnn.blas_threads import limit_blas
from liftnn.compile_cache import ensure_default_cache
from liftnn.errors import LiftnnError, LiftnnWarning
from liftnn.methods import FIRST_ORDER, METHODS, Method
from liftnn.models.losses import loss_name
from liftnn.problem import TrainingProblem, accuracy
from liftnn.solvers import lm_compiled
from liftnn.solvers import result as R
from liftnn.solvers.result import Result

__all__ = ["AUTO_FRACTION", "AUTO_GRID", "METHODS", "PRIOR_PRECISION", "split_validation", "train"]

#: weight_decay="auto": the mu_w path, strong to weak, each fit warm-started from the previous one
AUTO_GRID = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 0.0)
#: weight_decay="auto" without validation data holds out this fraction of the training data
AUTO_FRACTION = 0.2
#: weight_decay="prior": the precision a of a N(0, 1/a) prior on every weight and bias, i.e.
#: mu_w = a / m for the mean cross-entropy over m rows (chosen by measurements across ten data
#: sets: docs/sklearn.md "Defaults")
PRIOR_PRECISION = 1.0


def train(model, dataset, method: str = "adam", seed: int = 0, seeds=None, *, params0=None,
          loss: str = "mse", weight_decay: float | str = 0.0, validation=None,
          validation_seed: int = 0, devices=None, **options):
    """Train `model` on `dataset` with `method`; returns a Result (a list of them with `seeds`).

    Args:
        model: an MLP (or any model with init/apply/check_data).
        dataset: a liftnn Dataset (x_train, y_train, x_test, y_test).
        method: a name in METHODS ("alm", "adam", "lm", ...).
        seed: initial-weight seed (ignored if params0 is given).
        seeds: a list of seeds trained in one vectorised call where the method supports it.
        loss: the data loss ("mse", "sse", "cross_entropy"; names, like method names, are not
            case-sensitive).  For "cross_entropy" the targets may be one-hot rows (m, k) or class
            indices (m, 1) (converted to one-hot here); the network needs k = n_classes outputs.
        weight_decay: mu_w >= 0 in loss + mu_w/2 ||theta||^2, or "auto": fit the path AUTO_GRID
            (1e-1 ... 1e-6, then 0; each fit warm-started from the previous one's weights) and
            keep the fit with the lowest validation loss (per seed).  Needs validation data;
            without `validation` it holds out AUTO_FRACTION (0.2) of the training data and says
            so in the Result ("validation_note").  Or "bayes" (gn, lm, alm, lifted-gn):
            Bayesian regularisation, mu_w re-estimated by the evidence framework on the
            training data alone (liftnn.bayes; options bayes_start, bayes_max_cycles,
            bayes_tol, bayes_refine); the Result adds alpha, beta, effective_params,
            log_evidence, weight_decay, bayes_path.  Or "prior" (loss="cross_entropy"): mu_w =
            PRIOR_PRECISION / m for the m training rows, a unit Gaussian prior on every weight
            of a network on standardised inputs (LiftnnClassifier's default); the Result adds
            weight_decay.
        validation: None (no model selection), a fraction in (0, 1) of the training data held
            out (a shuffled split seeded by `validation_seed`, the same for every method and
            seed), or explicit arrays (X_val, Y_val).  With validation data every method records
            "val_loss" per iteration, stops early after `val_patience` iterations / epochs
            without a new best validation loss, and returns the iterate with the lowest one.
        validation_seed: the seed of the validation split.
        devices: split the training samples over that many devices (liftnn.sharding,
            docs/devices.md); None or 1: one device.
        **options: passed to the method (max_iter, gtol, time_budget, patience, val_patience,
            callback, ...).  The initial weights are `params0`, not x0.

    Refused before any work (LiftnnError): fewer than 2 training samples, targets whose squared
    errors overflow float64.  Inputs or targets far from unit scale draw a LiftnnWarning
    (liftnn._validate.check_scale), as does weight_decay="auto" choosing the largest mu_w.

    Returns:
        The method's Result plus method, seed, init, n (training samples actually used),
        train_mse (on them), test_mse (test set; nan without test data, with "test_note" saying
        so), time_s, batch_time_s; with the cross-entropy train/test_accuracy; with validation data
        also n_val and val_mse (validation split); with weight_decay="auto" also weight_decay
        (the chosen mu_w) and path (a list of (mu_w, val_loss, train_mse)).
    """
    method = canonical("method", method, METHODS)
    spec = METHODS[method]
    _check_front_door_options(options)
    if seeds is not None and params0 is not None:
        raise LiftnnError("params0 gives the initial weights of one run and seeds draws one "
                          "set per seed: pass one of them")
    if devices is not None:
        options["devices"] = devices
    _check_dropout(model, spec)
    loss = loss if callable(loss) else loss_name(loss)
    auto = _check_weight_decay(weight_decay, loss)
    dataset, validation = _class_targets(model, dataset, validation, loss)
    _check_training_data(dataset)
    bayes_opts = bayes.check(method, loss, options) if weight_decay == "bayes" else None
    note = None
    if auto and validation is None:
        validation = AUTO_FRACTION
        note = (f"weight_decay='auto' chose mu_w on a validation split: {AUTO_FRACTION:g} of the "
                f"training data held out (validation=None)")
    X, Y, Xv, Yv = _validation_data(model, dataset, validation, validation_seed, auto)
    if Xv is not None:
        check_samples("the training data left after the validation split", len(X))
    prior = weight_decay == "prior"
    if prior:  # a N(0, 1 / PRIOR_PRECISION) prior on every weight, for the mean over len(X) rows
        weight_decay = PRIOR_PRECISION / len(X)
    # the persistent compile cache (LIFTNN_COMPILE_CACHE=off: none), before model.init: the
    # initialiser's random draw compiles programs too
    ensure_default_cache()
    many = seeds is not None
    if many:
        seeds = [int(s) for s in seeds]
        if not seeds:
            raise LiftnnError("seeds is empty")
        p0s = [model.init(s) for s in seeds]
    else:
        seeds = [seed]
        p0s = [params0 if params0 is not None else model.init(int(seed))]
    with compile_clock.measure() as clock, limit_blas():  # host BLAS: liftnn.blas_threads
        results, problems, wall = _train(spec, model, X, Y, Xv, Yv, loss, p0s, many, options,
                                         bayes_opts, auto, weight_decay)
    compile_s = min(compile_clock.compile_seconds(clock), wall)
    for s, r, pr in zip(seeds, results, problems):
        _finish(r, pr, dataset, model, method, s)
        r["batch_time_s"] = wall
        r["time_s"] = wall / len(seeds)
        r["compile_s"] = compile_s / len(seeds)
        r["loop_s"] = (wall - compile_s) / len(seeds)
        r["compiles"] = compile_clock.compilations(clock)
        r["cache_hits"] = int(clock["cache_hits"])
        if prior:
            r["weight_decay"] = weight_decay
        if note is not None:
            r["validation_note"] = note
            r["message"] = f"{r.get('message', '')}; {note}"
    return results if many else results[0]


def _train(spec, model, X, Y, Xv, Yv, loss, p0s, many, options, bayes_opts, auto, weight_decay):
    """The training proper of `train`: (results, problems, wall seconds)."""
    if bayes_opts is not None:
        results, problems, wall = _bayes(spec, model, X, Y, Xv, Yv, loss, p0s, options,
                                         bayes_opts)
    elif auto:
        results, problems, wall = _path(spec, model, X, Y, Xv, Yv, loss, p0s, many, options)
    else:
        problem = TrainingProblem(model, X, Y, loss=loss, weight_decay=weight_decay, X_val=Xv,
                                  Y_val=Yv)
        results, wall = _fit(spec, problem, p0s, many, options)
        problems = [problem] * len(results)
    return results, problems, wall


def _fit(spec: Method, problem, p0s: list, many: bool, options: dict):
    """Run the method on p0s (vectorised where it can with many); (results, wall seconds)."""
    t0 = time.perf_counter()
    if not many:
        results = [spec.fit(problem, p0s[0], **options)]
    elif spec.fit_many is not None:
        results = spec.fit_many(problem, p0s, **options)
    else:
        results = [spec.fit(problem, p, **options) for p in p0s]
    return results, time.perf_counter() - t0


def _path(spec: Method, model, X, Y, Xv, Yv, loss, p0s, many, options):
    """weight_decay="auto": fit AUTO_GRID strong to weak, each fit warm-started from the previous
    one's weights, and keep per initialisation the fit with the lowest validation loss.

    Returns (results, problems, wall): the chosen Results (with weight_decay and path added),
    the TrainingProblem of each, and the wall time of the whole path.
    """
    K = len(p0s)
    path: list[list] = [[] for _ in range(K)]
    best: list = [None] * K
    prev, wall = p0s, 0.0
    for mu in AUTO_GRID:
        problem = TrainingProblem(model, X, Y, loss=loss, weight_decay=mu, X_val=Xv, Y_val=Yv)
        results, t = _fit(spec, problem, prev, many, options)
        wall += t
        for k, r in enumerate(results):
            v = float(problem.val_loss(r["params"]))
            path[k].append((mu, v, problem.mse(r["params"])))
            if best[k] is None or v < best[k][0]:
                best[k] = (v, mu, r, problem)
        prev = [r["params"] for r in results]
    chosen = []
    for k in range(K):
        _, mu, r, _ = best[k]
        r["weight_decay"], r["path"] = mu, path[k]
        chosen.append(r)
    for r in chosen:
        _auto_edge_note(r)
    return chosen, [b[3] for b in best], wall


def _bayes(spec: Method, model, X, Y, Xv, Yv, loss, p0s, options, own):
    """weight_decay="bayes": liftnn.bayes.fit's evidence cycles, each initialisation trained
    with its own mu_w (alm: all of them in one vectorised call).  Returns (results, problems,
    wall) like _path."""
    problems: dict = {}

    def problem_for(mu):
        return TrainingProblem(model, X, Y, loss=loss, weight_decay=mu, X_val=Xv, Y_val=Yv)

    def cycle_with(trainer: Method, opts: dict):
        def train_cycle(mus, params_list):
            if trainer.name in ("alm", "lm", "gn"):  # one vectorised call, a weight decay per
                # seed, in len(p0s) lanes (the settled starts' idle): one program for every cycle
                out = trainer.fit_many(problem_for(max(mus)), params_list, weight_decays=mus,
                                       pad_to=len(p0s), **opts)
            else:
                out = [trainer.fit(problem_for(mu), p, **opts) for mu, p in zip(mus, params_list)]
            for mu, res in zip(mus, out):
                problems[id(res)] = problem_for(mu)
                res["bayes_trainer"] = trainer.name
            return out

        return train_cycle

    N, P = int(np.size(Y)), int(sum(np.size(a) for a in jax.tree_util.tree_leaves(p0s[0])))
    refine = bayes.refiner(spec.name, loss, own, N, P)
    refine_opts = {"max_iter": bayes.REFINE_MAX_ITER,
                   **({"devices": options["devices"]} if "devices" in options else {})}
    refine_cycle = None if refine is None else cycle_with(METHODS[refine], refine_opts)
    if refine == "lm":  # its program compiles beside the first cycle's lifted training
        lm_compiled.compile_ahead(problem_for(1.0), list(p0s), weight_decays=[1.0] * len(p0s),
                                  pad_to=len(p0s), **refine_opts)
    t0 = time.perf_counter()
    results = bayes.fit(cycle_with(spec, options), model, X, Y, loss, p0s, own, refine_cycle)
    wall = time.perf_counter() - t0
    return results, [problems[id(r)] for r in results], wall


def _auto_edge_note(res: Result) -> None:
    """weight_decay="auto" chose the largest mu_w of AUTO_GRID: the best value may lie beyond
    the grid; say so (a LiftnnWarning and a note in the message, "weight_decay_note")."""
    if res["weight_decay"] != max(AUTO_GRID):
        return
    note = (f"weight_decay='auto' chose mu_w = {max(AUTO_GRID):g}, the largest value of its grid "
            f"{AUTO_GRID}: the validation loss may fall further for a stronger weight decay; "
            f"give weight_decay= a number above {max(AUTO_GRID):g} to try one")
    res["weight_decay_note"] = note
    res["message"] = f"{res.get('message', '')}; {note}"
    warnings.warn(note, LiftnnWarning, stacklevel=4)


def _check_front_door_options(options: dict) -> None:
    """Arguments of the solver front doors that ln.train takes under another name."""
    if "x0" in options:
        raise LiftnnError("x0 is not an option of ln.train: give the initial weights as "
                          "params0= (a list of (W, b) per layer, as model.init(seed) returns)")


def _check_training_data(dataset) -> None:
    """At least two training samples, and the training arrays' scale (check_scale: targets whose
    squares overflow are refused, data far from unit scale draw a LiftnnWarning)."""
    check_samples("the training data", len(dataset.x_train))
    check_scale("x_train (the inputs)", dataset.x_train)
    check_scale("y_train (the targets)", dataset.y_train, targets=True)


def _class_targets(model, dataset, validation, loss: str):
    """For the cross-entropy: class indices (m, 1) become one-hot rows (m, d_out) (training,
    test and validation targets), and the network must have one output per class (at least 2,
    and the data set's n_classes where its meta says).  Returns (dataset, validation)."""
    if loss != "cross_entropy":
        return dataset, validation
    k = int(getattr(model, "d_out", 0) or 0)
    n_classes = dataset.meta.get("n_classes") if isinstance(dataset.meta, dict) else None
    if n_classes is not None and k != int(n_classes):
        raise LiftnnError(f"the data set has {n_classes} classes but the network outputs {k}: "
                          f"the cross-entropy needs one output (logit) per class; build it with "
                          f"{n_classes} outputs")
    if k < 2:
        raise LiftnnError(f"the cross-entropy needs one output (logit) per class, at least 2; the "
                          f"network outputs {k}")
    if dataset.y_train.shape[1] == 1:
        y_test = (class_targets("y_test", dataset.y_test, k) if len(dataset.y_test)
                  else np.zeros((0, k)))
        dataset = dataclasses.replace(dataset, y_train=class_targets("y_train", dataset.y_train, k),
                                      y_test=y_test)
    if isinstance(validation, (tuple, list)) and len(validation) == 2:
        Yv = np.asarray(validation[1], dtype=np.float64)
        if Yv.ndim == 1 or (Yv.ndim == 2 and Yv.shape[1] == 1):
            validation = (validation[0], class_targets("Y_val", Yv, k))
    return dataset, validation


def _check_weight_decay(weight_decay, loss) -> bool:
    """True for "auto"; "bayes", "prior" (cross-entropy only) and a number >= 0 give False;
    another string is an error."""
    if isinstance(weight_decay, str):
        if weight_decay == "prior" and loss != "cross_entropy":
            raise LiftnnError(f"weight_decay='prior' is the cross-entropy's unit Gaussian prior "
                              f"(PRIOR_PRECISION / m); loss={loss!r} needs the noise level too: "
                              f"give weight_decay='bayes', which estimates it, or a number")
        if weight_decay in ("bayes", "prior"):
            return False
        if weight_decay != "auto":
            raise LiftnnError(f"unknown weight_decay {weight_decay!r}; give a number >= 0, "
                              f"'auto' (a validated regularisation path), 'bayes' (Bayesian "
                              f"regularisation, the evidence framework) or 'prior' (the "
                              f"cross-entropy's unit Gaussian prior)")
        return True
    check_positive("weight_decay", weight_decay, strict=False)
    return False


def _validation_data(model, dataset, validation, seed, auto: bool):
    """(X, Y, X_val, Y_val) for `validation` (see train); X_val = Y_val = None without it."""
    X, Y = dataset.x_train, dataset.y_train
    if validation is None or validation is False:
        return X, Y, None, None
    if validation is True:
        raise LiftnnError("validation=True (the test set as validation data) is not accepted: "
                          "choosing by the test set leaks it into training; give a fraction of "
                          "the training data (e.g. validation=0.2) or arrays (X_val, Y_val)")
    if isinstance(validation, (tuple, list)):
        if len(validation) != 2:
            raise LiftnnError(f"validation arrays must be a pair (X_val, Y_val); got "
                              f"{len(validation)} items")
        try:
            Xv, Yv = model.check_data(validation[0], validation[1])
        except LiftnnError as exc:
            raise LiftnnError(f"validation data (X_val, Y_val): {exc}") from None
        return X, Y, Xv, Yv
    if isinstance(validation, (int, float, np.integer, np.floating)):
        Xtr, Ytr = model.check_data(X, Y)
        return split_validation(Xtr, Ytr, float(validation), seed, auto)
    raise LiftnnError(f"validation must be None, a fraction in (0, 1) or a pair (X_val, Y_val); "
                      f"got {validation!r}")


def _n_val(fraction: float, m: int) -> int:
    return int(np.floor(fraction * m + 0.5))


def split_validation(X, Y, fraction: float, seed: int = 0, auto: bool = False):
    """Hold out round(fraction * m) of the m samples (X: (m, d_in), Y: (m, d_out)) for validation.

    round() rounds halves up (0.05 of 10 samples is 1).  The split is a permutation drawn from numpy's default_rng(seed); both parts keep the original
    sample order.  Returns (X_train, Y_train, X_val, Y_val).  Raises LiftnnError for a fraction
    outside (0, 1) or a data set too small to leave a sample on each side.
    """
    if not (np.isfinite(fraction) and 0.0 < fraction < 1.0):
        raise LiftnnError(f"validation fraction must be in (0, 1); got {fraction!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise LiftnnError(f"validation_seed must be an integer >= 0; got {seed!r}")
    m = int(np.shape(X)[0])
    n_val = _n_val(fraction, m)
    if n_val < 1 or m - n_val < 1:
        need = next(k for k in range(2, 10**7) if 1 <= _n_val(fraction, k) <= k - 1)
        who = "weight_decay='auto' needs a validation split: " if auto else ""
        raise LiftnnError(f"{who}a validation fraction of {fraction:g} of {m} training samples "
                          f"leaves {n_val} for validation and {m - n_val} for training; at "
                          f"least {need} samples are needed")
    perm = np.random.default_rng(int(seed)).permutation(m)
    val, tr = np.sort(perm[:n_val]), np.sort(perm[n_val:])
    X, Y = np.asarray(X), np.asarray(Y)
    return X[tr], Y[tr], X[val], Y[val]


def _check_dropout(model, spec: Method) -> None:
    if any(r > 0.0 for r in getattr(model, "dropout", ())) and spec.family != FIRST_ORDER:
        raise LiftnnError(f"dropout is a stochastic training rule for the first-order methods "
                          f"(gd, momentum, nesterov, adam, rmsprop, adadelta, rprop); "
                          f"{spec.name!r} trains the deterministic network: build the model "
                          f"with dropout=0")


def _finish(res: Result, problem, dataset, model, method, seed) -> Result:
    params = res["params"]
    res["method"] = method
    res["seed"] = int(seed)
    res["init"] = getattr(model, "init_name", "custom")
    res["n"] = problem.m
    res["train_mse"] = problem.mse(params)
    res["test_mse"] = (problem.mse(params, dataset.x_test, dataset.y_test)
                       if len(dataset.x_test) else float("nan"))
    if not len(dataset.x_test):
        res["test_note"] = "no test data: test_mse (and test_accuracy) are nan"
    if problem.X_val is not None:
        res["n_val"] = int(problem.X_val.shape[0])
        res["val_mse"] = problem.mse(params, problem.X_val, problem.Y_val)
    if problem.loss == "cross_entropy":
        res["train_accuracy"] = accuracy(model, params, problem.X, problem.Y)
        res["test_accuracy"] = (accuracy(model, params, dataset.x_test, dataset.y_test)
                                if len(dataset.x_test) else float("nan"))
        if problem.X_val is not None:
            res["val_accuracy"] = accuracy(model, params, problem.X_val, problem.Y_val)
    _check_finite(res, problem, method)
    return res


def _check_finite(res: Result, problem, method: str) -> None:
    """Non-finite returned weights break the trainers' contract (an internal error); a train
    MSE that overflows at finite weights (data far from unit scale) is reported honestly:
    status "diverged", a note in the message and a LiftnnWarning."""
    if np.isfinite(res["train_mse"]):
        return
    if not np.all(np.isfinite(np.asarray(problem.flatten(res["params"])))):
        raise RuntimeError(f"{method} returned non-finite parameters; it must return its last good "
                           f"iterate")
    note = ("the training MSE overflows float64 at the returned (finite) weights: the network's "
            "outputs are far from the targets' scale; standardise the inputs and targets")
    res["status"], res["success"] = R.DIVERGED, False
    res["message"] = f"{res.get('message', '')}; {note}"
    warnings.warn(note, LiftnnWarning, stacklevel=4)


