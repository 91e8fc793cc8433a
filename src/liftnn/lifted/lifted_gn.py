"""method="lifted-gn": lifted constrained Gauss-Newton (Bock's multiple-shooting Gauss-Newton).

Variables u = (theta, Z_1..Z_L) as in docs/lifted.md ("The lifted formulation", "The
elimination": H_j = Z_j - sigma_j(a_j), F = c (sigma_out(a_out) - Y), costates n_j,
delta_j = sigma_j' n_j).
Instead of penalising the layer equations (method="alm"), every iteration linearises them and the
output residual and solves the equality-constrained linear least-squares problem (Bock 1984;
Albersmeyer & Diehl, "The lifted Newton method and its application in optimization", SIAM J.
Optim. 20(3), 2010; docs/why-models.md §4)

    min_d 1/2 ||F + J_F d||^2 + mu_w/2 ||theta + d_theta||^2 + mu/2 ||d_theta||^2
    s.t.  H + J_H d = 0.

Condensing.  With exact constraint linearisation, J_H d = -H fixes the states step as an affine
function of d_theta, the linear forward sweep (one forward pass, per sample)

    dZ_j = -H_j + D_j * (Z_{j-1} dW_j^T + db_j + dZ_{j-1} W_j^T),   D_j = sigma_j'(a_j), dZ_0 = 0,

and substituting it into the output residual gives F + J_F d = r0 + Jr d_theta with

    r0 = F - sum_j n_j^T H_j   (per sample: the constraint residuals carried to the output),
    Jr = the backpropagation Jacobian evaluated at the lifted states (rows delta_j (x) [z_{j-1}; 1]),

i.e. the elimination of docs/lifted.md with G_i = I (no penalty term: beta -> infinity): the
`gauss_newton.Linearisation` of `gauss_newton.linearise` at omega = 0, s^2 = 1, with G_i and
G_i^{-1} replaced by I (`linearise` here), on which gauss_newton's products and linsolve's
Gram matrices and cg solve are used unchanged.
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

ReLU layers use the smoothed constraints of docs/lifted.md "ReLU" (relu_mode "complementarity"
(default) or "softplus", t_k = max(t0 t_decay^k, t_min), or "gd").

Stopping: ||Jr^T r0 + mu_w theta||_inf <= gtol, or an accepted step that lowers phi by less than
ftol phi, each with ||H||_inf <= htol -> "converged"; mu > mu_max -> "stalled"; optional
`patience` (iterations without a (1 - min_delta) improvement of the best simulated loss) ->
"stalled"; max_iter / time_budget -> "max_iter".  The returned weights are those of the iterate
whose *simulated* network (exact activations, states recomputed: a feasible point) has the lowest
training objective; a run never returns a non-finite network.  With validation data
(problem.X_val / Y_val) the iterate is chosen by the lowest validation loss instead (recorded as
"val_loss" in the history), and `val_patience` iterations without a new lowest validation loss
end the run ("stalled"), as for the classical methods (liftnn.solvers.driver).

Several initialisations run in one call: `fit_many` vmaps the jitted iteration over seeds (each
seed stops on its own), in chunks of `chunk` iterations between which the callback and the time
budget are checked.  The samples are not sharded: `devices` must be None or 1.
"""

from __future__ import annotations

import functools
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from liftnn import xla_options
from liftnn._validate import (
    callable_or_none,
    check_choice,
    check_lifted_problem,
    integer,
    merge_options,
    number,
)
from liftnn.errors import LiftnnError
from liftnn.lifted import gauss_newton as gnm
from liftnn.lifted import linsolve, output
from liftnn.models.activations import RELU_MODES, get_activation
from liftnn.problem import loss_value, objective_value
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
    "val_patience": 10,
    "relu_mode": "complementarity",
    "t0": 1.0,
    "t_decay": 0.7,
    "t_min": 1e-8,
    "linear_solver": "auto",
    "chunk": 50,
    "time_budget": None,
    "callback": None,
}

MERITS = ("augmented", "l1")

#: the jitted loop's status codes, turned into liftnn's status strings at the boundary (_status)
_RUNNING, _CONVERGED, _STALLED, _PATIENCE, _VAL_PATIENCE = 0, 1, 2, 3, 4


def _check_options(opts: dict, problem) -> dict:
    """DEFAULTS + opts, every value checked (in place); LiftnnError naming the bad one."""
    o = merge_options("lifted-gn", opts, DEFAULTS)
    check_choice("ReLU mode", o["relu_mode"], RELU_MODES)
    check_choice("linear solver", o["linear_solver"], linsolve.SOLVERS)
    check_choice("merit function", o["merit"], MERITS)
    for k in ("mu0", "mu_max", "rho0", "rho_margin", "t0", "t_decay", "min_delta"):
        number(o, k, lo=0, lo_open=True)
    for k in ("gtol", "ftol", "htol", "t_min", "mu_min"):
        number(o, k, lo=0)
    number(o, "mu_inc", lo=1, lo_open=True)
    for k in ("mu_dec", "ls_sigma"):
        number(o, k, lo=0, hi=1, lo_open=True, hi_open=True)
    if o["mu_max"] < o["mu0"]:
        raise LiftnnError(f"mu_max ({o['mu_max']:g}) must be >= mu0 ({o['mu0']:g})")
    integer(o, "max_iter", 1)
    integer(o, "chunk", 1)
    integer(o, "patience", 1, allow_none=True)
    integer(o, "val_patience", 1, allow_none=True)
    if o["time_budget"] is not None:
        number(o, "time_budget", lo=0, lo_open=True)
    callable_or_none(o, "callback")
    check_lifted_problem(problem, "lifted-gn")
    return o


def _check_devices(devices) -> None:
    """lifted-gn runs on one device: devices must be None or 1."""
    if devices is None or (isinstance(devices, (int, np.integer)) and not isinstance(devices, bool)
                           and int(devices) == 1):
        return
    raise LiftnnError(f"lifted-gn runs on one device (its samples are not sharded); got "
                      f"devices={devices!r}: use devices=None or 1 (method='alm' and 'lm' shard "
                      f"the samples)")


# ---------------------------------------------------------------------------------------------
# the condensed step (pure functions; tested against a dense KKT solve)
# ---------------------------------------------------------------------------------------------


def constrained_problem(X, Y, acts, out_act, c, mu_w, ce=False) -> gnm.AugmentedLSQ:
    """The data of the equality-constrained problem as a gauss_newton.AugmentedLSQ.

    X: (m, d_in), Y: (m, O); acts: hidden transfer functions; out_act: sigma_out; c: the output
    residual scale; mu_w: weight decay; ce: the softmax cross-entropy (one-hot Y, the GGN output
    block of liftnn.lifted.output).  omega = 0 and s^2 = 1: lifted-gn has no penalty term
    (`linearise` sets both, whatever the AugmentedLSQ holds).
    """
    return gnm.AugmentedLSQ(X, Y, [0.0] * len(acts), 1.0, mu_w, acts, out_act, c, ce)


def linearise(prob: gnm.AugmentedLSQ, params, Z) -> gnm.Linearisation:
    """gauss_newton.linearise at omega = 0, s^2 = 1 with G_i = G_i^{-1} = I.

    Then E_j = H_j and rh_i = r0_i = F_i - sum_j n_j^T H_j, and the reduced Jacobian is Jr
    (backpropagation at the lifted states): every product of gauss_newton and linsolve taking the
    result works on (Jr^T Jr + cc I) d = -(Jr^T r0 + mu_w theta).
    """
    lin = gnm.linearise(prob._replace(omega=[0.0] * len(Z), s2=1.0), params, Z)
    m, O = lin.terms.F.shape
    eye = jnp.broadcast_to(jnp.eye(O), (m, O, O))
    return lin._replace(condensed=lin.condensed._replace(G=eye, Ginv=eye))


def reduced_gradient(lin: gnm.Linearisation) -> jax.Array:
    """g = Jr^T r0 + mu_w theta (flat, in the order of ravel_pytree(params))."""
    theta = ravel_pytree(lin.params)[0]
    return ravel_pytree(gnm.jh_rmatvec(lin, lin.condensed.rh))[0] + lin.mu_w * theta


def prepare_solve(mode: str, lin: gnm.Linearisation, g):
    """solve(cc) -> d_theta for (Jr^T Jr + cc I) d = -g, cc = mu_w + damping; the parts that do not
    depend on the damping (the P x P or m O x m O Gram matrix) are formed once."""
    theta = ravel_pytree(lin.params)[0]
    mu_w, rh = lin.mu_w, lin.condensed.rh
    if mode == "primal":
        Jh = gnm.reduced_jacobian(lin)
        M0 = jnp.einsum("mkp,mkq->pq", Jh, Jh)
        floor = linsolve.REL_FLOOR * jnp.maximum(jnp.mean(jnp.diag(M0)), 1e-300)
        eye = jnp.eye(M0.shape[0])

        def solve(cc):
            Lc = jnp.linalg.cholesky(M0 + jnp.maximum(cc, floor) * eye)
            return -jax.scipy.linalg.cho_solve((Lc, True), g)
        return solve
    if mode == "dual":
        K0 = linsolve.dual_gram(lin)
        floor = linsolve.REL_FLOOR * jnp.maximum(jnp.mean(jnp.diag(K0)), 1e-300)
        Jth = gnm.jh_matvec(lin, lin.params) if mu_w else None
        eye = jnp.eye(K0.shape[0])

        def solve(cc):
            ce = jnp.maximum(cc, floor)
            ratio = mu_w / ce
            rhs = rh if Jth is None else rh - ratio * Jth
            Lc = jnp.linalg.cholesky(K0 + ce * eye)
            y = jax.scipy.linalg.cho_solve((Lc, True), rhs.reshape(-1)).reshape(rhs.shape)
            return -ravel_pytree(gnm.jh_rmatvec(lin, y))[0] - ratio * theta
        return solve

    def solve(cc):
        return linsolve.solve_cg(lin, theta, mu_w, cc)[0]
    return solve


def states_step(lin: gnm.Linearisation, dparams) -> list:
    """The linear forward sweep dZ_j = -H_j + D_j * (Z_{j-1} dW_j^T + db_j + dZ_{j-1} W_j^T)
    (dZ_0 = 0): the states step that satisfies H + J_H d = 0 exactly."""
    t = lin.terms
    dZ = []
    zprev = lin.X
    for j, (dW, db) in enumerate(dparams[:-1]):
        v = -t.H[j] + t.D[j] * gnm._affine(zprev, dW, db)
        if j > 0:
            v = v + t.D[j] * (dZ[j - 1] @ lin.params[j][0].T)
        dZ.append(v)
        zprev = lin.Z[j]
    return dZ


def lifted_step(prob: gnm.AugmentedLSQ, params, Z, damping, mode="primal"):
    """(d_params, d_Z): the solution of the damped, linearised equality-constrained problem
    (module docstring) at (params, Z); prob from `constrained_problem`."""
    lin = linearise(prob, params, Z)
    dth = prepare_solve(mode, lin, reduced_gradient(lin))(prob.mu_w + damping)
    dp = ravel_pytree(params)[1](dth)
    return dp, states_step(lin, dp)


def dense_kkt_step(prob: gnm.AugmentedLSQ, params, Z, damping):
    """Reference (tests only): the same step from the dense KKT system of
    min 1/2||F + J_F d||^2 + mu_w/2||theta + d_theta||^2 + damping/2||d_theta||^2 s.t. H + J_H d = 0."""
    u0, unravel, P, F, JF, H, JH = linsolve.dense_terms(prob, params, Z)
    mu_w = prob.mu_w
    n, q = u0.shape[0], H.shape[0]
    A = JF.T @ JF + jnp.diag(jnp.zeros(n).at[:P].set(mu_w + damping))
    K = jnp.block([[A, JH.T], [JH, jnp.zeros((q, q))]])
    rhs = jnp.concatenate([-(JF.T @ F + jnp.zeros(n).at[:P].set(mu_w * u0[:P])), -H])
    return unravel(jnp.linalg.solve(K, rhs)[:n])


def _l1(H) -> jax.Array:
    return sum(jnp.sum(jnp.abs(h)) for h in H)


def _fval(params, t: gnm.Terms, mu_w):
    """1/2 ||F||^2 (the cross-entropy for loss="cross_entropy") + mu_w/2 ||theta||^2."""
    val = gnm.out_loss(t)
    if mu_w:
        val = val + 0.5 * mu_w * sum(jnp.sum(q ** 2) for q in jax.tree_util.tree_leaves(params))
    return val


# ---------------------------------------------------------------------------------------------
# the merit functions (module docstring, "Globalisation")
# ---------------------------------------------------------------------------------------------


class MeritTest(NamedTuple):
    """The merit at the old and the trial point, its directional derivative and the penalty."""

    rho: jax.Array
    dphi: jax.Array  # D phi along the step
    phi_new: jax.Array
    phi_old: jax.Array


def merit_l1(H, Hn, fn, f, lam, gf, rho, m, rho_margin) -> MeritTest:
    """phi = f + rho ||H||_1 / m with rho >= rho_margin m ||lambda||_inf and D phi < 0.

    H / Hn: constraint residuals at the old / trial point; f / fn: 1/2||F||^2 + mu_w/2||theta||^2
    there; lam: the QP multipliers; gf = g_f^T d; rho: the last penalty (Powell's slow decrease).
    """
    h1 = _l1(H) / m
    lam_inf = jnp.max(jnp.stack([jnp.max(jnp.abs(lj)) for lj in lam]))
    nu = jnp.maximum(rho_margin * m * lam_inf,
                     jnp.where(h1 > 0, gf / jnp.maximum(0.5 * h1, 1e-300), 0.0))
    rho = jnp.maximum(nu, 0.5 * (rho + nu))  # Powell: follows |lambda| down slowly
    return MeritTest(rho, gf - rho * h1, fn + rho * _l1(Hn) / m, f + rho * h1)


def merit_augmented(H, Hn, fn, f, lam, gf, rho) -> MeritTest:
    """phi = f + <lambda, H> + rho/2 ||H||^2 with the QP multipliers lambda (arguments as merit_l1);
    rho the smallest value making D phi = gf - <lambda, H> - rho ||H||^2 <= -(gf - <lambda, H>)."""
    lamH = sum(jnp.sum(lj * hj) for lj, hj in zip(lam, H))
    hsq = sum(jnp.sum(hj ** 2) for hj in H)
    nu = jnp.where(hsq > 0, (gf - lamH) / jnp.maximum(0.5 * hsq, 1e-300), 0.0)
    nu = jnp.maximum(nu, 0.0)
    rho = jnp.maximum(nu, 0.5 * (rho + nu))
    phi_new = (fn + sum(jnp.sum(lj * hj) for lj, hj in zip(lam, Hn))
               + 0.5 * rho * sum(jnp.sum(hj ** 2) for hj in Hn))
    return MeritTest(rho, gf - lamH - rho * hsq, phi_new, f + lamH + 0.5 * rho * hsq)


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
    best_loss: jax.Array  # training objective of the returned (best) iterate
    best_mse: jax.Array
    since_best: jax.Array
    low_loss: jax.Array  # the lowest simulated training objective so far (for `patience`)
    best_val: jax.Array  # the returned iterate's validation loss (inf without validation data)
    since_val: jax.Array
    nfev: jax.Array  # merit evaluations (one per trial step)
    nsolve: jax.Array  # linear solves (one per trial step)
    nsoc: jax.Array  # accepted steps that took the re-simulated states (second-order correction)
    hist: jax.Array  # (max_iter + 1, 6): the HIST_KEYS


HIST_KEYS = ("loss", "train_mse", "h_inf", "mu", "merit", "val_loss")


class Config(NamedTuple):
    """The static settings of one compiled run (hashable: the compilation cache key).

    mode: the resolved linear solver; c: output residual scale; m: samples; mu_w: weight decay;
    opts: the numeric options as sorted (name, value) pairs; loss: the loss name (the validation
    loss); has_val: whether validation data come with the training data.
    """

    model: object
    relu_mode: str
    mode: str
    c: float
    m: int
    mu_w: float
    opts: tuple
    loss: str = "mse"
    has_val: bool = False

    @property
    def o(self) -> dict:
        return dict(self.opts)


class _Trial(NamedTuple):
    """One damped trial step: the trial point and its merit test."""

    params: list
    Z: list
    rho: jax.Array
    phi_new: jax.Array
    phi_old: jax.Array
    ok: jax.Array  # the merit test passed (lifted point or re-simulated states)
    use_s: jax.Array  # the re-simulated states were taken


class _Search(NamedTuple):
    """The damping loop's state: mu, the last trial and the number of trials."""

    mu: jax.Array
    trial: _Trial
    n: jax.Array


def _t_at(cfg: Config, k):
    """The ReLU relaxation parameter t_k = max(t0 t_decay^k, t_min) (1 without smoothing)."""
    if cfg.relu_mode == "gd" or "relu" not in cfg.model.activations[:-1]:
        return 1.0
    o = cfg.o
    return jnp.maximum(o["t0"] * o["t_decay"] ** k, o["t_min"])


def _simulated(cfg: Config, params, X, Y):
    """(training objective, MSE) of the simulated network (exact activations)."""
    out = X
    for (W, b), name in zip(params, cfg.model.activations):
        out = get_activation(name).f(gnm._affine(out, W, b))
    r = out - Y
    if cfg.loss == output.CROSS_ENTROPY:
        return objective_value(cfg.model, cfg.loss, cfg.mu_w, params, X, Y), jnp.mean(r ** 2)
    c2 = cfg.c * cfg.c
    return 0.5 * c2 * jnp.sum(r ** 2) + (0.5 * cfg.mu_w * sum(
        jnp.sum(q ** 2) for q in jax.tree_util.tree_leaves(params)) if cfg.mu_w else 0.0), jnp.mean(r ** 2)


def _trial(cfg: Config, prob, lin: gnm.Linearisation, solve, mu, rho) -> _Trial:
    """Step with damping mu, move the states by the linear sweep, test the merit; fall back on the
    re-simulated states (second-order correction) if only they pass."""
    o, mu_w, t = cfg.o, cfg.mu_w, lin.terms
    theta, unravel = ravel_pytree(lin.params)
    dth = solve(mu_w + mu * (cfg.c * cfg.c))
    dp = unravel(dth)
    dZ = states_step(lin, dp)
    rlin = lin.condensed.rh + gnm.jh_matvec(lin, dp)  # F + J_F d, the linearised output residual
    gf = jnp.sum(t.F * (rlin - t.F)) + mu_w * jnp.vdot(theta, dth)
    # QP multipliers of H_j (per sample: minus the costate times the linearised residual)
    lam = [-jnp.einsum("mpk,mk->mp", nj, rlin) for nj in lin.condensed.n]
    pn = jax.tree_util.tree_map(jnp.add, lin.params, dp)
    zn = [a + d for a, d in zip(lin.Z, dZ)]
    tn = gnm.terms(pn, zn, prob.X, prob.Y, prob.acts, prob.out_act, prob.c, prob.ce)
    f, fn = _fval(lin.params, t, mu_w), _fval(pn, tn, mu_w)
    if o["merit"] == "l1":
        mt = merit_l1(t.H, tn.H, fn, f, lam, gf, rho, cfg.m, o["rho_margin"])
    else:  # augmented Lagrangian merit with the QP multipliers
        mt = merit_augmented(t.H, tn.H, fn, f, lam, gf, rho)
    bound = mt.phi_old + o["ls_sigma"] * mt.dphi
    ok_l = jnp.isfinite(mt.phi_new) & (mt.dphi < 0) & (mt.phi_new <= bound)
    # second-order correction: the same weights with re-simulated states (H = 0)
    zs = gnm.simulate(pn, prob.X, prob.acts)
    phi_s = _fval(pn, gnm.terms(pn, zs, prob.X, prob.Y, prob.acts, prob.out_act, prob.c,
                                prob.ce), mu_w)
    ok_s = jnp.isfinite(phi_s) & (mt.dphi < 0) & (phi_s <= bound)
    use_s = ok_s & ~ok_l  # the lifted step first; the correction only as fallback
    zn = [jnp.where(use_s, a, b) for a, b in zip(zs, zn)]
    return _Trial(pn, zn, mt.rho, jnp.where(use_s, phi_s, mt.phi_new), mt.phi_old, ok_l | ok_s, use_s)


def _search(cfg: Config, prob, lin, solve, s: State, gconv) -> _Search:
    """LM's step-length control: raise mu by mu_inc until a trial passes or mu > mu_max (the
    linearisation and the damping-independent Gram matrix are reused); none when gconv."""
    o = cfg.o

    def cond(ls: _Search):
        return ~ls.trial.ok & (ls.mu <= o["mu_max"] * (1.0 + 1e-9))

    def body(ls: _Search):
        tr = _trial(cfg, prob, lin, solve, ls.mu, ls.trial.rho)
        return _Search(jnp.where(tr.ok, ls.mu, ls.mu * o["mu_inc"]), tr, ls.n + 1)

    inf = jnp.asarray(jnp.inf, dtype=s.mu.dtype)
    no = jnp.asarray(False)
    ls0 = _Search(s.mu, _Trial(s.params, s.Z, s.rho, inf, inf, no, no), jnp.int32(0))
    return jax.lax.cond(gconv, lambda: ls0, lambda: jax.lax.while_loop(cond, body, ls0))


class Data(NamedTuple):
    """The training samples and, when the problem has them, the validation samples."""

    X: jax.Array
    Y: jax.Array
    val: tuple | None  # (X_val, Y_val)


def _val_loss(cfg: Config, params, data: Data):
    """The simulated network's validation loss (the problem's loss on X_val, no weight decay);
    inf without validation data."""
    if not cfg.has_val:
        return jnp.asarray(jnp.inf)
    return loss_value(cfg.model, cfg.loss, params, *data.val)


def _iterate(cfg: Config, s: State, data: Data) -> State:
    """One lifted-gn iteration: linearise, LM trials, then the bookkeeping (_advance)."""
    acts = gnm.hidden_activations(cfg.model, cfg.relu_mode, _t_at(cfg, s.k))
    prob = constrained_problem(data.X, data.Y, acts, get_activation(cfg.model.activations[-1]),
                               cfg.c, cfg.mu_w, cfg.loss == output.CROSS_ENTROPY)
    lin = linearise(prob, s.params, s.Z)
    g = reduced_gradient(lin)
    hinf = jnp.max(jnp.stack([jnp.max(jnp.abs(h)) for h in lin.terms.H]))
    gconv = (jnp.max(jnp.abs(g)) <= cfg.o["gtol"]) & (hinf <= cfg.o["htol"])
    ls = _search(cfg, prob, lin, prepare_solve(cfg.mode, lin, g), s, gconv)
    return _advance(cfg, prob, s, ls, gconv, data)


class _Best(NamedTuple):
    """The iterate a run returns and the counters of the patience rules (State's fields)."""

    params: list
    loss: jax.Array
    mse: jax.Array
    since: jax.Array
    low: jax.Array
    val: jax.Array
    since_val: jax.Array


def _select(cfg: Config, s: State, ok, params, loss, mse, vloss) -> _Best:
    """Keep the accepted iterate if it is the best so far: the lowest validation loss with
    validation data, else the lowest simulated training objective; count the iterations since
    the training objective improved by min_delta (patience) and since a new lowest validation
    loss (val_patience)."""
    new_val = ok & jnp.isfinite(vloss) & (vloss < s.best_val)
    better = new_val if cfg.has_val else ok & jnp.isfinite(loss) & (loss < s.best_loss)
    improved = ok & (loss < (1.0 - cfg.o["min_delta"]) * s.low_loss)

    def keep(new, old):
        return jax.tree_util.tree_map(lambda a, b: jnp.where(better, a, b), new, old)
    return _Best(keep(params, s.best_params), keep(loss, s.best_loss), keep(mse, s.best_mse),
                 jnp.where(improved, 0, s.since_best + ok),
                 jnp.where(ok & jnp.isfinite(loss), jnp.minimum(loss, s.low_loss), s.low_loss),
                 jnp.where(new_val, vloss, s.best_val), jnp.where(new_val, 0, s.since_val + ok))


def _advance(cfg: Config, prob, s: State, ls: _Search, gconv, data: Data) -> State:
    """Accept the trial point (or keep the old one), update mu, the best simulated iterate, the
    stopping status and the history row."""
    o, tr = cfg.o, ls.trial
    ok = tr.ok & ~gconv
    params = jax.tree_util.tree_map(lambda a, b: jnp.where(ok, a, b), tr.params, s.params)
    Z = [jnp.where(ok, a, b) for a, b in zip(tr.Z, s.Z)]
    mu = jnp.where(ok, jnp.maximum(ls.mu * o["mu_dec"], o["mu_min"]), ls.mu)
    k = s.k + ok
    loss, mse = _simulated(cfg, params, prob.X, prob.Y)
    vloss = _val_loss(cfg, params, data)
    b = _select(cfg, s, ok, params, loss, mse, vloss)
    # stopping, after the step (the new point's feasibility)
    hn = jnp.max(jnp.stack([jnp.max(jnp.abs(h)) for h in gnm.terms(
        params, Z, prob.X, prob.Y, prob.acts, prob.out_act, prob.c).H]))
    fconv = ok & (tr.phi_old - tr.phi_new <= o["ftol"] * jnp.abs(tr.phi_old)) & (hn <= o["htol"])
    status = jnp.where(gconv | fconv, _CONVERGED, jnp.where(~ok, _STALLED, _RUNNING))
    if o["patience"] is not None:
        status = jnp.where((status == _RUNNING) & (b.since >= o["patience"]), _PATIENCE, status)
    if cfg.has_val and o["val_patience"] is not None:
        status = jnp.where((status == _RUNNING) & (b.since_val >= o["val_patience"]),
                           _VAL_PATIENCE, status)
    row = jnp.stack([loss, mse, hn, mu, jnp.where(ok, tr.phi_new, tr.phi_old),
                     jnp.where(cfg.has_val, vloss, jnp.nan)])
    hist = s.hist.at[k].set(jnp.where(ok, row, s.hist[k]))
    return State(params, Z, mu, tr.rho, k, status.astype(jnp.int32), b.params, b.loss, b.mse,
                 b.since, b.low, b.val, b.since_val, s.nfev + ls.n, s.nsolve + ls.n,
                 s.nsoc + (ok & tr.use_s), hist)


def _chunk(cfg: Config, s: State, k_stop, data: Data) -> State:
    """Iterate while running and k < min(k_stop, max_iter)."""
    max_iter = cfg.o["max_iter"]

    def cond(s):
        return (s.status == _RUNNING) & (s.k < jnp.minimum(k_stop, max_iter))
    return jax.lax.while_loop(cond, lambda s: _iterate(cfg, s, data), s)


def _init(cfg: Config, params, data: Data) -> State:
    """The start: states by simulating the network (a feasible point), mu0, rho0."""
    o = cfg.o
    Z = gnm.simulate(params, data.X,
                     gnm.hidden_activations(cfg.model, cfg.relu_mode, _t_at(cfg, 0)))
    loss, mse = _simulated(cfg, params, data.X, data.Y)
    vloss = _val_loss(cfg, params, data)
    hist = jnp.full((o["max_iter"] + 1, len(HIST_KEYS)), jnp.nan)
    hist = hist.at[0].set(jnp.stack([loss, mse, 0.0, o["mu0"], jnp.nan,
                                     jnp.where(cfg.has_val, vloss, jnp.nan)]))
    return State(params, Z, jnp.asarray(o["mu0"], float), jnp.asarray(o["rho0"], float),
                 jnp.int32(0), jnp.int32(_RUNNING), params, loss, mse, jnp.int32(0), loss,
                 vloss, jnp.int32(0), jnp.int32(1), jnp.int32(0), jnp.int32(0), hist)


@functools.lru_cache(maxsize=32)
def _compiled(cfg: Config):
    """(vinit, vchunk): _init and _chunk jitted and vmapped over seeds, once per Config."""
    vinit = xla_options.jit(jax.vmap(functools.partial(_init, cfg), in_axes=(0, None)))
    vchunk = xla_options.jit(jax.vmap(functools.partial(_chunk, cfg), in_axes=(0, None, None)))
    return vinit, vchunk


def _stack(trees):
    return jax.tree_util.tree_map(lambda *xs: jnp.asarray(np.stack([np.asarray(x) for x in xs])),
                                  *trees)


# ---------------------------------------------------------------------------------------------
# the front door
# ---------------------------------------------------------------------------------------------


def fit(problem, params0, **options):
    """Train one initialisation with lifted constrained Gauss-Newton (see fit_many)."""
    return fit_many(problem, [params0], **options)[0]


def fit_many(problem, params0_list, *, devices=None, **options):
    """Train several initialisations in one vectorised call; one Result per initialisation.

    problem: a liftnn.problem.TrainingProblem with a least-squares loss or the softmax
    cross-entropy (one-hot targets; liftnn.lifted.output) and an MLP with at least one hidden layer; params0_list: K initial parameter lists; options: see DEFAULTS.
    devices: None or 1 (lifted-gn does not shard the samples; more is a LiftnnError).
    """
    o = _check_options(options, problem)
    _check_devices(devices)
    X, Y = problem.X, problem.Y
    m, O = int(Y.shape[0]), int(Y.shape[1])
    P = int(ravel_pytree(params0_list[0])[0].shape[0])
    key = tuple(sorted((k, v) for k, v in o.items() if k not in ("callback", "time_budget",
                                                                  "linear_solver", "relu_mode")))
    has_val = problem.X_val is not None
    cfg = Config(problem.model, o["relu_mode"],
                 linsolve.choose(o["linear_solver"], m, O, P, problem.loss == output.CROSS_ENTROPY),
                 output.scale(problem.loss, m, O), m, float(problem.weight_decay), key,
                 problem.loss, has_val)
    data = Data(X, Y, (problem.X_val, problem.Y_val) if has_val else None)
    vinit, vchunk = _compiled(cfg)
    t_start = time.perf_counter()
    s = vinit(_stack([[(W, b) for W, b in p] for p in params0_list]), data)
    if not np.all(np.isfinite(np.asarray(s.best_loss))):
        raise LiftnnError("the loss is not finite at the initial weights")
    if has_val and not np.all(np.isfinite(np.asarray(s.best_val))):
        raise LiftnnError("the validation loss is not finite at the initial weights")
    s, budget_hit, interrupted = _run(vchunk, s, data, o, t_start)
    wall = time.perf_counter() - t_start
    host = jax.device_get(s)
    return [_result(host, i, o, cfg.mode, wall, budget_hit, interrupted)
            for i in range(len(params0_list))]


def _run(vchunk, s: State, data: Data, o: dict, t_start: float):
    """Run chunks of `chunk` iterations until every seed stopped, max_iter, the time budget or
    Ctrl-C; the callback after each chunk.  Returns (state, budget_hit, interrupted)."""
    max_iter, chunk = o["max_iter"], o["chunk"]
    budget_hit = interrupted = False
    k_stop = 0
    try:
        while True:
            k_stop += chunk
            s = vchunk(s, jnp.int32(k_stop), data)
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
    return s, budget_hit, interrupted


def _status(code: int, o: dict, budget_hit: bool, interrupted: bool) -> tuple[str, str]:
    """(status, message) of one seed from its jitted status code."""
    if interrupted and code == _RUNNING:
        return R.INTERRUPTED, "interrupted; returned the best feasible iterate so far"
    if code == _CONVERGED:
        return R.CONVERGED, (f"gradient <= gtol = {o['gtol']:g} or relative merit decrease <= "
                             f"ftol = {o['ftol']:g}, with ||H||_inf <= htol = {o['htol']:g}")
    if code == _STALLED:
        return R.STALLED, (f"mu exceeded mu_max = {o['mu_max']:g}: no damped step decreases the "
                           f"merit function; returned the best iterate")
    if code == _VAL_PATIENCE:
        return R.STALLED, (f"no improvement of the validation loss in {o['val_patience']} "
                           f"iterations (val_patience); returned the iterate with the lowest "
                           f"validation loss")
    if code == _PATIENCE:
        return R.STALLED, (f"the best simulated loss did not improve by {o['min_delta']:g} in "
                           f"{o['patience']} iterations")
    if budget_hit:
        return R.MAX_ITER, f"time budget of {o['time_budget']:g} s reached"
    return R.MAX_ITER, f"max_iter = {o['max_iter']} iterations reached"


def _result(host: State, i: int, o: dict, mode: str, wall: float, budget_hit, interrupted):
    """The Result of seed i from the final (host) state."""
    k, code = int(host.k[i]), int(host.status[i])
    status, msg = _status(code, o, budget_hit, interrupted)
    p = [(jnp.asarray(W[i]), None if b is None else jnp.asarray(b[i])) for W, b in host.best_params]
    theta = np.concatenate([np.ravel(a) for a in jax.tree_util.tree_leaves(p)])
    hist = [dict(iter=j, **{key_: float(host.hist[i, j, q]) for q, key_ in enumerate(HIST_KEYS)})
            for j in range(k + 1)]
    if not np.isfinite(host.best_loss[i]):  # pragma: no cover - the start is checked finite
        status, msg = R.DIVERGED, "non-finite simulated loss"
    return R.Result(
        params=p, x=theta, fun=float(host.best_loss[i]), nit=k, nfev=int(host.nfev[i]),
        njev=k + (0 if code == _CONVERGED else 1), nhev=0, lin_solves=int(host.nsolve[i]),
        status=status, success=status == R.CONVERGED or status == R.STALLED, message=msg,
        history=hist, linear_solver=mode, relu_mode=o["relu_mode"], time_s=wall,
        rho=float(host.rho[i]), mu=float(host.mu[i]), n_resimulated=int(host.nsoc[i]),
        interrupted=interrupted,
        **({"val_loss": float(host.best_val[i])} if np.isfinite(host.best_val[i]) else {}),
    )
