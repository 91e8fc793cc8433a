"""The inner solve of the lifted ALM: damped Gauss-Newton with an Armijo line search on L_beta.

For fixed multipliers lambda and penalty beta the augmented Lagrangian is, up to a constant, the
least-squares merit Phi = 1/2 ||R||^2 + mu_w/2 ||theta||^2 (liftnn.lifted.gauss_newton,
docs/lifted.md "The inner solve").  Three pieces, each usable alone:

- `gn_step`: at one lifted point, Phi, the scaled ||grad Phi||_inf of the stopping test and the
  Gauss-Newton direction (states eliminated per sample, reduced weight system solved by
  liftnn.lifted.linsolve, states back-substituted) with its slope Phi'(0) along the direction of
  the linearised model.
- `line_search`: Armijo sufficient decrease Phi(t) <= Phi(0) + sigma t Phi'(0), by backtracking
  (t <- factor t) or by the minimiser of the quadratic through Phi(0), Phi'(0), Phi(t),
  safeguarded to [0.1, factor] times the last step.
- `inner_solve`: the evaluate-first loop (measure, stop if ||grad Phi|| <= eps, else step),
  returning an `InnerResult` with named fields.

`compiled(config)` jits and vmaps `inner_solve` over seeds, once per static `InnerConfig`.  Inside
jit the status is an int (INNER_OK, INNER_MAX, INNER_LS_FAILED); `status_names` is the one place
that turns it into a string.
"""

from __future__ import annotations

import functools
import os
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from liftnn import xla_options
from liftnn.lifted import gauss_newton as gnm
from liftnn.lifted import linsolve
from liftnn.models.activations import get_activation

#: inner status codes (ints inside jit) and their names (status_names)
INNER_OK, INNER_MAX, INNER_LS_FAILED = 0, 1, 2
INNER_STATUSES = ("ok", "max_inner", "line_search_failed")


def status_names(codes) -> list[str]:
    """Inner status codes -> "ok" (||grad Phi|| <= eps), "max_inner", "line_search_failed"."""
    return [INNER_STATUSES[int(s)] for s in codes]


class LineSearch(NamedTuple):
    """Armijo line-search settings: sufficient decrease `sigma`, step shrink `factor`, at most
    `max_evals` trial points; `interp` = quadratic interpolation (else plain backtracking)."""

    factor: float = 0.8
    sigma: float = 0.1
    max_evals: int = 40
    interp: bool = True


class InnerConfig(NamedTuple):
    """The static settings of one compiled inner solve (hashable: the compilation cache key).

    model: the MLP; relu_mode: see liftnn.models.activations.RELU_MODES; linear_solver: a
    resolved mode of liftnn.lifted.linsolve ("primal", "dual", "cg"); c: output residual scale;
    m: number of samples; decay: whether the objective has a weight-decay term (its value mu_w
    is an argument of the compiled solve, so one program serves every mu_w > 0, e.g. the whole
    weight_decay="auto" path); damping: Levenberg-Marquardt term on the weights; max_inner:
    Gauss-Newton steps per inner solve; line_search: LineSearch; ce: the softmax cross-entropy
    (the generalised Gauss-Newton output block of liftnn.lifted.output) instead of least squares.
    """

    model: object
    relu_mode: str
    linear_solver: str
    c: float
    m: int
    decay: bool
    damping: float
    max_inner: int
    line_search: LineSearch
    ce: bool = False


class GNStep(NamedTuple):
    """One Gauss-Newton linearisation and direction at (params, Z)."""

    phi: jax.Array  # Phi at the point
    grad_norm: jax.Array  # max(||dPhi/dtheta||_inf, m ||dPhi/dZ||_inf)
    dparams: list  # weight step, shaped like params
    dZ: list  # state step [dZ_j (m, d_j)]
    dtheta: jax.Array  # weight step, flat (ravel_pytree order)
    slope: jax.Array  # Phi'(0) of the linearised model along (dparams, dZ)
    lin_iters: jax.Array  # linear-solver iterations (1 for the direct modes)


def _inf_norm(leaves) -> jax.Array:
    return jnp.max(jnp.stack([jnp.max(jnp.abs(x)) for x in leaves]))


def gn_step(prob: gnm.AugmentedLSQ, params, Z, linear_solver: str, damping: float) -> GNStep:
    """The damped Gauss-Newton step of Phi at (params, Z): minimises
    1/2 ||R + J d||^2 + mu_w/2 ||theta + d_theta||^2 + damping/2 ||d_theta||^2 (docs/lifted.md)."""
    m = prob.X.shape[0] if prob.m is None else prob.m
    lin = gnm.linearise(prob, params, Z)
    phi, gp, gz = gnm.merit_value_and_grad(lin)
    grad_norm = jnp.maximum(_inf_norm(jax.tree_util.tree_leaves(gp)), m * _inf_norm(gz))
    theta, unravel = ravel_pytree(params)
    dth, it = linsolve.reduced_step(linear_solver, lin, damping)
    dp = unravel(dth)
    dZ, ci = gnm.back_substitute(lin, dp, gnm.jh_matvec(lin, dp))
    cd = lin.condensed
    if prob.ce:  # grad Phi . d: F only represents the gradient (liftnn.lifted.output)
        slope = (jnp.vdot(ravel_pytree(gp)[0], dth)
                 + sum(jnp.sum(g * d) for g, d in zip(gz, dZ)))
    else:
        slope = jnp.sum(cd.rh * ci) - jnp.sum(cd.Rsq) + prob.mu_w * jnp.vdot(theta, dth)
    return GNStep(phi, grad_norm, dp, dZ, dth, slope, it)


def _moved(params, Z, step: GNStep, t):
    return (jax.tree_util.tree_map(lambda a, d: a + t * d, params, step.dparams),
            [a + t * d for a, d in zip(Z, step.dZ)])


def line_search(phi_at, f, slope, ls: LineSearch):
    """Armijo search on t -> phi_at(t), starting at t = 1: returns (t, Phi(t), evaluations).

    Stops at the first t with Phi(t) <= f + sigma t slope, or after ls.max_evals trials."""

    def cond(s):
        t, ft, j = s
        return ~(ft <= f + ls.sigma * t * slope) & (j < ls.max_evals)

    def body(s):
        t, ft, j = s
        if ls.interp:  # minimiser of the quadratic through Phi(0), Phi'(0), Phi(t)
            curv = ft - f - slope * t
            tq = -slope * t * t / (2.0 * jnp.where(curv > 0, curv, 1.0))
            tq = jnp.where((curv > 0) & jnp.isfinite(ft), tq, 0.1 * t)
            tnew = jnp.where(j == 0, 1.0, jnp.clip(tq, 0.1 * t, ls.factor * t))
        else:
            tnew = jnp.where(j == 0, 1.0, ls.factor * t)
        return tnew, phi_at(tnew), j + 1

    return jax.lax.while_loop(cond, body, (1.0, jnp.inf, 0))


class InnerState(NamedTuple):
    """The loop state of inner_solve (per seed)."""

    params: list
    Z: list
    phi: jax.Array  # Phi at (params, Z) once measured
    grad_norm: jax.Array  # at the point where the last test was made
    gn_iters: jax.Array
    lin_iters: jax.Array
    ls_evals: jax.Array
    status: jax.Array  # INNER_MAX while running


class InnerResult(NamedTuple):
    """What one inner solve returns (per seed; batched over seeds by `compiled`)."""

    params: list
    Z: list
    gn_iters: jax.Array
    lin_iters: jax.Array
    ls_evals: jax.Array
    status: jax.Array  # int code; status_names() gives the string
    grad_norm: jax.Array
    lagrangian: jax.Array  # L_beta at the new point (Evens' restart test)
    h_inf: jax.Array  # ||H||_inf at the new point
    h: list  # constraints h_j = H_j / sqrt(m) at the new point (the multiplier update)


def _gn_iteration(cfg: InnerConfig, prob: gnm.AugmentedLSQ, eps, s: InnerState) -> InnerState:
    """Measure at the current point; stop if converged, else take one line-searched GN step."""
    step = gn_step(prob, s.params, s.Z, cfg.linear_solver, cfg.damping)
    f = step.phi
    tstep, fn, j = line_search(lambda t: gnm.merit(prob, *_moved(s.params, s.Z, step, t)),
                               f, step.slope, cfg.line_search)
    conv = step.grad_norm <= eps
    ok = ((fn <= f + cfg.line_search.sigma * tstep * step.slope) & jnp.isfinite(fn)
          & (step.slope < 0) & ~conv)
    pn, zn = _moved(s.params, s.Z, step, tstep)
    pn = jax.tree_util.tree_map(lambda a, b: jnp.where(ok, a, b), pn, s.params)
    zn = [jnp.where(ok, a, b) for a, b in zip(zn, s.Z)]
    status = jnp.where(conv, INNER_OK, jnp.where(ok, INNER_MAX, INNER_LS_FAILED)).astype(jnp.int32)
    return InnerState(pn, zn, jnp.where(ok, fn, f), step.grad_norm,
                      s.gn_iters + jnp.where(conv, 0, 1), s.lin_iters + jnp.where(conv, 0, step.lin_iters),
                      s.ls_evals + jnp.where(conv, 0, j), status)


def inner_solve(cfg: InnerConfig, params, Z, lam, beta, eps, t, X, Y, mu_w=0.0, w=None, m=None,
                c=None) -> InnerResult:
    """Minimise L_beta(., lambda) from (params, Z) until the scaled ||grad Phi||_inf <= eps, a line
    search fails, or cfg.max_inner steps.  t: the ReLU relaxation parameter (ignored otherwise);
    mu_w: the weight decay (used only when cfg.decay); w: row weights (None: every row counts;
    0 for padded rows, liftnn.padding), m and c: the real number of samples and the output scale
    (None: cfg.m, cfg.c; `compiled` passes them as traced arguments)."""
    m = cfg.m if m is None else m
    c = cfg.c if c is None else c
    sqm = m ** 0.5
    prob = gnm.AugmentedLSQ(X, Y, [lj * sqm / beta for lj in lam], beta / m,
                            mu_w if cfg.decay else 0.0,
                            gnm.hidden_activations(cfg.model, cfg.relu_mode, t),
                            get_activation(cfg.model.activations[-1]), c, cfg.ce, w,
                            None if w is None else m)
    s0 = InnerState(params, Z, jnp.inf, jnp.inf, jnp.int32(0), jnp.int32(0), jnp.int32(0),
                    jnp.int32(INNER_MAX))
    s = jax.lax.while_loop(lambda s: (s.gn_iters < cfg.max_inner) & (s.status == INNER_MAX),
                           functools.partial(_gn_iteration, cfg, prob, eps), s0)
    tt = gnm.terms(s.params, s.Z, X, Y, prob.acts, prob.out_act, c, w=w)
    lag = s.phi - sum(jnp.sum(lj ** 2) for lj in lam) / (2.0 * beta)
    return InnerResult(s.params, s.Z, s.gn_iters, s.lin_iters, s.ls_evals, s.status, s.grad_norm,
                       lag, _inf_norm(tt.H), [h / sqm for h in tt.H])


def feasible_states(cfg: InnerConfig, params, X, t) -> list:
    """The states of the simulated network (with the relaxed ReLU of parameter t): h = 0."""
    return gnm.simulate(params, X, gnm.hidden_activations(cfg.model, cfg.relu_mode, t))


class Kernels(NamedTuple):
    """jit(vmap(.)) over seeds: solve(params, Z, lam, beta, eps, t, X, Y[, mu_w, w, m, c]),
    start(params, X, t)."""

    solve: object
    start: object


#: LIFTNN_LANES = "map" or "vmap" overrides the backend's choice (see `compiled`)
LANES_ENV = "LIFTNN_LANES"


def lanes() -> str:
    """How the seeds' inner solves run: LIFTNN_LANES if set, else "map" on the CPU and "vmap"
    on an accelerator."""
    v = os.environ.get(LANES_ENV, "").strip().lower()
    if v in ("map", "vmap"):
        return v
    return "map" if jax.default_backend() == "cpu" else "vmap"


def compiled(cfg: InnerConfig) -> Kernels:
    """`_compiled` for the current `lanes()` choice; m and c are arguments of the program, not
    part of its key (so data sets of one padded size share it, liftnn.padding)."""
    return _compiled(cfg._replace(m=None, c=None), lanes())


@functools.lru_cache(maxsize=64)
def _compiled(cfg: InnerConfig, how: str) -> Kernels:
    """The batched inner solve and feasible start for one static configuration (cached).

    The seeds' inner solves run as `lanes()` says: "vmap", one batched while_loop in which every
    seed costs as much as the slowest (the accelerators' choice), or "map", a loop over the seeds
    inside one compiled program, each with its own while_loop, so a seed that has converged (or
    that the outer loop has finished, eps = inf) costs nothing more (the CPU's choice, where a
    batch buys no parallelism)."""
    if how == "map":
        def each(params, Z, lam, beta, eps, t, X, Y, mu_w, w, m, c):
            return jax.lax.map(lambda a: inner_solve(cfg, *a[:6], X, Y, a[6], w, m, c),
                               (params, Z, lam, beta, eps, t, mu_w))

        solve = xla_options.jit(each, optimization_level=xla_options.INNER_SOLVE_LEVEL)
    else:
        solve = xla_options.jit(jax.vmap(functools.partial(inner_solve, cfg),
                                         in_axes=(0, 0, 0, 0, 0, 0, None, None, 0, None, None,
                                                  None)),
                                optimization_level=xla_options.INNER_SOLVE_LEVEL)
    start = xla_options.jit(jax.vmap(functools.partial(feasible_states, cfg), in_axes=(0, None, 0)))
    return Kernels(solve, start)


def kernels_for(cfg: InnerConfig, mu_w, w=None) -> Kernels:
    """compiled(cfg) with the weight decay, the row weights and cfg.m, cfg.c bound into solve:
    mu_w one number for every seed or one per seed, (K,) (the program is shared by every
    mu_w > 0 of the same configuration); w: (rows,) row weights, None: every row counts."""
    k = compiled(cfg)
    wd = np.asarray(mu_w, dtype=np.float64)
    m, c = np.float64(cfg.m), np.float64(cfg.c)

    def solve(params, Z, lam, beta, eps, t, X, Y):
        K = jax.tree_util.tree_leaves(params)[0].shape[0]
        rows = np.ones(X.shape[0]) if w is None else w
        return k.solve(params, Z, lam, beta, eps, t, X, Y,
                       np.ascontiguousarray(np.broadcast_to(wd, (K,))), rows, m, c)

    return Kernels(solve, k.start)
