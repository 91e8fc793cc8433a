"""Generalised Gauss-Newton (GGN) for softmax cross-entropy: "gn" and "lm" for classification.

The least-squares Gauss-Newton (liftnn.solvers.least_squares) approximates the Hessian of
C = 1/2 ||r||^2 by J^T J: the Hessian of the loss in the residuals is the identity.  For the
softmax cross-entropy (liftnn.models.losses.cross_entropy)

    C(theta) = 1/m sum_i l(z_i, y_i) + weight_decay / 2 ||theta||^2,
    l(z, y) = -sum_k y_k log p_k,   p = softmax(z),   z_i = f_theta(x_i) in R^O  (the logits),

the generalised Gauss-Newton matrix (Schraudolph 2002; Martens 2014, "New insights and
perspectives on the natural gradient method") keeps the Hessian of the loss in the logits
in place of that identity and drops the network's second derivatives:

    G(theta) = 1/m sum_i J_i^T H_i J_i + weight_decay I,   J_i = dz_i/dtheta (O, n),
    H_i = d^2 l / dz^2 = s_i (diag(p_i) - p_i p_i^T),       s_i = sum_k y_ik (1 for one-hot rows).

H_i is positive semi-definite (its null space is the all-ones vector: a shift of every logit
leaves p unchanged), so G is too, and gn / lm directions are descent directions.  The per-sample
O x O blocks factor as H_i = L_i L_i^T with L_i = (I - p_i 1^T) diag(sqrt(p_i)), since
(I - p 1^T) diag(p) (I - 1 p^T) = diag(p) - p p^T when sum_k p_k = 1.  Hence G = A^T A with the
stacked factor (mO + n, n)

    A = [ sqrt(s_i / m) * sqrt(p_i) * (J_i - 1 (p_i^T J_i))  for each sample i ;
          sqrt(weight_decay) I ]          (the last block only when weight_decay > 0),

the same shape of problem as the least-squares Jacobian (one O-row block per sample).  The
jitted evaluation forms G = A^T A (n, n) and one symmetric eigendecomposition G = V diag(lam) V^T
per iteration serves every damped system (cheaper than the SVD of the tall A; G's eigenvalues are
A's squared singular values).  The gradient g = grad C comes from JAX (exact, also for soft
labels).

"gn": d = -G^+ g (minimum-norm: eigenvalues below max(rcond^2, n eps) * lam_max dropped, i.e.
singular values of A below rcond * s_max as in numpy.linalg.lstsq, but never below the
eigensolver's own accuracy), a descent direction whenever g is not at rounding level; then Armijo
backtracking from a = 1 (or strong Wolfe) on C, with least_squares.gn's `stall_iters` rule.

"lm": d(mu) = -(G + mu * mu_scale * I)^{-1} g with MATLAB trainlm's mu rules, as
least_squares.lm: start at mu = 1e-3; accept d(mu) if C(theta + d) < C(theta) and set
mu <- mu * mu_dec, else mu <- mu * mu_inc and retry; status "stalled" once mu > mu_max.
mu_scale defaults to 1/m so that `mu` damps the summed loss sum_i l_i the way trainlm's mu damps
the summed squared errors (liftnn.solvers.network scales mse the same way).

Counting: nfev = evaluations of C (trials, and the one that comes with every gradient), njev =
evaluations of grad C together with G (one per accepted iterate), nhev = 0.  Options, defaults
and the Result fields (x, fun = cost = C(x), grad = jac = grad C(x), optimality =
||grad||_inf, nit, nfev, njev, nhev, status, success, message, history, min_rank (gn) or mu
(lm), params, params_last) follow liftnn.solvers.network's gn and lm (there fun is the
residual vector; here there is none); gn / lm on a least-squares loss stay in
liftnn.solvers.network.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from liftnn.errors import LiftnnError
from liftnn.solvers import result as R
from liftnn.solvers.driver import (
    Iterate,
    KeepsLastIterate,
    Step,
    common_options,
    finite_iterate,
    network_theta0,
    run,
    validation_monitor,
)
from liftnn.solvers.least_squares import GN_DEFAULTS, LM_DEFAULTS, validate
from liftnn.solvers.least_squares import make_gn as _gauss_newton
from liftnn.solvers.result import Result

METHODS = ("gn", "lm")
LOSSES = ("cross_entropy",)
_MAX_ITER = 500  # as gn / lm in liftnn.solvers.api


def _targets(problem, O: int) -> jax.Array:
    """The targets as an (m, O) array of class weights y_ik (one-hot for integer labels)."""
    Y = problem.Y
    if Y.ndim == 2 and Y.shape[1] == O and O > 1:
        return Y
    return jax.nn.one_hot(Y.reshape(-1).astype(jnp.int32), O, dtype=jnp.float64)


def ggn_factor_fn(problem):
    """theta -> A, the GGN factor of the module docstring, (m O + n, n) with G = A^T A (the
    weight-decay rows sqrt(weight_decay) I only when weight_decay > 0)."""
    model, X, m = problem.model, problem.X, problem.m

    def logits(theta):
        return model.apply(problem.unflatten(theta), X)

    def factor(theta):
        z = logits(theta)
        O = z.shape[1]
        n = theta.shape[0]
        jac = jax.jacfwd if n <= m * O else jax.jacrev
        J = jac(logits)(theta)  # (m, O, n)
        p = jax.nn.softmax(z, axis=-1)  # (m, O)
        s = jnp.sum(_targets(problem, O), axis=-1)  # (m,)
        pJ = jnp.einsum("io,ion->in", p, J)  # p_i^T J_i
        A = (jnp.sqrt(s / m)[:, None, None] * jnp.sqrt(p)[:, :, None]
             * (J - pJ[:, None, :])).reshape(m * O, n)
        if problem.weight_decay:
            A = jnp.concatenate([A, jnp.sqrt(problem.weight_decay) * jnp.eye(n)])
        return A

    return factor


def ggn_matrix(problem, theta) -> np.ndarray:
    """G(theta) = A^T A (n, n): the generalised Gauss-Newton matrix of the module docstring."""
    A = np.asarray(ggn_factor_fn(problem)(jnp.asarray(theta, jnp.float64)))
    return A.T @ A


@functools.lru_cache(maxsize=32)
def _compiled(problem):
    factor = ggn_factor_fn(problem)
    fg = jax.value_and_grad(problem.fun)

    def fgG(theta):
        A = factor(theta)
        return (*fg(theta), A.T @ A)

    return jax.jit(problem.fun), jax.jit(fgG)


class GGNEvaluator(KeepsLastIterate):
    """Counts and evaluates C, grad C and the GGN matrix G (n, n), which Iterate.J holds
    (Iterate.r is None).  kind "minimize": the driver reports fun = C(x) and jac = grad C(x)."""

    kind = "minimize"

    def __init__(self, problem):
        self._f, self._fgG = _compiled(problem)
        self.nfev = self.njev = self.nhev = 0

    def f(self, x) -> float:
        self.nfev += 1
        v = float(self._f(x))
        return v if math.isfinite(v) else math.nan

    def iterate(self, x) -> Iterate:
        self.nfev += 1
        self.njev += 1
        f, g, G = self._fgG(x)
        return Iterate(x, float(f), np.asarray(g, np.float64), None, np.asarray(G, np.float64))

    def first(self, x0) -> Iterate:
        it = self.iterate(x0)
        if not finite_iterate(it):
            raise LiftnnError("the cross-entropy loss, its gradient or its Gauss-Newton matrix "
                              "is not finite at the initial weights")
        return it


def _eigh(G: np.ndarray, rcond: float | None = None):
    """Eigendecomposition G = V diag(lam) V^T (G: (n, n) symmetric PSD); returns (lam, V, rank)
    with eigenvalues below max(rcond^2, n eps) * lam_max (and negative rounding) set to 0."""
    lam, V = np.linalg.eigh(0.5 * (G + G.T))
    top = float(lam[-1]) if lam.size else 0.0
    cut = max(0.0 if rcond is None else rcond * rcond, G.shape[0] * np.finfo(np.float64).eps) * top
    keep = lam > cut
    return np.where(keep, lam, 0.0), V, int(keep.sum())


def ggn_direction(G: np.ndarray, g: np.ndarray, rcond: float | None = None):
    """Minimum-norm d = -G^+ g (G: (n, n) the GGN matrix, g: (n,)); returns (d, rank)."""
    lam, V, rank = _eigh(G, rcond)
    w = np.divide(1.0, lam, out=np.zeros_like(lam), where=lam > 0)
    return -(V @ (w * (V.T @ g))), rank


def make_gn(ev, o: dict):
    """(init, step, summary) of generalised Gauss-Newton with a line search: least_squares's
    Gauss-Newton loop with the direction -G^+ g."""
    return _gauss_newton(
        ev, o, direction=lambda it: ggn_direction(it.J, it.g, o["rcond"]),
        name="generalised Gauss-Newton", flat="the gradient is at rounding level",
        poor="the GGN matrix nearly singular")


class LMState(NamedTuple):
    mu: float


def make_lm(ev, o: dict):
    """(init, step, summary) of Levenberg-Marquardt on the GGN with trainlm's mu rules."""
    mu_dec, mu_inc, mu_max, mu_min = o["mu_dec"], o["mu_inc"], o["mu_max"], o["mu_min"]
    scale = o["mu_scale"]

    def step(state: LMState, it: Iterate):
        lam, V, _ = _eigh(it.J, o["rcond"])
        Vg = V.T @ it.g
        mu, trials = state.mu, 0
        while True:
            d = -(V @ (Vg / (lam + mu * scale)))
            x_new = it.x + d
            c_new = ev.f(x_new)
            trials += 1
            if c_new < it.f:  # NaN compares False: a non-finite trial is a failed step
                mu = max(mu * mu_dec, mu_min)
                return LMState(mu), Step(ev.iterate(x_new), float(np.linalg.norm(d)),
                                         info={"mu": mu, "trials": trials})
            mu *= mu_inc
            if mu > mu_max * (1.0 + 1e-9):
                return LMState(mu), Step(None, 0.0, R.STALLED,
                                         f"mu = {mu:g} exceeded mu_max = {mu_max:g} (trainlm's "
                                         f"stopping rule): no step reduced the loss",
                                         {"mu": mu, "trials": trials})

    return (lambda it: LMState(o["mu"])), step, lambda state: {"mu": state.mu}


def fit(problem, params0, *, method: str, **options) -> Result:
    """Train a network on the softmax cross-entropy with generalised Gauss-Newton (gn) or
    Levenberg-Marquardt (lm) (module docstring).

    Args:
        problem: a TrainingProblem with loss "cross_entropy" (X: (m, d_in), Y: (m, O) one-hot or
            class weights, or (m, 1) class indices), weight_decay, optional X_val / Y_val.
        params0: the model's initial params.
        method: "gn" or "lm".
        **options: the common options (max_iter = 500, gtol, ftol, xtol, time_budget, patience,
            min_delta, callback) and gn's (line_search, mu, eta, shrink, max_ls, rcond,
            stall_iters) or lm's (mu, mu_dec, mu_inc, mu_max, mu_min, mu_scale = 1/m, rcond),
            as liftnn.solvers.least_squares.

    Returns:
        Result with params (best iterate), params_last, x, x_last, fun = cost = C(x), grad,
        optimality, jac, nit, nfev, njev, nhev, status, success, message, history and
        min_rank (gn) or mu (lm).
    """
    if method not in METHODS:
        raise LiftnnError(f"the generalised Gauss-Newton solver runs {', '.join(METHODS)}; "
                          f"got {method!r}")
    if problem.loss not in LOSSES:
        raise LiftnnError(f"the generalised Gauss-Newton solver is for the cross_entropy loss; "
                          f"the problem uses {problem.loss!r} (gn / lm on mse or sse run in "
                          f"liftnn.solvers.network)")
    if method == "lm" and "mu_scale" not in options:
        options = {**options, "mu_scale": 1.0 / problem.m}
    defaults = GN_DEFAULTS if method == "gn" else LM_DEFAULTS
    o = common_options(method, options, defaults, _MAX_ITER)
    validate(method, o)
    theta0 = network_theta0(problem, params0)
    monitor = validation_monitor(problem)

    ev = GGNEvaluator(problem)
    make = make_gn if method == "gn" else make_lm
    res = run(method, make(ev, o), ev, theta0, o, monitor=monitor)
    res.update(cost=res["fun"], grad=res["jac"],
               optimality=float(np.max(np.abs(res["jac"]))))
    res["params"] = problem.unflatten(res["x"])
    res["params_last"] = problem.unflatten(res["x_last"])
    return res
