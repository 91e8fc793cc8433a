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
gradient g = grad C comes from JAX (exact, also for soft labels).

Every direction solves a damped system (G + lam I) d = -g, lam > 0, by a Cholesky factorisation
of the smaller of the two equivalent systems: the n x n one, G + lam I (when n <= m O), or the
(m O) x (m O) one of the data rows A_d of A (when there are more parameters than logit rows),
through the push-through identity (A_d^T A_d + lam' I)^{-1} g
= (g - A_d^T (A_d A_d^T + lam' I)^{-1} A_d g) / lam', lam' = lam + weight_decay.  (Until
2026-12 a dense symmetric eigendecomposition of G ran every iteration: 8x to 60x the cost of the
Cholesky factorisation at n = 530, and gn's undamped minimum-norm steps -G^+ g overshot into
saturated tanh units: on breast_cancer 30-16-2 it ended at C = 0.177, train accuracy 0.94, after
16 iterations, 20.5 s to 32.9 s per fit on a busy 2-core machine; now C = 6.1e-10, train
accuracy 1.0, after 33 iterations, 3.4 s to 5.1 s on the same machine, with BLAS capped by
liftnn.blas_threads; lbfgs reaches C ~ 4e-9.)

"gn": the damped direction d = -(G + lam I)^{-1} g with lam = delta * mean(diag G) and delta
adapted after each step: a step the line search shortened to a < 1 -> delta / a (the next full
step about that much shorter); a full step whose decrease is at least GN_RHO_GOOD = 1/4 of the
one the model predicts, -(g^T d + d^T G d / 2) -> delta / 3 (Levenberg-Marquardt's rule, as in
Martens 2010, with the increase left to the line search); start GN_DAMPING = 1e-3, floor
GN_DAMPING_MIN = 1e-12, where the step is Gauss-Newton's to rounding.  The step itself: Armijo
backtracking from a = 1 (or strong Wolfe) on C along d, with least_squares.gn's `stall_iters`
rule.
The damping keeps the first steps at a length the model of C can be trusted for, so the line
search does not backtrack from huge undamped steps; near a minimum delta falls to the floor and
the convergence is Gauss-Newton's.  History "damping" = lam of the iteration; Result
"damping" = the last lam.

"lm": d(mu) = -(G + mu * mu_scale * I)^{-1} g with MATLAB trainlm's mu rules, as
least_squares.lm: start at mu = 1e-3; accept d(mu) if C(theta + d) < C(theta) and set
mu <- mu * mu_dec, else mu <- mu * mu_inc and retry (one Cholesky solve per trial); status
"stalled" once mu > mu_max.  mu_scale defaults to 1/m so that `mu` damps the summed loss
sum_i l_i the way trainlm's mu damps the summed squared errors (liftnn.solvers.network scales
mse the same way).  `rcond` (an option shared with the least-squares gn / lm) has no effect
here: the damped systems are positive definite.

Counting: nfev = evaluations of C (trials, and the one that comes with every gradient), njev =
evaluations of grad C together with G (one per accepted iterate), nhev = 0.  Options, defaults
and the Result fields (x, fun = cost = C(x), grad = jac = grad C(x), optimality =
||grad||_inf, nit, nfev, njev, nhev, status, success, message, history, damping (gn) or mu
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

from liftnn import xla_options
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


def ggn_factor_fn(problem, weight_decay_rows: bool = True):
    """theta -> A, the GGN factor of the module docstring, (m O + n, n) with G = A^T A (the
    weight-decay rows sqrt(weight_decay) I only when weight_decay > 0 and weight_decay_rows;
    without them the data rows A_d, (m O, n))."""
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
        if problem.weight_decay and weight_decay_rows:
            A = jnp.concatenate([A, jnp.sqrt(problem.weight_decay) * jnp.eye(n)])
        return A

    return factor


def ggn_matrix(problem, theta) -> np.ndarray:
    """G(theta) = A^T A (n, n): the generalised Gauss-Newton matrix of the module docstring."""
    A = np.asarray(ggn_factor_fn(problem)(jnp.asarray(theta, jnp.float64)))
    return A.T @ A


def uses_rows(problem) -> bool:
    """True when the damped systems are solved in the (m O) x (m O) row space (more parameters
    than logit rows), False for the n x n system G + lam I."""
    n = int(problem.flatten(problem.model.init(0)).shape[0])
    return n > problem.m * int(problem.model.d_out)


@functools.lru_cache(maxsize=32)
def _compiled(problem):
    """(C, theta -> (C, grad C, M)) jitted; M = G (n, n) or, in the row space (uses_rows),
    the data rows A_d (m O, n) of the factor."""
    rows = uses_rows(problem)
    factor = ggn_factor_fn(problem, weight_decay_rows=not rows)
    fg = jax.value_and_grad(problem.fun)

    def fgM(theta):
        A = factor(theta)
        return (*fg(theta), A if rows else A.T @ A)

    return xla_options.jit(problem.fun), xla_options.jit(fgM)


class GGNEvaluator(KeepsLastIterate):
    """Counts and evaluates C, grad C and the GGN: Iterate.J holds G (n, n), or the data rows
    A_d (m O, n) of its factor when `rows` (then G = A_d^T A_d + weight_decay I); Iterate.r is
    None.  kind "minimize": the driver reports fun = C(x) and jac = grad C(x)."""

    kind = "minimize"

    def __init__(self, problem):
        self._f, self._fgM = _compiled(problem)
        self.rows = uses_rows(problem)
        self.weight_decay = float(problem.weight_decay)
        self.nfev = self.njev = self.nhev = 0

    def f(self, x) -> float:
        self.nfev += 1
        v = float(self._f(x))
        return v if math.isfinite(v) else math.nan

    def iterate(self, x) -> Iterate:
        self.nfev += 1
        self.njev += 1
        f, g, M = self._fgM(x)
        return Iterate(x, float(f), np.asarray(g, np.float64), None, np.asarray(M, np.float64))

    def first(self, x0) -> Iterate:
        it = self.iterate(x0)
        if not finite_iterate(it):
            raise LiftnnError("the cross-entropy loss, its gradient or its Gauss-Newton matrix "
                              "is not finite at the initial weights")
        return it


class DampedSystem:
    """The damped GGN systems (G + lam I) d = -g of one iterate, solved by Cholesky in the
    smaller space (module docstring).  M: G (n, n), or with rows=True the data rows A_d
    (m O, n) with G = A_d^T A_d + weight_decay I; g: (n,)."""

    def __init__(self, M: np.ndarray, g: np.ndarray, rows: bool, weight_decay: float = 0.0):
        self.g, self.rows, self.wd = g, rows, weight_decay
        if rows:
            self.A = M
            self.K = M @ M.T  # (m O, m O)
            self.Ag = M @ g
            self.scale = float(np.sum(M * M)) / M.shape[1] + weight_decay  # mean diag G
        else:
            self.G = 0.5 * (M + M.T)
            self.scale = float(np.mean(np.diag(self.G)))
        if not (math.isfinite(self.scale) and self.scale > 0.0):
            self.scale = 1.0

    def gG(self, d: np.ndarray) -> float:
        """d^T G d."""
        if self.rows:
            Ad = self.A @ d
            return float(Ad @ Ad) + self.wd * float(d @ d)
        return float(d @ (self.G @ d))

    def solve(self, lam: float) -> np.ndarray:
        """d = -(G + lam I)^{-1} g (lam > 0); NaNs if the factorisation fails."""
        import scipy.linalg as sl

        try:
            if not self.rows:
                G = self.G.copy()
                G[np.diag_indices_from(G)] += lam
                return -sl.cho_solve(sl.cho_factor(G, lower=True, check_finite=False), self.g,
                                     check_finite=False)
            lam2 = lam + self.wd
            K = self.K.copy()
            K[np.diag_indices_from(K)] += lam2
            w = sl.cho_solve(sl.cho_factor(K, lower=True, check_finite=False), self.Ag,
                             check_finite=False)
            return -(self.g - self.A.T @ w) / lam2
        except (np.linalg.LinAlgError, ValueError):
            return np.full_like(self.g, np.nan)


#: gn's relative damping delta (lam = delta * mean diag G): start, floor, ceiling; the decrease
GN_DAMPING, GN_DAMPING_MIN, GN_DAMPING_MAX = 1e-3, 1e-12, 1e12
GN_DAMPING_DOWN, GN_RHO_GOOD = 1.0 / 3.0, 0.25


class GNState(NamedTuple):
    delta: float  # relative damping for the next iteration
    idle: int  # iterations in a row whose cost decrease was negligible
    lam: float  # the damping lam of the last iteration


def make_gn(ev, o: dict):
    """(init, step, summary) of damped generalised Gauss-Newton with a line search (module
    docstring): the direction -(G + lam I)^{-1} g, lam adapted by the decrease ratio rho."""
    from liftnn.solvers.least_squares import GN_NEGLIGIBLE
    from liftnn.solvers.newton import line_search_step

    def step(state: GNState, it: Iterate):
        system = DampedSystem(it.J, it.g, ev.rows, ev.weight_decay)
        delta = state.delta
        while True:
            lam = delta * system.scale
            d = system.solve(lam)
            if np.all(np.isfinite(d)) or delta >= GN_DAMPING_MAX:
                break
            delta *= 10.0  # factorisation failed (rounding): damp more
        info = {"damping": lam}
        if not (np.all(np.isfinite(d)) and float(it.g @ d) < 0.0):
            return state._replace(lam=lam), Step(
                None, 0.0, R.STALLED, "the generalised Gauss-Newton direction is not a descent "
                "direction: the gradient is at rounding level", info)
        st = line_search_step(ev, it, d, o, info)
        if st.it is None:
            return state._replace(lam=lam), st
        a = st.step
        predicted = -(a * float(it.g @ d) + 0.5 * a * a * system.gG(d))
        rho = (it.f - st.it.f) / predicted if predicted > 0 else 0.0
        if a < 1.0:  # the line search shortened the step: damp so the next full step is shorter
            delta = min(delta / a, GN_DAMPING_MAX)
        elif rho > GN_RHO_GOOD:  # a full step the model predicted well: damp less
            delta = max(delta * GN_DAMPING_DOWN, GN_DAMPING_MIN)
        idle = 0
        if it.f - st.it.f <= GN_NEGLIGIBLE * abs(it.f):
            idle = state.idle + 1
            if idle >= o["stall_iters"]:
                st = Step(st.it, st.step, R.STALLED,
                          f"no progress: the cost fell by less than {GN_NEGLIGIBLE:g} of itself "
                          f"in {idle} iterations in a row (last step length {st.step:.3g}, "
                          f"damping {lam:.3g})", info)
        return GNState(delta, idle, lam), st

    return (lambda it: GNState(GN_DAMPING, 0, 0.0)), step, lambda state: {"damping": state.lam}


class LMState(NamedTuple):
    mu: float


def make_lm(ev, o: dict):
    """(init, step, summary) of Levenberg-Marquardt on the GGN with trainlm's mu rules."""
    mu_dec, mu_inc, mu_max, mu_min = o["mu_dec"], o["mu_inc"], o["mu_max"], o["mu_min"]
    scale = o["mu_scale"]

    def step(state: LMState, it: Iterate):
        system = DampedSystem(it.J, it.g, ev.rows, ev.weight_decay)
        mu, trials = state.mu, 0
        while True:
            d = system.solve(mu * scale)
            x_new = it.x + d
            c_new = ev.f(x_new) if np.all(np.isfinite(d)) else math.nan
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
            as liftnn.solvers.least_squares (rcond has no effect: the systems are damped).

    Returns:
        Result with params (best iterate), params_last, x, x_last, fun = cost = C(x), grad,
        optimality, jac, nit, nfev, njev, nhev, status, success, message, history and
        damping (gn) or mu (lm).
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
    res["params"] = problem.host_params(res["x"])
    res["params_last"] = problem.host_params(res["x_last"])
    return res
