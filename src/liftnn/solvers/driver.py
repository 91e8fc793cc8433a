"""The one driver loop behind the classical solvers (cg, bfgs, lbfgs, newton, newton-cg, gn, lm).

A solver is two small functions in the style of optimistix (docs/solvers.md): ``init(it) -> state`` and
``step(state, it) -> (state, Step)``, where `it` is the current `Iterate` (x, f, g, and for least
squares r and J) and a `Step` carries the next iterate (or None when the step failed), the step
length and, when the solver itself must stop, a status and message.  Everything else - options,
input checks, evaluation counters, the history, convergence tests, patience, the time budget, the
callback, Ctrl-C and the returned `Result` - is written once, here, in `run`.

Evaluations are compiled once per function with jax.jit and cached (`scalar_functions`,
`residual_functions`); the Python loop runs over iterations only.  Counting (`Evaluator`):

- minimize:       nfev = function evaluations, njev = gradient evaluations (a value-and-gradient
                  call counts one of each), nhev = Hessian evaluations or Hessian-vector products.
- least squares:  nfev = residual evaluations, njev = Jacobian evaluations (the residual that
                  comes with a Jacobian evaluation is not counted again), nhev = 0.

Convergence tests after every accepted step k (in this order; off when the tolerance is 0):

- gtol:  ||g_k||_inf <= gtol                                       -> converged
- ftol:  f_{k-1} - f_k <= ftol * |f_{k-1}|                          -> converged
- xtol:  ||x_k - x_{k-1}||_2 <= xtol * (xtol + ||x_k||_2)            -> converged
- patience: `patience` iterations in a row without the training loss falling below its best by
  more than min_delta                                              -> stalled
- val_patience (only with a monitor, the validation loss; default 10): `val_patience` iterations
  in a row without the validation loss falling below its best by more than min_delta -> stalled
- time_budget: wall seconds since the call began                    -> max_iter (message says so)
- callback(iter, x, loss) returning True                           -> interrupted

Failures: a step whose line search fails -> line_search_failed (the last good iterate is
returned); a loss of -inf, or a non-finite gradient / Jacobian / Hessian at an accepted point ->
diverged (the last finite iterate is returned); KeyboardInterrupt inside the loop -> interrupted
(the best iterate so far).  ``success`` is True for converged and stalled, as in first_order.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from liftnn import xla_options
from liftnn._validate import callable_or_none, integer, merge_options, number
from liftnn.blas_threads import limit_blas
from liftnn.errors import LiftnnError
from liftnn.problem import DataBound, host_flat
from liftnn.solvers import result as R

#: options every classical solver accepts, with their defaults (max_iter's default is per method)
COMMON_DEFAULTS: dict[str, Any] = {
    "max_iter": 1000,
    "gtol": 1e-8,
    "ftol": 0.0,
    "xtol": 0.0,
    "time_budget": None,
    "patience": None,
    "min_delta": 0.0,
    "val_patience": 10,
    "callback": None,
}

# ---------------------------------------------------------------------------------------------
# options
# ---------------------------------------------------------------------------------------------


def common_options(method: str, options: dict, method_defaults: dict,
                   max_iter: int | None = None) -> dict:
    """COMMON_DEFAULTS + method_defaults + options; unknown names raise LiftnnError listing the
    valid ones; the common options are validated here, the method's own by its module."""
    defaults = {**COMMON_DEFAULTS, **method_defaults}
    if max_iter is not None:
        defaults["max_iter"] = max_iter
    o = merge_options(method, options, defaults)
    integer(o, "max_iter", 0)
    for name in ("gtol", "ftol", "xtol", "min_delta"):
        number(o, name, 0.0)
    if o["time_budget"] is not None:
        number(o, "time_budget", 0.0, lo_open=True)
    integer(o, "patience", 1, allow_none=True)
    integer(o, "val_patience", 1, allow_none=True)
    callable_or_none(o, "callback")
    return o


# ---------------------------------------------------------------------------------------------
# inputs and compiled evaluations
# ---------------------------------------------------------------------------------------------


def check_x0(x0) -> np.ndarray:
    """x0 as a float64 vector (n,); raises LiftnnError for non-numeric, non-1-D, empty or
    non-finite input."""
    try:
        x = np.array(x0, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise LiftnnError(f"x0 is not a numeric vector: {exc}") from None
    if x.ndim != 1:
        raise LiftnnError(f"x0 must be a 1-D vector (n,); got shape {x.shape}")
    if x.size == 0:
        raise LiftnnError("x0 is empty")
    if not np.all(np.isfinite(x)):
        i = int(np.flatnonzero(~np.isfinite(x))[0])
        raise LiftnnError(f"x0 contains non-finite values (first at index {i}: {x[i]!r})")
    return x


def _output_shape(fun: Callable, x: np.ndarray, what: str) -> tuple:
    if not callable(fun):
        raise LiftnnError(f"{what} must be callable; got {fun!r}")
    try:
        return tuple(jax.eval_shape(fun, jax.ShapeDtypeStruct(x.shape, jnp.float64)).shape)
    except Exception as exc:  # noqa: BLE001 - any failure to trace is bad input
        raise LiftnnError(f"{what} could not be evaluated with JAX at x0 (write it with jax.numpy "
                          f"and make it accept a vector of shape {x.shape}): "
                          f"{type(exc).__name__}: {exc}") from None


def cached_by_function(builder):
    """lru_cache on the function argument, falling back to no caching for unhashable ones."""
    cached = functools.lru_cache(maxsize=64)(builder)

    @functools.wraps(builder)
    def get(*args):
        try:
            return cached(*args)
        except TypeError:  # unhashable callable
            return builder(*args)

    get.cache_clear = cached.cache_clear
    return get


@dataclass(frozen=True)
class ScalarFunctions:
    """Jitted evaluations of a scalar f: value, value-and-gradient, Hessian, Hessian-vector."""

    f: Callable
    fg: Callable
    hess: Callable
    hvp: Callable
    scalar: Callable  # the (un-jitted) scalar function itself, for solvers that build on it


def scalar_functions(fun: Callable, squeeze: bool) -> ScalarFunctions:
    """Compile f, (f, grad f), the Hessian (jax.hessian) and the forward-over-reverse product
    H v = d/de grad f(x + e v) for `fun` (squeeze: fun returns shape (1,)); for a DataBound
    the programs of its pure function with the data bound as arguments."""
    if not isinstance(fun, DataBound):
        return _scalar_programs(fun, squeeze)
    p, args = _scalar_programs(fun.pure, squeeze), fun.args
    return ScalarFunctions(f=lambda x: p.f(x, *args), fg=lambda x: p.fg(x, *args),
                           hess=lambda x: p.hess(x, *args), hvp=lambda x, v: p.hvp(x, v, *args),
                           scalar=lambda x: p.scalar(x, *args))


@cached_by_function
def _scalar_programs(fun: Callable, squeeze: bool) -> ScalarFunctions:
    """scalar_functions' programs of fun(x, *args) (args: the data, traced; none for a plain
    function of x); f and (f, grad f) with liftnn.xla_options' CPU options (a cold
    LiftnnClassifier fit on moons 0.33-0.35 -> 0.29-0.31 s, docs/benchmarks.md "XLA options")."""
    f = (lambda x, *a: jnp.reshape(fun(x, *a), ())) if squeeze else fun
    grad = jax.grad(f)
    return ScalarFunctions(
        f=xla_options.jit(f),
        fg=xla_options.jit(jax.value_and_grad(f)),
        hess=jax.jit(jax.hessian(f)),
        hvp=jax.jit(lambda x, v, *a: jax.jvp(lambda y: grad(y, *a), (x,), (v,))[1]),
        scalar=f,
    )


@dataclass(frozen=True)
class ResidualFunctions:
    """Jitted evaluations of a residual r: (n,) -> (m,): r alone and (r, J) together."""

    r: Callable
    rj: Callable


@cached_by_function
def residual_functions(res: Callable, forward: bool) -> ResidualFunctions:
    """Compile r and (r, J) with J = dr/dx (m, n) from jax.jacfwd (forward: n <= m, n JVPs) or
    jax.jacrev (m < n, m VJPs); the residual comes out of the same trace as the Jacobian."""
    jac = jax.jacfwd if forward else jax.jacrev
    both = jac(lambda x: (res(x), res(x)), has_aux=True)
    return ResidualFunctions(r=jax.jit(res), rj=jax.jit(lambda x: both(x)[::-1]))


@dataclass
class Iterate:
    """A point and what is known there: f (the loss: the objective, or the least-squares cost
    1/2 ||r||^2), g = grad f (n,), and for least squares r (m,) and J (m, n)."""

    x: np.ndarray
    f: float
    g: np.ndarray
    r: np.ndarray | None = None
    J: np.ndarray | None = None


@dataclass
class Step:
    """What one solver step produced: the next iterate (None if the step failed), the step
    length, and - when the solver must stop - a status (from liftnn.solvers.result) and message.
    `info` adds per-iteration history entries (e.g. mu, shift, restart)."""

    it: Iterate | None
    step: float = 0.0
    status: str | None = None
    message: str = ""
    info: dict = field(default_factory=dict)


class ScalarEvaluator:
    """Counts and evaluates a scalar function f: (n,) -> () (see the module docstring)."""

    kind = "minimize"

    def __init__(self, fun: Callable, x0: np.ndarray):
        shape = _output_shape(fun, x0, "fun")
        if shape not in ((), (1,)):
            raise LiftnnError(f"fun must return a scalar; it returns shape {shape}")
        self.fns = scalar_functions(fun, shape == (1,))
        self.n = x0.size
        self.nfev = self.njev = self.nhev = 0

    def f(self, x) -> float:
        self.nfev += 1
        return float(self.fns.f(x))

    def fg(self, x) -> tuple[float, np.ndarray]:
        self.nfev += 1
        self.njev += 1
        f, g = self.fns.fg(x)
        return float(f), np.asarray(g, dtype=np.float64)

    def hess(self, x) -> np.ndarray:
        self.nhev += 1
        return np.asarray(self.fns.hess(x), dtype=np.float64)

    def iterate(self, x) -> Iterate:
        f, g = self.fg(x)
        return Iterate(x, f, g)

    def accepted(self, ls) -> Iterate:
        """The iterate at a line search's accepted point; Armijo knows only f there, so the
        gradient is evaluated (one gradient evaluation)."""
        if ls.g is not None:
            return Iterate(ls.x, ls.f, ls.g)
        self.njev += 1
        _, g = self.fns.fg(ls.x)
        return Iterate(ls.x, ls.f, np.asarray(g, dtype=np.float64))

    def first(self, x0) -> Iterate:
        """The iterate at x0; raises LiftnnError if f or its gradient is not finite there."""
        it = self.iterate(x0)
        if not math.isfinite(it.f):
            raise LiftnnError(f"the function value is not finite at x0: f(x0) = {it.f!r}")
        if not np.all(np.isfinite(it.g)):
            raise LiftnnError("the gradient is not finite at x0")
        return it


class KeepsLastIterate:
    """For evaluators whose `iterate` computes everything a step needs in one go (r and J, or
    C, grad C and G): the strong Wolfe search's `fg` keeps that iterate, so accepting the point
    it ended at costs nothing more."""

    def fg(self, x) -> tuple[float, np.ndarray]:
        """(f, grad f) for the strong Wolfe search: one full `iterate`, kept for `accepted`."""
        self._last = self.iterate(x)
        return self._last.f, self._last.g

    def accepted(self, ls) -> Iterate:
        """The iterate at a line search's accepted point: reused from `fg` when the search
        evaluated it there, else one more `iterate`."""
        last = getattr(self, "_last", None)
        if last is not None and last.x is ls.x:
            return last
        return self.iterate(ls.x)


class ResidualEvaluator(KeepsLastIterate):
    """Counts and evaluates a residual r: (n,) -> (m,) and its Jacobian (module docstring)."""

    kind = "least_squares"

    def __init__(self, res: Callable, x0: np.ndarray):
        shape = _output_shape(res, x0, "residual")
        if len(shape) != 1 or shape[0] == 0:
            raise LiftnnError(f"residual must return a non-empty vector (m,); it returns shape "
                              f"{shape}")
        self.m, self.n = shape[0], x0.size
        self.fns = residual_functions(res, self.n <= self.m)
        self.nfev = self.njev = self.nhev = 0

    def r(self, x) -> np.ndarray:
        self.nfev += 1
        return np.asarray(self.fns.r(x), dtype=np.float64)

    def f(self, x) -> float:
        """The cost 1/2 ||r(x)||^2 (NaN when r is not finite): one residual evaluation."""
        r = self.r(x)
        with np.errstate(over="ignore"):  # a finite but huge trial residual: cost inf, rejected
            return 0.5 * float(r @ r) if np.all(np.isfinite(r)) else math.nan

    def iterate(self, x) -> Iterate:
        self.njev += 1
        r, J = self.fns.rj(x)
        r, J = np.asarray(r, dtype=np.float64), np.asarray(J, dtype=np.float64)
        with np.errstate(over="ignore"):
            cost = 0.5 * float(r @ r) if np.all(np.isfinite(r)) else math.nan
        return Iterate(x, cost, J.T @ r if np.all(np.isfinite(J)) else J.sum(0) * np.nan, r, J)

    def first(self, x0) -> Iterate:
        """The iterate at x0; raises LiftnnError if r, J or the cost is not finite there."""
        it = self.iterate(x0)
        if not np.all(np.isfinite(it.r)):
            bad = int(np.flatnonzero(~np.isfinite(it.r))[0])
            raise LiftnnError(f"the residuals are not finite at x0 (first at index {bad}: "
                              f"{it.r[bad]!r})")
        if not np.all(np.isfinite(it.J)):
            raise LiftnnError("the Jacobian of the residuals is not finite at x0")
        if not math.isfinite(it.f):  # finite residuals whose squares overflow: no step can be judged
            raise LiftnnError(f"the cost 1/2 ||r||^2 overflows float64 at x0 (residuals up to "
                              f"{float(np.max(np.abs(it.r))):.3g}); rescale the problem (for "
                              f"network training: standardise the targets)")
        return it


def finite_iterate(it: Iterate) -> bool:
    """f, g (and J) all finite."""
    return (math.isfinite(it.f) and bool(np.all(np.isfinite(it.g)))
            and (it.J is None or bool(np.all(np.isfinite(it.J)))))


# ---------------------------------------------------------------------------------------------
# the loop
# ---------------------------------------------------------------------------------------------


class _Tracker:
    """The best iterate and the patience counters of one run.

    best: the lowest training loss, or with a monitor (validation loss) the lowest monitored
    value; `patience` counts iterations without the training loss improving by more than
    min_delta, `val_patience` iterations without the monitored value falling below its best by
    more than min_delta.
    """

    def __init__(self, it: Iterate, val: float | None, o: dict):
        self.best, self.best_val = it, val
        self.f_best, self.since_f, self.since_val = it.f, 0, 0
        self.min_delta = o["min_delta"]

    def update(self, it: Iterate, val: float | None) -> None:
        if it.f < self.f_best - self.min_delta:
            self.f_best, self.since_f = it.f, 0
        else:
            self.since_f += 1
        if val is None:
            if it.f < self.best.f:
                self.best = it
        else:
            self.since_val = 0 if val < self.best_val - self.min_delta else self.since_val + 1
            if val < self.best_val:
                self.best, self.best_val = it, val


def _stop_rule(o: dict, prev: Iterate, it: Iterate, h: dict, tr: _Tracker, nit: int,
               elapsed: float, watching_val: bool) -> tuple[str, str] | None:
    """The convergence and stopping tests after an accepted step, in the module docstring's
    order; (status, message) or None to go on."""
    gtol, ftol, xtol = o["gtol"], o["ftol"], o["xtol"]
    gmax = h["grad_norm"]
    if gmax <= gtol:
        return R.CONVERGED, f"||grad||_inf = {gmax:.3g} <= gtol = {gtol:g}"
    if ftol > 0 and prev.f - it.f <= ftol * abs(prev.f):
        return R.CONVERGED, (f"relative decrease of the loss {(prev.f - it.f) / abs(prev.f):.3g} "
                             f"<= ftol = {ftol:g}")
    if xtol > 0 and np.linalg.norm(it.x - prev.x) <= xtol * (xtol + np.linalg.norm(it.x)):
        return R.CONVERGED, f"relative step <= xtol = {xtol:g}"
    if o["patience"] is not None and tr.since_f >= o["patience"]:
        return R.STALLED, (f"no improvement of the training loss by more than min_delta = "
                           f"{o['min_delta']:g} in {o['patience']} iterations (patience)")
    if watching_val and o["val_patience"] is not None and tr.since_val >= o["val_patience"]:
        return R.STALLED, (f"no improvement of the validation loss in {o['val_patience']} "
                           f"iterations (val_patience); returned the iterate with the lowest "
                           f"validation loss")
    if nit >= o["max_iter"]:
        return R.MAX_ITER, f"max_iter = {o['max_iter']} iterations reached"
    if o["time_budget"] is not None and elapsed >= o["time_budget"]:
        return R.MAX_ITER, f"time budget of {o['time_budget']:g} s reached after {nit} iterations"
    if o["callback"] is not None and o["callback"](nit, it.x.copy(), it.f) is True:
        return R.INTERRUPTED, (f"stopped by the callback after {nit} iterations; returned the "
                               f"best iterate so far")
    return None


def _failed_step(st: Step, nit: int) -> tuple[str, str] | None:
    """(status, message) when a step produced no usable iterate, else None."""
    if st.it is not None and not finite_iterate(st.it):
        return R.DIVERGED, (f"the loss or its derivatives became non-finite in iteration "
                            f"{nit + 1}; returned the last finite iterate")
    if st.it is None:
        status, message = st.status or R.STALLED, st.message
        if status == R.DIVERGED:
            message += "; returned the last finite iterate"
        elif status == R.LINE_SEARCH_FAILED:
            message += "; returned the last good iterate"
        return status, message
    return None


def run(method: str, solver: tuple, ev, x0: np.ndarray, o: dict,
        monitor: Callable | None = None) -> R.Result:
    """Run a solver from x0 with BLAS capped at one thread (liftnn.blas_threads: numpy's
    factorisations and XLA's thread pool otherwise oversubscribe the cores); see _run."""
    with limit_blas():
        return _run(method, solver, ev, x0, o, monitor)


def _run(method: str, solver: tuple, ev, x0: np.ndarray, o: dict,
         monitor: Callable | None = None) -> R.Result:
    """Run a solver from x0 with the common options `o` (see the module docstring).

    solver: (init, step, summary): init(it) -> state, step(state, it) -> (state, Step),
    summary(state) -> dict of extra result fields (e.g. skipped_updates).
    ev: a ScalarEvaluator or ResidualEvaluator (its counters are the run's nfev/njev/nhev).
    monitor: optional x -> float, the validation loss: recorded in the history as "val_loss",
    watched by `val_patience`, and the returned iterate is the one with its lowest value (Result
    val_loss).

    Returns a Result: x (best iterate), fun (minimize: f(x); least squares: r(x), plus cost,
    grad, optimality), jac (gradient / Jacobian at x), x_last / fun_last (last accepted
    iterate), nit, nfev, njev, nhev, status, success, message, history (iter 0 = x0; "time" is
    seconds since run began).  time_s is set by the front doors (docs/solvers.md), not here.
    """
    t0 = time.perf_counter()
    init, step, summary = solver
    it = ev.first(x0)
    state = init(it)

    def record(k, it, step_len, info):
        h = {"iter": k, "loss": it.f, "grad_norm": float(np.max(np.abs(it.g))),
             "step": float(step_len), "nfev": ev.nfev, "njev": ev.njev, "nhev": ev.nhev}
        if monitor is not None:
            h["val_loss"] = float(monitor(it.x))
        h.update(info)
        h["time"] = time.perf_counter() - t0
        return h

    history = [record(0, it, 0.0, {})]
    tr = _Tracker(it, history[0].get("val_loss"), o)
    stop, nit = None, 0
    if float(np.max(np.abs(it.g))) <= o["gtol"]:
        stop = R.CONVERGED, f"||grad||_inf = {np.max(np.abs(it.g)):.3g} <= gtol = {o['gtol']:g} at x0"
    elif o["max_iter"] == 0:
        stop = R.MAX_ITER, "max_iter = 0"
    try:
        while stop is None:
            state, st = step(state, it)
            stop = _failed_step(st, nit)
            if stop is not None:
                break
            prev, it = it, st.it
            nit += 1
            h = record(nit, it, st.step, st.info)
            history.append(h)
            tr.update(it, h.get("val_loss"))
            if st.status is not None:
                stop = st.status, st.message
                break
            stop = _stop_rule(o, prev, it, h, tr, nit, time.perf_counter() - t0,
                              monitor is not None)
    except KeyboardInterrupt:
        stop = R.INTERRUPTED, (f"interrupted (KeyboardInterrupt) after {nit} iterations; "
                               f"returned the best iterate so far")
    status, message = stop
    best = tr.best
    res = R.Result(
        method=method, x=best.x, x_last=it.x, fun_last=it.f, nit=nit, nfev=ev.nfev,
        njev=ev.njev, nhev=ev.nhev, status=status, success=status in (R.CONVERGED, R.STALLED),
        message=message, history=history, **summary(state))
    if monitor is not None:
        res["val_loss"] = tr.best_val
    if ev.kind == "least_squares":
        res.update(fun=best.r, cost=best.f, jac=best.J, grad=best.g,
                   optimality=float(np.max(np.abs(best.g))))
    else:
        res.update(fun=best.f, jac=best.g)
    return res


def network_theta0(problem, params0) -> np.ndarray:
    """params0 of a TrainingProblem's model as a finite flat vector of the model's size
    (LiftnnError otherwise)."""
    try:  # on the host: an eager ravel_pytree compiles a reshape per leaf shape and a concatenate
        theta0 = host_flat(params0)
    except Exception as exc:  # noqa: BLE001 - malformed params
        raise LiftnnError(f"params0 do not fit the model: {exc}") from None
    n = getattr(problem.model, "n_params", theta0.size)
    if theta0.shape != (n,):
        raise LiftnnError(f"params0 have {theta0.size} entries; the model has {n}")
    if not np.all(np.isfinite(theta0)):
        raise LiftnnError("params0 contain non-finite values")
    return theta0


@functools.lru_cache(maxsize=32)
def _val_loss(problem):
    return jax.jit(lambda theta: problem.val_loss(problem.unflatten(theta)))


def validation_monitor(problem) -> Callable | None:
    """theta -> validation loss of a TrainingProblem with validation data (`run`'s monitor),
    else None."""
    if problem.X_val is None:
        return None
    val = _val_loss(problem)
    return lambda theta: float(val(theta))
