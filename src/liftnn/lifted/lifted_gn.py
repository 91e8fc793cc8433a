"""method="lifted-gn": lifted constrained Gauss-Newton (Bock's multiple-shooting Gauss-Newton).

Variables u = (theta, Z_1..Z_L) as in liftnn.lifted.gauss_newton (its docstring has the notation:
H_j = Z_j - sigma_j(a_j), F = c (sigma_out(a_out) - Y), costates n_j, delta_j = sigma_j' n_j).
Instead of penalising the layer equations (method="alm"), every iteration linearises them and the
output residual and solves the equality-constrained linear least-squares problem (Bock 1984;
Albersmeyer & Diehl, "The lifted Newton method and its application in optimization", SIAM J.
Optim. 20(3), 2010; DESIGN.md §4)

    min_d 1/2 ||F + J_F d||^2 + mu_w/2 ||theta + d_theta||^2 + mu/2 ||d_theta||^2
    s.t.  H + J_H d = 0.

Condensing.  With exact constraint linearisation, J_H d = -H fixes the states step as an affine
function of d_theta, the linear forward sweep (one forward pass, per sample)

    dZ_j = -H_j + D_j * (Z_{j-1} dW_j^T + db_j + dZ_{j-1} W_j^T),   D_j = sigma_j'(a_j), dZ_0 = 0,

and substituting it into the output residual gives F + J_F d = r0 + Jr d_theta with

    r0 = F - sum_j n_j^T H_j   (per sample: the constraint residuals carried to the output),
    Jr = the backpropagation Jacobian evaluated at the lifted states (rows delta_j (x) [z_{j-1}; 1]),

i.e. gauss_newton.condense / reduced_jacobian with G_i = I (no penalty term: beta -> infinity).
The weight step solves the single-shooting-sized system

    (Jr^T Jr + (mu_w + mu c^2) I) d_theta = -(Jr^T r0 + mu_w theta)

with the reduced solvers of liftnn.lifted.linsolve ("primal" P x P, "dual" m O x m O, "cg"), so an
iteration costs what one single-shooting LM iteration costs.  At a feasible point (H = 0, e.g. the
start, whose states are simulated) the step is exactly single-shooting LM's; the difference, and
the point of lifting, is that the states then move by the *linear* sweep, not by re-simulation,
so the nonlinearity is spread over the layers (Albersmeyer & Diehl's lifted Newton).

Damping: Levenberg-Marquardt on the weights with trainlm's rules (as method="lm"): mu starts at
mu0 = 1e-3 on the unscaled errors (hence the c^2), a rejected step multiplies it by mu_inc = 10
and the linearisation is reused (only the factorisation is redone), an accepted one multiplies it
by mu_dec = 0.1; mu > mu_max = 1e10 ends the run with status "stalled".

Globalisation by a merit function, merit="augmented" (default) or "l1":

    augmented: phi = 1/2 ||F||^2 + mu_w/2 ||theta||^2 + <lambda, H> + rho/2 ||H||^2,
               lambda_j = -n_j (F + J_F d) per sample (the QP's own multipliers of H_j);
    l1:        phi = 1/2 ||F||^2 + mu_w/2 ||theta||^2 + rho ||H||_1 / m,  rho >= 1.5 m ||lambda||_inf.

Since J_H d = -H the directional derivative is D phi = g_f^T d - <lambda, H> - rho ||H||^2
(augmented) or g_f^T d - rho ||H||_1 / m (l1), with g_f^T d = F^T (r0 + Jr d_theta - F) +
mu_w theta^T d_theta; rho is the smallest value making D phi <= -(g_f^T d - ...) < 0 (Nocedal &
Wright eq. 18.36), decreased slowly (Powell: rho <- max(nu, (rho + nu) / 2)).  A step is
accepted when phi(u + d) <= phi(u) + ls_sigma D phi (Armijo at the full step); otherwise mu grows
(a shorter, more gradient-like step: LM's own step-length control, no separate line search).  If
the lifted point fails the test but the same weights with re-simulated states (H = 0) pass it,
that point is taken (a second-order correction).  Why the augmented merit: the l1 merit shows the
Maratos effect here (measured in docs/why-models.md: on sin^2 tanh 1-8-8-1 nearly every lifted
step was rejected, and with the correction 174 of 176 accepted steps were re-simulated, i.e. the
method became single-shooting LM), while the augmented merit with the QP multipliers accepts the
full lifted steps near a solution (0-2 corrections in 100-119 iterations, LM: 170-213).  A filter
would need a history of pairs per seed inside the vmapped loop; one scalar test is cheaper.

ReLU layers use the smoothed constraints of gauss_newton.hidden_activations (relu_mode
"complementarity" (default) or "softplus", t_k = max(t0 t_decay^k, t_min), or "gd").

Stopping: ||Jr^T r0 + mu_w theta||_inf <= gtol, or an accepted step that lowers phi by less than
ftol phi, each with ||H||_inf <= htol -> "converged"; mu > mu_max -> "stalled"; optional
`patience` (iterations without a (1 - min_delta) improvement of the best simulated loss) ->
"stalled"; max_iter / time_budget -> "max_iter".  The returned weights are those of the iterate
whose *simulated* network (exact activations, states recomputed: a feasible point) has the lowest
training objective; a run never returns a non-finite network.

Several initialisations run in one call: `fit_many` vmaps the jitted iteration over seeds (each
seed stops on its own), in chunks of `chunk` iterations between which the callback and the time
budget are checked.
"""

from __future__ import annotations

import functools
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from liftnn._validate import check_choice, check_positive
from liftnn.errors import LiftnnError
from liftnn.lifted import gauss_newton as gnm
from liftnn.lifted import linsolve
from liftnn.models.activations import get_activation
from liftnn.models.losses import residual_scale
from liftnn.solvers import result as R

DEFAULTS = {
    "max_iter": 500,
    "mu0": 1e-3,
    "mu_inc": 10.0,
    "mu_dec": 0.1,
    "mu_max": 1e10,
    "mu_min": 1e-20,
    "rho0": 1.0,
    "rho_margin": 1.5,
    "merit": "augmented",
    "ls_sigma": 1e-4,
    "gtol": 1e-8,
    "ftol": 1e-12,
    "htol": 1e-6,
    "patience": None,
    "min_delta": 1e-3,
    "relu_mode": "complementarity",
    "t0": 1.0,
    "t_decay": 0.7,
    "t_min": 1e-8,
    "linear_solver": "auto",
    "chunk": 50,
    "time_budget": None,
    "callback": None,
}

#: the jitted loop's status codes, turned into liftnn's status strings at the boundary
_RUNNING, _CONVERGED, _STALLED, _PATIENCE = 0, 1, 2, 3


def _check_options(opts: dict, problem) -> dict:
    unknown = set(opts) - set(DEFAULTS)
    if unknown:
        raise LiftnnError(f"unknown option(s) for lifted-gn: {', '.join(sorted(unknown))}; "
                          f"valid: {', '.join(sorted(DEFAULTS))}")
    o = {**DEFAULTS, **opts}
    check_choice("ReLU mode", o["relu_mode"], gnm.RELU_MODES)
    check_choice("linear solver", o["linear_solver"], linsolve.SOLVERS)
    check_choice("merit function", o["merit"], ("augmented", "l1"))
    for k in ("mu0", "mu_max", "rho0", "rho_margin", "t0", "t_decay", "min_delta"):
        check_positive(k, o[k])
    for k in ("gtol", "ftol", "htol", "t_min", "mu_min"):
        check_positive(k, o[k], strict=False)
    if not o["mu_inc"] > 1:
        raise LiftnnError(f"mu_inc must be > 1; got {o['mu_inc']}")
    if not 0 < o["mu_dec"] < 1 or not 0 < o["ls_sigma"] < 1:
        raise LiftnnError("mu_dec and ls_sigma must lie in (0, 1)")
    if o["mu_max"] < o["mu0"]:
        raise LiftnnError(f"mu_max ({o['mu_max']:g}) must be >= mu0 ({o['mu0']:g})")
    for k in ("max_iter", "chunk") + (("patience",) if o["patience"] is not None else ()):
        if isinstance(o[k], bool) or int(o[k]) != o[k] or int(o[k]) < 1:
            raise LiftnnError(f"{k} must be an integer >= 1; got {o[k]!r}")
    if o["time_budget"] is not None:
        check_positive("time_budget", o["time_budget"])
    if o["callback"] is not None and not callable(o["callback"]):
        raise LiftnnError("callback must be callable")
    if problem.loss not in ("mse", "sse"):
        raise LiftnnError(f"lifted-gn needs a least-squares loss (mse or sse); got {problem.loss!r}")
    if not hasattr(problem.model, "activations") or not hasattr(problem.model, "sizes"):
        raise LiftnnError("lifted-gn trains MLPs (ln.MLP)")
    if len(problem.model.sizes) < 3:
        raise LiftnnError("lifted-gn needs at least one hidden layer (there are no states to lift)")
    return o


# ---------------------------------------------------------------------------------------------
# the condensed step (pure functions; tested against a dense KKT solve)
# ---------------------------------------------------------------------------------------------


class Linearised(NamedTuple):
    """The condensed linearisation at (theta, Z): terms, costates (G = I, rh = r0) and the gradient."""

    t: gnm.Terms
    cd: gnm.Condensed  # n, delta; G = Ginv = I; rh = r0 = F - sum_j n_j^T H_j
    g: jax.Array  # Jr^T r0 + mu_w theta (flat)


def linearise(params, Z, X, Y, acts, out_act, c, mu_w) -> Linearised:
    """Terms, costates and the reduced right-hand side at (theta, Z)."""
    t = gnm.terms(params, Z, X, Y, acts, out_act, c)
    cd = gnm.condense(params, Z, t, t.H, 1.0, c)
    m, O = t.F.shape
    eye = jnp.broadcast_to(jnp.eye(O), (m, O, O))
    cd = cd._replace(G=eye, Ginv=eye)  # rh = F - sum_j n_j^T H_j = r0 already (E = H)
    theta = ravel_pytree(params)[0]
    g = ravel_pytree(gnm.jh_rmatvec(params, Z, X, t, cd, c, cd.rh))[0] + mu_w * theta
    return Linearised(t, cd, g)


def prepare_solve(mode, params, Z, X, lin: Linearised, c, mu_w):
    """solve(cc) -> d_theta for (Jr^T Jr + cc I) d = -g, cc = mu_w + damping; the parts that do not
    depend on the damping (the P x P or m O x m O Gram matrix) are formed once."""
    theta = ravel_pytree(params)[0]
    t, cd, g = lin
    if mode == "primal":
        Jh = gnm.reduced_jacobian(params, Z, X, t, cd, c)
        M0 = jnp.einsum("mkp,mkq->pq", Jh, Jh)
        floor = linsolve.REL_FLOOR * jnp.maximum(jnp.mean(jnp.diag(M0)), 1e-300)
        eye = jnp.eye(M0.shape[0])

        def solve(cc):
            Lc = jnp.linalg.cholesky(M0 + jnp.maximum(cc, floor) * eye)
            return -jax.scipy.linalg.cho_solve((Lc, True), g)
        return solve
    if mode == "dual":
        K0 = linsolve.dual_gram(params, Z, X, t, cd, c)
        floor = linsolve.REL_FLOOR * jnp.maximum(jnp.mean(jnp.diag(K0)), 1e-300)
        Jth = gnm.jh_matvec(params, Z, X, t, cd, c, params) if mu_w else None
        eye = jnp.eye(K0.shape[0])
        _, _unravel = ravel_pytree(params)

        def solve(cc):
            ce = jnp.maximum(cc, floor)
            ratio = mu_w / ce
            rhs = cd.rh if Jth is None else cd.rh - ratio * Jth
            Lc = jnp.linalg.cholesky(K0 + ce * eye)
            y = jax.scipy.linalg.cho_solve((Lc, True), rhs.reshape(-1)).reshape(rhs.shape)
            return -ravel_pytree(gnm.jh_rmatvec(params, Z, X, t, cd, c, y))[0] - ratio * theta
        return solve

    def solve(cc):
        return linsolve.solve_cg(params, Z, X, t, cd, c, theta, mu_w, cc)[0]
    return solve


def states_step(params, Z, X, t: gnm.Terms, dparams) -> list:
    """The linear forward sweep dZ_j = -H_j + D_j * (Z_{j-1} dW_j^T + db_j + dZ_{j-1} W_j^T)."""
    dZ = []
    zprev = X
    for j, (dW, db) in enumerate(dparams[:-1]):
        v = -t.H[j] + t.D[j] * gnm._affine(zprev, dW, db)
        if j > 0:
            v = v + t.D[j] * (dZ[j - 1] @ params[j][0].T)
        dZ.append(v)
        zprev = Z[j]
    return dZ


def lifted_step(params, Z, X, Y, acts, out_act, c, mu_w, damping, mode="primal"):
    """(d_params, d_Z): the solution of the damped, linearised equality-constrained problem."""
    lin = linearise(params, Z, X, Y, acts, out_act, c, mu_w)
    dth = prepare_solve(mode, params, Z, X, lin, c, mu_w)(mu_w + damping)
    dp = ravel_pytree(params)[1](dth)
    return dp, states_step(params, Z, X, lin.t, dp)


def dense_kkt_step(params, Z, X, Y, acts, out_act, c, mu_w, damping):
    """Reference (tests only): the same step from the dense KKT system of
    min 1/2||F + J_F d||^2 + mu_w/2||theta + d_theta||^2 + damping/2||d_theta||^2 s.t. H + J_H d = 0."""
    u0, unravel = ravel_pytree((params, Z))
    P = ravel_pytree(params)[0].shape[0]

    def FH(u):
        p, z = unravel(u)
        tt = gnm.terms(p, z, X, Y, acts, out_act, c)
        return tt.F.reshape(-1), jnp.concatenate([h.reshape(-1) for h in tt.H])

    F, H = FH(u0)
    JF, JH = jax.jacfwd(FH)(u0)
    n, q = u0.shape[0], H.shape[0]
    A = JF.T @ JF + jnp.diag(jnp.zeros(n).at[:P].set(mu_w + damping))
    K = jnp.block([[A, JH.T], [JH, jnp.zeros((q, q))]])
    rhs = jnp.concatenate([-(JF.T @ F + jnp.zeros(n).at[:P].set(mu_w * u0[:P])), -H])
    return unravel(jnp.linalg.solve(K, rhs)[:n])


def _l1(H) -> jax.Array:
    return sum(jnp.sum(jnp.abs(h)) for h in H)


def _fval(params, F, mu_w):
    val = 0.5 * jnp.sum(F ** 2)
    if mu_w:
        val = val + 0.5 * mu_w * sum(jnp.sum(q ** 2) for q in jax.tree_util.tree_leaves(params))
    return val


# ---------------------------------------------------------------------------------------------
# the jitted, vmapped iteration
# ---------------------------------------------------------------------------------------------


class State(NamedTuple):
    """Per-seed solver state (batched over seeds by vmap)."""

    params: list
    Z: list
    mu: jax.Array
    rho: jax.Array
    k: jax.Array  # accepted iterations
    status: jax.Array  # _RUNNING / _CONVERGED / _STALLED / _PATIENCE
    best_params: list
    best_loss: jax.Array
    best_mse: jax.Array
    since_best: jax.Array
    nfev: jax.Array  # merit evaluations (one per trial step)
    nsolve: jax.Array  # linear solves (one per trial step)
    nsoc: jax.Array  # accepted steps that took the re-simulated states (second-order correction)
    hist: jax.Array  # (max_iter + 1, 5): loss, train_mse, h_inf, mu, merit


HIST_KEYS = ("loss", "train_mse", "h_inf", "mu", "merit")


@functools.lru_cache(maxsize=32)
def _compiled(model, relu_mode, mode, c, m, mu_w, o_key):
    o = dict(o_key)
    out_act = get_activation(model.activations[-1])
    c2 = c * c
    smooth = relu_mode != "gd" and "relu" in model.activations[:-1]
    max_iter = int(o["max_iter"])
    patience = o["patience"]

    def t_at(k):
        if not smooth:
            return 1.0
        return jnp.maximum(o["t0"] * o["t_decay"] ** k, o["t_min"])

    def simulated(params, X, Y):
        out = X
        for (W, b), name in zip(params, model.activations):
            out = get_activation(name).f(gnm._affine(out, W, b))
        r = out - Y
        return 0.5 * c2 * jnp.sum(r ** 2) + (0.5 * mu_w * sum(
            jnp.sum(q ** 2) for q in jax.tree_util.tree_leaves(params)) if mu_w else 0.0), jnp.mean(r ** 2)

    def iterate(s: State, X, Y) -> State:
        acts = gnm.hidden_activations(model, relu_mode, t_at(s.k))
        lin = linearise(s.params, s.Z, X, Y, acts, out_act, c, mu_w)
        t = lin.t
        theta, unravel = ravel_pytree(s.params)
        f = _fval(s.params, t.F, mu_w)
        h1 = _l1(t.H) / m
        hinf = jnp.max(jnp.stack([jnp.max(jnp.abs(h)) for h in t.H]))
        gconv = (jnp.max(jnp.abs(lin.g)) <= o["gtol"]) & (hinf <= o["htol"])
        solve = prepare_solve(mode, s.params, s.Z, X, lin, c, mu_w)

        def trial(mu, rho):
            dth = solve(mu_w + mu * c2)
            dp = unravel(dth)
            dZ = states_step(s.params, s.Z, X, t, dp)
            Jd = gnm.jh_matvec(s.params, s.Z, X, t, lin.cd, c, dp)
            rlin = lin.cd.rh + Jd  # F + J_F d, the linearised output residual
            gf = jnp.sum(t.F * (rlin - t.F)) + mu_w * jnp.vdot(theta, dth)
            # QP multipliers of H_j (per sample: minus the costate times the linearised residual)
            lam = [-jnp.einsum("mpk,mk->mp", nj, rlin) for nj in lin.cd.n]
            pn = jax.tree_util.tree_map(jnp.add, s.params, dp)
            zn = [a + d for a, d in zip(s.Z, dZ)]
            tn = gnm.terms(pn, zn, X, Y, acts, out_act, c)
            if o["merit"] == "l1":
                lam_inf = jnp.max(jnp.stack([jnp.max(jnp.abs(lj)) for lj in lam]))
                nu = jnp.maximum(o["rho_margin"] * m * lam_inf,
                                 jnp.where(h1 > 0, gf / jnp.maximum(0.5 * h1, 1e-300), 0.0))
                rho = jnp.maximum(nu, 0.5 * (rho + nu))  # Powell: follows |lambda| down slowly
                dphi = gf - rho * h1
                phi_new = _fval(pn, tn.F, mu_w) + rho * _l1(tn.H) / m
                phi_old = f + rho * h1
            else:  # augmented Lagrangian merit with the QP multipliers
                lamH = sum(jnp.sum(lj * hj) for lj, hj in zip(lam, t.H))
                hsq = sum(jnp.sum(hj ** 2) for hj in t.H)
                nu = jnp.where(hsq > 0, (gf - lamH) / jnp.maximum(0.5 * hsq, 1e-300), 0.0)
                nu = jnp.maximum(nu, 0.0)
                rho = jnp.maximum(nu, 0.5 * (rho + nu))
                dphi = gf - lamH - rho * hsq
                phi_new = (_fval(pn, tn.F, mu_w) + sum(jnp.sum(lj * hj) for lj, hj in zip(lam, tn.H))
                           + 0.5 * rho * sum(jnp.sum(hj ** 2) for hj in tn.H))
                phi_old = f + lamH + 0.5 * rho * hsq
            bound = phi_old + o["ls_sigma"] * dphi
            ok_l = jnp.isfinite(phi_new) & (dphi < 0) & (phi_new <= bound)
            # second-order correction: the same weights with re-simulated states (H = 0)
            zs = gnm.simulate(pn, X, acts)
            phi_s = _fval(pn, gnm.terms(pn, zs, X, Y, acts, out_act, c).F, mu_w)
            ok_s = jnp.isfinite(phi_s) & (dphi < 0) & (phi_s <= bound)
            use_s = ok_s & ~ok_l  # the lifted step first; the correction only as fallback
            zn = [jnp.where(use_s, a, b) for a, b in zip(zs, zn)]
            return pn, zn, rho, jnp.where(use_s, phi_s, phi_new), phi_old, ok_l | ok_s, use_s

        def cond(ls):
            return ~ls[5] & (ls[0] <= o["mu_max"] * (1.0 + 1e-9))

        def body(ls):
            mu, rho, *_, n, _ = ls
            pn, zn, rho, phi_new, phi_old, ok, use_s = trial(mu, rho)
            mu_next = jnp.where(ok, mu, mu * o["mu_inc"])
            return mu_next, rho, pn, zn, phi_new, ok, phi_old, n + 1, use_s

        inf = jnp.asarray(jnp.inf, dtype=theta.dtype)
        ls0 = (s.mu, s.rho, s.params, s.Z, inf, jnp.asarray(False), inf, jnp.int32(0),
               jnp.asarray(False))
        mu, rho, pn, zn, phi_new, ok, phi_old, ntr, use_s = jax.lax.cond(
            gconv, lambda: ls0, lambda: jax.lax.while_loop(cond, body, ls0))
        ok = ok & ~gconv
        params = jax.tree_util.tree_map(lambda a, b: jnp.where(ok, a, b), pn, s.params)
        Z = [jnp.where(ok, a, b) for a, b in zip(zn, s.Z)]
        mu = jnp.where(ok, jnp.maximum(mu * o["mu_dec"], o["mu_min"]), mu)
        k = s.k + ok
        loss, mse = simulated(params, X, Y)
        better = ok & jnp.isfinite(loss) & (loss < s.best_loss)
        improved = ok & (loss < (1.0 - o["min_delta"]) * s.best_loss)
        best_params = jax.tree_util.tree_map(lambda a, b: jnp.where(better, a, b), params,
                                             s.best_params)
        # stopping, after the step (the new point's feasibility)
        hn = jnp.max(jnp.stack([jnp.max(jnp.abs(h)) for h in gnm.terms(
            params, Z, X, Y, acts, out_act, c).H]))
        fconv = ok & (phi_old - phi_new <= o["ftol"] * jnp.abs(phi_old)) & (hn <= o["htol"])
        since = jnp.where(improved, 0, s.since_best + ok)
        status = jnp.where(gconv | fconv, _CONVERGED, jnp.where(~ok, _STALLED, _RUNNING))
        if patience is not None:
            status = jnp.where((status == _RUNNING) & (since >= patience), _PATIENCE, status)
        row = jnp.stack([loss, mse, hn, mu, jnp.where(ok, phi_new, phi_old)])
        hist = s.hist.at[k].set(jnp.where(ok, row, s.hist[k]))
        return State(params, Z, mu, rho, k, status.astype(jnp.int32), best_params,
                     jnp.where(better, loss, s.best_loss), jnp.where(better, mse, s.best_mse),
                     since, s.nfev + ntr, s.nsolve + ntr, s.nsoc + (ok & use_s), hist)

    def chunk(s: State, k_stop, X, Y) -> State:
        def cond(s):
            return (s.status == _RUNNING) & (s.k < jnp.minimum(k_stop, max_iter))
        return jax.lax.while_loop(cond, lambda s: iterate(s, X, Y), s)

    def init(params, X, Y):
        Z = gnm.simulate(params, X, gnm.hidden_activations(model, relu_mode, t_at(0)))
        loss, mse = simulated(params, X, Y)
        hist = jnp.full((max_iter + 1, len(HIST_KEYS)), jnp.nan)
        hist = hist.at[0].set(jnp.stack([loss, mse, 0.0, o["mu0"], jnp.nan]))
        return State(params, Z, jnp.asarray(o["mu0"], float), jnp.asarray(o["rho0"], float),
                     jnp.int32(0), jnp.int32(_RUNNING), params, loss, mse, jnp.int32(0),
                     jnp.int32(1), jnp.int32(0), jnp.int32(0), hist)

    vinit = jax.jit(jax.vmap(init, in_axes=(0, None, None)))
    vchunk = jax.jit(jax.vmap(chunk, in_axes=(0, None, None, None)))
    return vinit, vchunk


def _stack(trees):
    return jax.tree_util.tree_map(lambda *xs: jnp.asarray(np.stack([np.asarray(x) for x in xs])),
                                  *trees)


def fit(problem, params0, *, method="lifted-gn", **options):
    """Train one initialisation with lifted constrained Gauss-Newton (see fit_many)."""
    return fit_many(problem, [params0], method=method, **options)[0]


def fit_many(problem, params0_list, *, method="lifted-gn", **options):
    """Train several initialisations in one vectorised call; one Result per initialisation."""
    o = _check_options(options, problem)
    model = problem.model
    X, Y = problem.X, problem.Y
    m, O = int(Y.shape[0]), int(Y.shape[1])
    c = float(residual_scale(problem.loss, m * O))
    mu_w = float(problem.weight_decay)
    P = int(ravel_pytree(params0_list[0])[0].shape[0])
    mode = linsolve.choose(o["linear_solver"], m, O, P)
    key = tuple(sorted((k, v) for k, v in o.items() if k not in ("callback", "time_budget",
                                                                  "linear_solver", "relu_mode")))
    vinit, vchunk = _compiled(model, o["relu_mode"], mode, c, m, mu_w, key)
    t_start = time.perf_counter()
    K = len(params0_list)
    s = vinit(_stack([[(W, b) for W, b in p] for p in params0_list]), X, Y)
    if not np.all(np.isfinite(np.asarray(s.best_loss))):
        raise LiftnnError("the loss is not finite at the initial weights")
    max_iter, chunk = int(o["max_iter"]), int(o["chunk"])
    budget_hit = interrupted = False
    k_stop = 0
    try:
        while True:
            k_stop += chunk
            s = vchunk(s, jnp.int32(k_stop), X, Y)
            st, k = np.asarray(s.status), np.asarray(s.k)
            if o["callback"] is not None:
                o["callback"](int(k.max()), s.best_params, np.asarray(s.best_loss))
            if np.all((st != _RUNNING) | (k >= max_iter)):
                break
            if o["time_budget"] is not None and time.perf_counter() - t_start > o["time_budget"]:
                budget_hit = True
                break
    except KeyboardInterrupt:
        interrupted = True
    wall = time.perf_counter() - t_start
    host = jax.device_get(s)
    results = []
    for i in range(K):
        k = int(host.k[i])
        code = int(host.status[i])
        if interrupted and code == _RUNNING:
            status, msg = R.INTERRUPTED, "interrupted; returned the best feasible iterate so far"
        elif code == _CONVERGED:
            status, msg = R.CONVERGED, (f"gradient <= gtol = {o['gtol']:g} or relative merit "
                                        f"decrease <= ftol = {o['ftol']:g}, with ||H||_inf <= "
                                        f"htol = {o['htol']:g}")
        elif code == _STALLED:
            status, msg = R.STALLED, (f"mu exceeded mu_max = {o['mu_max']:g}: no damped step "
                                      f"decreases the merit function; returned the best iterate")
        elif code == _PATIENCE:
            status, msg = R.STALLED, (f"the best simulated loss did not improve by "
                                      f"{o['min_delta']:g} in {o['patience']} iterations")
        elif budget_hit:
            status, msg = R.MAX_ITER, f"time budget of {o['time_budget']:g} s reached"
        else:
            status, msg = R.MAX_ITER, f"max_iter = {max_iter} iterations reached"
        p = [(jnp.asarray(W[i]), None if b is None else jnp.asarray(b[i])) for W, b in host.best_params]
        theta = np.concatenate([np.ravel(a) for a in jax.tree_util.tree_leaves(p)])
        hist = [dict(iter=j, **{key_: float(host.hist[i, j, q]) for q, key_ in enumerate(HIST_KEYS)})
                for j in range(k + 1)]
        if not np.isfinite(host.best_loss[i]):  # pragma: no cover - the start is checked finite
            status, msg = R.DIVERGED, "non-finite simulated loss"
        results.append(R.Result(
            params=p, x=theta, fun=float(host.best_loss[i]), nit=k, nfev=int(host.nfev[i]),
            njev=k + (0 if code == _CONVERGED else 1), nhev=0, lin_solves=int(host.nsolve[i]),
            status=status, success=status == R.CONVERGED or status == R.STALLED, message=msg,
            history=hist, linear_solver=mode, relu_mode=o["relu_mode"], time_s=wall,
            rho=float(host.rho[i]), mu=float(host.mu[i]), n_resimulated=int(host.nsoc[i]), interrupted=interrupted,
        ))
    return results


