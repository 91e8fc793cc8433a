"""The objective the compiled first-order loop differentiates, keyed for the compile cache.

For networks it is liftnn.problem's objective (`objective_value`, the formula of
TrainingProblem.objective) on the flat vector theta, with the data as arguments rather than
constants, so that one compiled program serves every data set of the same shapes:

    f(theta; X, Y)   = loss(f_theta(X), Y) + weight_decay / 2 ||theta||^2
    val(theta; Xv, Yv) = loss(f_theta(Xv), Yv)                      (TrainingProblem.val_loss)
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field

from liftnn.problem import loss_value, objective_value


@dataclass(frozen=True)
class Objective:
    """A scalar objective f(theta, X, Y) (and val(theta, Xv, Yv)); hashed by `key` only."""

    key: tuple
    f: Callable = field(compare=False, hash=False)
    val: Callable | None = field(default=None, compare=False, hash=False)
    # f_train(theta, X, Y, key): the objective with dropout masks drawn from key (training mode);
    # None when the model has no dropout.  Steps use its gradient; C, the stopping rules and the
    # history use f (inference mode, dropout off).
    f_train: Callable | None = field(default=None, compare=False, hash=False)


@functools.lru_cache(maxsize=32)
def network_objective(model, loss: str, weight_decay: float) -> Objective:
    """TrainingProblem's objective on the flat vector theta, data as arguments (module doc)."""

    def f(theta, X, Y):
        return objective_value(model, loss, weight_decay, model.unflatten(theta), X, Y, theta)

    def val(theta, X, Y):
        return loss_value(model, loss, model.unflatten(theta), X, Y)

    f_train = None
    if any(r > 0.0 for r in getattr(model, "dropout", ())):
        def f_train(theta, X, Y, key):
            return objective_value(model, loss, weight_decay, model.unflatten(theta), X, Y,
                                   theta, key=key)

    return Objective(("network", model, loss, float(weight_decay)), f, val, f_train)


@functools.lru_cache(maxsize=64)
def function_objective(fun, squeeze: bool) -> Objective:
    """fun(x) as an objective of (theta, X, Y) that ignores the data (squeeze: fun returns (1,))."""
    if squeeze:
        return Objective(("function", fun, True), lambda theta, X, Y: fun(theta)[0])
    return Objective(("function", fun, False), lambda theta, X, Y: fun(theta))
