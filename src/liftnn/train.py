"""`ln.train(model, dataset, method=..., seed=...)`: the one front door for training networks.

Every method starts from `model.init(seed)` (the same initial weights for every method given the
seed) and minimises the same objective (liftnn.problem.TrainingProblem).  The method is resolved
once, in the table liftnn.methods.METHODS (name -> Method record with fit / fit_many); the
trainers receive the problem and the initial weights only:

    fit(problem, params0, **options) -> Result
    fit_many(problem, params0_list, **options) -> list[Result]     (vectorised `seeds=[...]`)

Timing has one home: this front door sets ``time_s`` (wall seconds of the method's call; with
`seeds` the batch's wall time / K, and ``batch_time_s`` the whole), overwriting anything a trainer
reports (a single run: batch_time_s = time_s).  docs/solvers.md lists the methods and the Result fields.
"""

from __future__ import annotations

import time

import numpy as np

from liftnn._validate import check_choice
from liftnn.errors import LiftnnError
from liftnn.methods import FIRST_ORDER, METHODS, Method
from liftnn.problem import TrainingProblem
from liftnn.solvers.result import Result

__all__ = ["METHODS", "train"]


def train(model, dataset, method: str = "adam", seed: int = 0, seeds=None, *, params0=None,
          loss: str = "mse", weight_decay: float = 0.0, validation: bool = False, **options):
    """Train `model` on `dataset` with `method`; returns a Result (a list of them with `seeds`).

    Args:
        model: an MLP (or any model with init/apply/check_data).
        dataset: a liftnn Dataset (x_train, y_train, x_test, y_test).
        method: a name in METHODS ("alm", "adam", "lm", ...).
        seed: initial-weight seed (ignored if params0 is given).
        seeds: a list of seeds trained in one vectorised call where the method supports it.
        loss, weight_decay: the objective, loss + weight_decay/2 ||theta||^2.
        validation: use the test set as validation data (for `patience` on validation loss).
        **options: passed to the method (max_iter, gtol, time_budget, patience, callback, ...).
    """
    check_choice("method", method, METHODS)
    spec = METHODS[method]
    _check_dropout(model, spec)
    problem = TrainingProblem(
        model, dataset.x_train, dataset.y_train, loss=loss, weight_decay=weight_decay,
        X_val=dataset.x_test if validation and len(dataset.x_test) else None,
        Y_val=dataset.y_test if validation and len(dataset.y_test) else None,
    )
    if seeds is not None:
        seeds = [int(s) for s in seeds]
        if not seeds:
            raise LiftnnError("seeds is empty")
        p0s = [model.init(s) for s in seeds]
        t0 = time.perf_counter()
        if spec.fit_many is not None:
            results = spec.fit_many(problem, p0s, **options)
        else:
            results = [spec.fit(problem, p, **options) for p in p0s]
        wall = time.perf_counter() - t0
        for s, r in zip(seeds, results):
            _finish(r, problem, dataset, model, method, s)
            r["batch_time_s"] = wall
            r["time_s"] = wall / len(seeds)
        return results
    p0 = params0 if params0 is not None else model.init(int(seed))
    t0 = time.perf_counter()
    res = spec.fit(problem, p0, **options)
    res["time_s"] = res["batch_time_s"] = time.perf_counter() - t0
    return _finish(res, problem, dataset, model, method, seed)


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
    if not np.isfinite(res["train_mse"]):
        raise RuntimeError(f"{method} returned non-finite parameters; it must return its last good "
                           f"iterate")
    return res
