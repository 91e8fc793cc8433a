"""`ln.train(model, dataset, method=..., seed=...)`: the one front door for training networks.

Every method starts from `model.init(seed)` (the same initial weights for every method given the
seed) and minimises the same objective (see liftnn.problem.TrainingProblem).  Methods are looked
up in METHODS, name -> "module:function"; the function has the signature

    fit(problem: TrainingProblem, params0, *, method: str, **options) -> Result

and a module may also offer `fit_many(problem, params0_list, *, method, **options) -> list[Result]`
to train several initialisations in one vectorised call (used for `seeds=[...]`).
"""

from __future__ import annotations

import importlib
import time

from liftnn._validate import check_choice
from liftnn.errors import LiftnnError
from liftnn.problem import TrainingProblem
from liftnn.solvers.result import Result

_FIRST_ORDER = ("gd", "momentum", "nesterov", "adam", "rmsprop", "adadelta", "rprop")
FIRST_ORDER = "liftnn.solvers.first_order"
METHODS: dict[str, str] = {
    "alm": "liftnn.lifted.alm",
    "lifted-gn": "liftnn.lifted.lifted_gn",
    **{m: FIRST_ORDER for m in _FIRST_ORDER},
    **{m: "liftnn.solvers.network" for m in ("cg", "bfgs", "lbfgs", "newton", "newton-cg", "gn", "lm")},
}


def _module(method: str):
    check_choice("method", method, METHODS)
    try:
        return importlib.import_module(METHODS[method])
    except ImportError as exc:  # pragma: no cover - a method whose module is missing
        raise LiftnnError(f"method {method!r} is not available: {exc}") from None


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
    mod = _module(method)
    if any(r > 0.0 for r in getattr(model, "dropout", ())) and METHODS[method] != FIRST_ORDER:
        raise LiftnnError(f"dropout is a stochastic training rule for the first-order methods "
                          f"(gd, momentum, nesterov, adam, rmsprop, adadelta, rprop); {method!r} "
                          f"trains the deterministic network: build the model with dropout=0")
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
        if hasattr(mod, "fit_many"):
            results = mod.fit_many(problem, p0s, method=method, **options)
        else:
            results = [mod.fit(problem, p, method=method, **options) for p in p0s]
        wall = time.perf_counter() - t0
        for s, r in zip(seeds, results):
            _finish(r, problem, dataset, model, method, s)
            r["batch_time_s"] = wall
            r["time_s"] = wall / len(seeds)
        return results
    p0 = params0 if params0 is not None else model.init(int(seed))
    t0 = time.perf_counter()
    res = mod.fit(problem, p0, method=method, **options)
    res["time_s"] = time.perf_counter() - t0
    return _finish(res, problem, dataset, model, method, seed)


def _finish(res: Result, problem, dataset, model, method, seed) -> Result:
    import numpy as np

    params = res["params"]
    res["method"] = method
    res["seed"] = int(seed)
    res["init"] = getattr(model, "init_name", "custom")
    res["n"] = problem.m
    res["train_mse"] = problem.mse(params)
    res["test_mse"] = (problem.mse(params, dataset.x_test, dataset.y_test)
                       if len(dataset.x_test) else float("nan"))
    if not np.isfinite(res["train_mse"]):
        raise RuntimeError(f"{method} returned non-finite parameters; it must return its last good iterate")
    return res
