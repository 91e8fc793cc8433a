"""The front doors `minimize(fun, x0, method=...)` and `least_squares(residual, x0, method=...)`.

Any differentiable function of a vector written with jax.numpy (float64), not only networks; the
derivatives come from JAX.  Results mirror scipy.optimize (x, fun, jac, nit, nfev, njev, nhev,
status, success, message; least_squares also cost = 1/2 ||r||^2, grad = J^T r, optimality =
||grad||_inf, and fun is the residual vector, as in scipy.optimize.least_squares) plus `history`
(one dict per iteration, iteration 0 is x0: iter, loss, grad_norm = ||g||_inf, step, cumulative
nfev / njev / nhev, time = wall seconds since the call began, and per-method entries), x_last /
fun_last (the last accepted iterate) and time_s.

Methods (seed sections in each module's docstring):

========== ====================================================== ==========================
method     algorithm                                              module
========== ====================================================== ==========================
gd ...     gd, momentum, nesterov, adam, rmsprop, adadelta, rprop liftnn.solvers.first_order
cg         nonlinear CG, Polak-Ribiere+ / Fletcher-Reeves         liftnn.solvers.cg
bfgs       dense inverse-Hessian BFGS, strong Wolfe (seed 001)    liftnn.solvers.quasi_newton
lbfgs      limited-memory BFGS, two-loop recursion                liftnn.solvers.quasi_newton
newton     exact Hessian, Cholesky of H + alpha I (seed 003)      liftnn.solvers.newton
newton-cg  Hessian-vector products, truncated CG                  liftnn.solvers.newton
gn         Gauss-Newton + line search (least_squares)             liftnn.solvers.least_squares
lm         Levenberg-Marquardt, trainlm's mu rules (least_sq.)    liftnn.solvers.least_squares
========== ====================================================== ==========================

Common options of the classical methods (liftnn.solvers.driver): max_iter (cg / bfgs / lbfgs 1000,
newton / newton-cg 200, gn / lm 500), gtol = 1e-8 (on ||grad||_inf), ftol = 0, xtol = 0 (off),
time_budget = None (s), patience = None (on the training loss), min_delta = 0, val_patience = 10
(on the validation loss, network training with validation data only), callback(iter, x, loss) =
None (return True to stop).  Status is one of liftnn.solvers.result.STATUSES; bad input raises LiftnnError
before any iteration.  The first-order methods take the options of
liftnn.solvers.first_order.minimize_first_order.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from liftnn._validate import check_choice
from liftnn.errors import LiftnnError
from liftnn.solvers import cg as _cg
from liftnn.solvers import least_squares as _ls
from liftnn.solvers import newton as _newton
from liftnn.solvers import quasi_newton as _qn
from liftnn.solvers.driver import (
    ResidualEvaluator,
    ScalarEvaluator,
    check_x0,
    common_options,
    run,
)
from liftnn.solvers.result import Result

FIRST_ORDER_METHODS = ("gd", "momentum", "nesterov", "adam", "rmsprop", "adadelta", "rprop")

#: classical minimize methods: name -> (method defaults, default max_iter, validate, make)
_MINIMIZE = {
    "cg": (_cg.CG_DEFAULTS, 1000, lambda o: _cg.validate(o), _cg.make_cg),
    "bfgs": (_qn.BFGS_DEFAULTS, 1000, lambda o: _qn.validate("bfgs", o), _qn.make_bfgs),
    "lbfgs": (_qn.LBFGS_DEFAULTS, 1000, lambda o: _qn.validate("lbfgs", o), _qn.make_lbfgs),
    "newton": (_newton.NEWTON_DEFAULTS, 200, lambda o: _newton.validate("newton", o),
               _newton.make_newton),
    "newton-cg": (_newton.NEWTON_CG_DEFAULTS, 200, lambda o: _newton.validate("newton-cg", o),
                  _newton.make_newton_cg),
}
_LEAST_SQUARES = {
    "gn": (_ls.GN_DEFAULTS, 500, lambda o: _ls.validate("gn", o), _ls.make_gn),
    "lm": (_ls.LM_DEFAULTS, 500, lambda o: _ls.validate("lm", o), _ls.make_lm),
}
MINIMIZE_METHODS = FIRST_ORDER_METHODS + tuple(_MINIMIZE)
LEAST_SQUARES_METHODS = tuple(_LEAST_SQUARES)


def method_options(method: str) -> dict:
    """The options of a classical method with their defaults (common ones included)."""
    from liftnn.solvers.driver import COMMON_DEFAULTS

    table = {**_MINIMIZE, **_LEAST_SQUARES}
    check_choice("method", method, table)
    defaults, max_iter, _, _ = table[method]
    return {**COMMON_DEFAULTS, "max_iter": max_iter, **defaults}


def solve(fn: Callable, x0, method: str, monitor, **options) -> Result:
    """Run the classical `method` (a key of _MINIMIZE or _LEAST_SQUARES) on fn: a scalar function
    for the former, a residual vector for the latter, with an optional validation monitor.
    minimize, least_squares and network.fit call it once they have checked the method."""
    if method in _LEAST_SQUARES:
        table, evaluator = _LEAST_SQUARES, ResidualEvaluator
    else:
        table, evaluator = _MINIMIZE, ScalarEvaluator
    defaults, max_iter, validate, make = table[method]
    o = common_options(method, options, defaults, max_iter)
    validate(o)
    x = check_x0(x0)
    ev = evaluator(fn, x)
    return run(method, make(ev, o), ev, x, o, monitor=monitor)


def minimize(fun: Callable, x0, method: str = "bfgs", **options) -> Result:
    """Minimise a differentiable scalar function f: R^n -> R from x0.

    fun: x (n,) -> scalar (shape () or (1,)), written with jax.numpy; gradients, Hessians and
    Hessian-vector products come from JAX (jitted once per function and cached).
    x0: (n,) finite start.  method: one of MINIMIZE_METHODS (module docstring); gn and lm are
    in `least_squares`.  options: the common options (max_iter, gtol, ftol, xtol, time_budget,
    patience, min_delta, callback) and the method's own (see its module; method_options(name)
    lists them with defaults).

    Returns a Result: x (best iterate), fun = f(x), jac = grad f(x), x_last, fun_last, nit, nfev,
    njev, nhev, status, success, message, history, time_s and per-method counts
    (skipped_updates for bfgs / lbfgs, restarts for cg, shifted_iterations for newton,
    negative_curvature_exits for newton-cg).

    Raises LiftnnError before any iteration for an unknown method or option, an impossible
    option value (negative tolerance, mu >= eta, ...), x0 not a finite 1-D vector, fun not
    returning a scalar, or a non-finite value or gradient at x0.
    """
    t0 = time.perf_counter()
    if method in _LEAST_SQUARES:
        raise LiftnnError(f"method {method!r} is a least-squares method: call "
                          f"least_squares(residual, x0, method={method!r})")
    check_choice("method", method, MINIMIZE_METHODS)
    if method in FIRST_ORDER_METHODS:
        from liftnn.solvers.first_order import minimize_first_order

        return minimize_first_order(fun, x0, method, **options)
    res = solve(fun, x0, method, None, **options)
    res["time_s"] = time.perf_counter() - t0
    return res


def least_squares(residual: Callable, x0, method: str = "lm", **options) -> Result:
    """Minimise C(x) = 1/2 ||r(x)||^2 for a differentiable residual r: R^n -> R^m from x0.

    residual: x (n,) -> (m,), written with jax.numpy (J = dr/dx from jax.jacfwd / jacrev).
    x0: (n,) finite start.  method: "lm" (Levenberg-Marquardt, trainlm's rules) or "gn"
    (Gauss-Newton with a line search).  options: the common options and the method's own (see
    liftnn.solvers.least_squares; method_options(name) lists them).

    Returns a Result as scipy.optimize.least_squares: x, fun = r(x) (the residual vector),
    cost = 1/2 ||r(x)||^2, jac = J(x), grad = J^T r, optimality = ||grad||_inf, plus nit, nfev
    (residual evaluations), njev (Jacobian evaluations), nhev = 0, status, success, message,
    history (loss = cost), x_last, fun_last (cost of the last accepted iterate), time_s, and
    min_rank (smallest rank of J met, gn) or mu (the final damping, lm).

    Raises LiftnnError before any iteration for an unknown method or option, an impossible
    option value, x0 not a finite 1-D vector, a residual that is not a 1-D vector, or non-finite
    residuals / Jacobian at x0.
    """
    t0 = time.perf_counter()
    if method in MINIMIZE_METHODS:
        raise LiftnnError(f"method {method!r} minimises a scalar function: call "
                          f"minimize(fun, x0, method={method!r}) with fun = 1/2 ||r||^2")
    check_choice("least-squares method", method, _LEAST_SQUARES)
    res = solve(residual, x0, method, None, **options)
    res["time_s"] = time.perf_counter() - t0
    return res
