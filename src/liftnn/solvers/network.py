"""Classical training of networks: cg, bfgs, lbfgs, newton, newton-cg, gn, lm.

`fit(problem, params0, *, method, **options)` is what `ln.train` calls for these methods.  The
network's weights are flattened to theta (problem.flatten) and

- cg, bfgs, lbfgs, newton, newton-cg minimise the training objective
  C(theta) = loss(f_theta(X), Y) + weight_decay / 2 ||theta||^2  (problem.fun) with
  liftnn.solvers.api.minimize's solvers;
- gn, lm work on the single-shooting residuals r(theta) (problem.residual), with
  C = 1/2 ||r||^2 the same objective (least-squares losses "mse" and "sse" only).  For lm the
  damping is scaled (mu_scale = c^2, c = residual_scale of the loss) so that `mu` is MATLAB
  trainlm's mu on the unscaled errors f_theta(X) - Y: trainlm solves
  (J_e^T J_e + mu I) d = -J_e^T e, and r = c e.

Defaults for networks: max_iter 1000 (cg, bfgs, lbfgs), 200 (newton, newton-cg), 500 (gn, lm);
gtol = 1e-8 on ||grad C||_inf; the other options as in liftnn.solvers.api.  With validation data
(problem.X_val) the validation loss is recorded as history "val_loss", `val_patience` (50 for
cg / bfgs / lbfgs, 10 for the others) iterations without a new best end the run, and the iterate with the lowest validation loss is
returned (Result val_loss); docs/solvers.md, "Model selection".
"""

from __future__ import annotations

import numpy as np

from liftnn import sharding
from liftnn.errors import LiftnnError
from liftnn.models.losses import is_least_squares, residual_scale
from liftnn.solvers.api import _LEAST_SQUARES, _MINIMIZE, solve
from liftnn.solvers.driver import network_theta0, validation_monitor
from liftnn.solvers.result import Result

METHODS = tuple(_MINIMIZE) + tuple(_LEAST_SQUARES)


def fit(problem, params0, *, method: str, devices=None, **options) -> Result:
    """Train a network from params0 with a classical method (module docstring).

    Args:
        problem: a liftnn.problem.TrainingProblem (model, X: (m, d_in), Y: (m, d_out), loss,
            weight_decay, optional X_val / Y_val).
        params0: the model's initial params (e.g. model.init(seed)).
        method: "cg", "bfgs", "lbfgs", "newton", "newton-cg", "gn" or "lm" (resolved by
            liftnn.methods; another name falls through to a LiftnnError).
        devices: compute r / C sample-parallel on that many devices (liftnn.sharding,
            docs/devices.md; gn / lm on cross_entropy run on one device).
        **options: the common options and the method's own (liftnn.solvers.api.method_options).

    Returns:
        Result with params (the best iterate, unflattened), params_last, x, x_last,
        fun = the objective C at x (a scalar for every method; gn / lm also cost = fun and
        residual = r(x)), nit, nfev, njev, nhev, status, success, message, history (time_s is
        set by ln.train).
    """
    theta0 = network_theta0(problem, params0)
    residual, fun = sharding.problem_functions(problem, devices)
    monitor = validation_monitor(problem)
    if method in _LEAST_SQUARES and problem.loss == "cross_entropy":
        from liftnn.solvers import ggn  # generalised Gauss-Newton: the loss Hessian in J^T H J

        return ggn.fit(problem, params0, method=method, **options)
    if method in _LEAST_SQUARES:
        if not is_least_squares(problem.loss):
            raise LiftnnError(f"{method!r} needs a least-squares loss ('mse' or 'sse'); the "
                              f"problem uses {problem.loss!r}")
        if method == "lm" and "mu_scale" not in options:
            n_entries = int(np.prod(problem.Y.shape))
            options = {**options, "mu_scale": residual_scale(problem.loss, n_entries) ** 2}
        res = solve(residual, theta0, method, monitor, **options)
        res["residual"] = res["fun"]
        res["fun"] = res["cost"]
    elif method in _MINIMIZE:
        res = solve(fun, theta0, method, monitor, **options)
    else:
        raise LiftnnError(f"unknown classical method {method!r}; choose one of: "
                          f"{', '.join(METHODS)}")
    res["params"] = problem.host_params(res["x"])
    res["params_last"] = problem.host_params(res["x_last"])
    return res
