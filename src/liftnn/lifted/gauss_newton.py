"""Gauss-Newton on the augmented Lagrangian of the lifted problem, states eliminated per sample.

Lifted variables u = (theta, Z_1..Z_L): weights and the hidden states of every training sample
(Z_j has shape (m, d_j)).  With a_j = Z_{j-1} W_j^T + b_j (Z_0 = X) the constraints and the
output residual are

    H_j = Z_j - sigma_j(a_j)                       (m, d_j)   layer equations, j = 1..L
    F   = c (sigma_out(Z_L W_out^T + b_out) - Y)   (m, O)     1/2 ||F||^2 = the loss ("mse": c = sqrt(2/(m O)))

and the augmented Lagrangian (the thesis eq. 3.1, docs/lifted.md), with the constraints averaged over
samples (h = H / sqrt(m), so that beta does not depend on m) is

    L_beta = 1/2 ||F||^2 + mu_w/2 ||theta||^2 + <lambda, h> + beta/2 ||h||^2
           = 1/2 ||R||^2 + mu_w/2 ||theta||^2 - ||lambda||^2 / (2 beta),
    R      = [F ; s (H + omega)],  s = sqrt(beta / m),  omega = lambda sqrt(m) / beta.

One Gauss-Newton step minimises 1/2 ||R + J d||^2 + mu_w/2 ||theta + d_theta||^2 + mu/2 ||d_theta||^2.
Sample i couples to the others only through theta (an arrowhead system), and inside a sample the
layers form a unit lower block-bidiagonal system J_hZ.  Eliminating d_Z_i leaves, per sample, the
residual projected on the O-dimensional null space of J_Z^T, spanned by

    N_i = [I_O ; -n_i / s],   n_L = c W_out^T diag(sigma_out'),   n_{j-1} = W_j^T (sigma_j' * n_j)

which is backpropagation run at the lifted states (the costates).  So the reduced weight system is

    (sum_i Jh_i^T G_i^{-1} Jh_i + (mu_w + mu) I) d_theta = -(sum_i Jh_i^T G_i^{-1} rh_i + mu_w theta)
    Jh_i = N_i^T J_theta^i   (rows delta_j (x) [z_{j-1}; 1], delta_j = sigma_j' * n_j),
    rh_i = N_i^T R_i = F_i - sum_j n_j^T (H_j + omega_j),   G_i = N_i^T N_i = I + sum_j n_j^T n_j / s^2,

the same size and cost as single-shooting Gauss-Newton (the "lifted Newton" condensing), linear
in m; the states follow by one forward substitution (a forward pass):

    c_i = G_i^{-1} (rh_i + Jh_i d_theta),
    d_Z_1 = v_1,  d_Z_j = v_j + sigma_j' * (d_Z_{j-1} W_j^T),
    v_j = -(H_j + omega_j) + sigma_j' * (Z_{j-1} dW_j^T + db_j) - (n_j c_i) / s^2.

Nothing of size (m S)^2 is formed; the reduced solves are in liftnn.lifted.linsolve.  The
derivation is written out in docs/lifted.md ("The elimination").

The softmax cross-entropy (loss "cross_entropy") takes the same path with the generalised
Gauss-Newton output block of liftnn.lifted.output: F_i and B_i (O, O) with B_i^T F_i = the
loss gradient and B_i^T B_i = the loss Hessian in the logits, B_i in place of c diag(sigma_out')
(n_L = W_out^T B_i^T, the output rows of Jh are B_i (x) [z_L; 1]); the merit then uses the true
cross-entropy (`Terms.loss`), not 1/2 ||F||^2.  docs/lifted.md "Classification".

Two NamedTuples carry the pieces: `AugmentedLSQ` (the inner least-squares problem at fixed
multipliers and penalty: data, omega, s^2, mu_w, activations, c) and `Linearisation` (everything
evaluated at one lifted point: residual pieces and the per-sample elimination).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from liftnn.lifted import output
from liftnn.models.activations import RELU_MODES, Activation, get_activation, relu_relaxation
from liftnn.problem import has_weight_decay

__all__ = ["RELU_MODES", "AugmentedLSQ", "Linearisation", "back_substitute", "condense",
           "hidden_activations", "jh_matvec", "jh_rmatvec", "linearise", "merit",
           "merit_value_and_grad", "out_apply", "out_loss", "out_rapply", "reduced_jacobian",
           "simulate", "terms"]


def hidden_activations(model, relu_mode: str, t) -> list[Activation]:
    """Hidden-layer transfer functions used in the constraints: the model's own, except that
    ReLU layers use `liftnn.models.activations.relu_relaxation(relu_mode, t)` ("gd": max(a, 0)
    with the generalised derivative; "softplus" and "complementarity": relaxations driven to
    ReLU as t -> 0).  `t` may be a traced scalar."""
    return [relu_relaxation(relu_mode, t) if name == "relu" else get_activation(name)
            for name in model.activations[:-1]]


def _affine(Zprev, W, b):
    a = Zprev @ W.T
    return a if b is None else a + b


def simulate(params, X, acts: list[Activation]) -> list:
    """Hidden states of the network (the feasible states for `params`): [Z_1, ..., Z_L]."""
    Z, z = [], X
    for (W, b), act in zip(params[:-1], acts):
        z = act.f(_affine(z, W, b))
        Z.append(z)
    return Z


class AugmentedLSQ(NamedTuple):
    """The inner problem of one outer iteration: Phi(theta, Z) = 1/2 ||R||^2 + mu_w/2 ||theta||^2.

    X: (m, d_in), Y: (m, O); omega: [omega_j (m, d_j)] = lambda_j sqrt(m) / beta; s2 = beta / m;
    acts: the hidden transfer functions (hidden_activations); out_act: sigma_out; c: the output
    residual scale (F = c (f - Y); output.scale); ce: the softmax cross-entropy output block
    (liftnn.lifted.output) instead of least squares (then Y is one-hot and sigma_out = identity).
    """

    X: jax.Array
    Y: jax.Array
    omega: list
    s2: jax.Array
    mu_w: float
    acts: list
    out_act: Activation
    c: float
    ce: bool = False
    w: jax.Array | None = None  # row weights (m,): 0 for the padded rows of liftnn.padding
    m: jax.Array | None = None  # the real number of samples (None: X.shape[0])


class Terms(NamedTuple):
    """Residual pieces at a lifted point (all per sample, samples as rows)."""

    H: list  # constraint residuals H_j (m, d_j)
    D: list  # sigma_j'(a_j) (m, d_j)
    F: jax.Array  # output residual (m, O)
    Do: jax.Array  # sigma_out'(a_out) (m, O)
    B: jax.Array | None = None  # cross-entropy: the output Jacobian B_i (m, O, O) (else c diag(Do))
    loss: jax.Array | None = None  # cross-entropy: the loss value (else 1/2 ||F||^2)


def terms(params, Z, X, Y, acts, out_act, c, ce=False, w=None) -> Terms:
    """Evaluate H_j, sigma_j', F and sigma_out' at (theta, Z); with ce the cross-entropy output
    block (liftnn.lifted.output.cross_entropy: F, B and the loss).  w: row weights (m,) or None;
    a row of weight 0 (a padded sample, liftnn.padding) gets H, sigma', F and B zero, so it adds
    nothing to the merit, the gradient, the elimination (its costates vanish, G_i = I) or the
    constraints (its cross-entropy term is 0 already: its one-hot row is zero)."""
    t = _raw_terms(params, Z, X, Y, acts, out_act, c, ce)
    if w is None:
        return t
    wc = w[:, None]
    return Terms([h * wc for h in t.H], [d * wc for d in t.D], t.F * wc, t.Do * wc,
                 None if t.B is None else t.B * w[:, None, None], t.loss)


def _raw_terms(params, Z, X, Y, acts, out_act, c, ce) -> Terms:
    H, D = [], []
    zprev = X
    for (W, b), act, Zj in zip(params[:-1], acts, Z):
        a = _affine(zprev, W, b)
        H.append(Zj - act.f(a))
        D.append(act.df(a))
        zprev = Zj
    W, b = params[-1]
    ao = _affine(zprev, W, b)
    if ce:
        o = output.cross_entropy(ao, Y, c)
        return Terms(H, D, o.F, jnp.ones_like(ao), o.B, o.loss)
    return Terms(H, D, c * (out_act.f(ao) - Y), out_act.df(ao))


def _terms(prob: AugmentedLSQ, params, Z) -> Terms:
    return terms(params, Z, prob.X, prob.Y, prob.acts, prob.out_act, prob.c, prob.ce, prob.w)


def out_apply(t: Terms, c, v) -> jax.Array:
    """B_i v_i per sample (v: (m, O)): c sigma_out' * v for least squares."""
    return c * t.Do * v if t.B is None else jnp.einsum("mkl,ml->mk", t.B, v)


def out_rapply(t: Terms, c, w) -> jax.Array:
    """B_i^T w_i per sample (w: (m, O)): c sigma_out' * w for least squares."""
    return c * t.Do * w if t.B is None else jnp.einsum("mkl,mk->ml", t.B, w)


def out_loss(t: Terms) -> jax.Array:
    """The output term of the merit: 1/2 ||F||^2 (least squares) or the cross-entropy."""
    return 0.5 * jnp.sum(t.F ** 2) if t.loss is None else t.loss


def merit(prob: AugmentedLSQ, params, Z):
    """Phi = 1/2 ||F||^2 + s^2/2 sum_j ||H_j + omega_j||^2 + mu_w/2 ||theta||^2 (= L_beta + const)."""
    t = _terms(prob, params, Z)
    return _merit_value(params, t, [Hj + Oj for Hj, Oj in zip(t.H, prob.omega)], prob.s2, prob.mu_w)


def _merit_value(params, t: Terms, E: list, s2, mu_w):
    """Phi from the residual pieces, E_j = H_j + omega_j."""
    val = out_loss(t) + 0.5 * s2 * sum(jnp.sum(Ej ** 2) for Ej in E)
    if has_weight_decay(mu_w):
        val = val + 0.5 * mu_w * sum(jnp.sum(q ** 2) for q in jax.tree_util.tree_leaves(params))
    return val


class Condensed(NamedTuple):
    """The per-sample elimination: costates n_j, delta_j = sigma_j' n_j, G, rh and R norms."""

    n: list  # (m, d_j, O)
    delta: list  # (m, d_j, O)
    G: jax.Array  # (m, O, O)
    Ginv: jax.Array  # (m, O, O)
    rh: jax.Array  # (m, O)
    Rsq: jax.Array  # (m,) ||R_i||^2


class Linearisation(NamedTuple):
    """Everything one Gauss-Newton step needs at the lifted point (params, Z).

    terms: H_j, sigma_j', F, sigma_out'; E: [H_j + omega_j]; condensed: the per-sample
    elimination (costates n_j, G_i, rh_i); s2, c, mu_w as in AugmentedLSQ.
    """

    params: list
    Z: list
    X: jax.Array
    terms: Terms
    E: list
    condensed: Condensed
    s2: jax.Array
    c: float
    mu_w: float


def condense(params, Z, t: Terms, E: list, s2, c) -> Condensed:
    """Per-sample null-space basis of J_Z^T (costates by a backward recursion), G_i^{-1}, rh_i."""
    L = len(Z)
    Wo = params[-1][0]
    O = Wo.shape[0]
    n = [None] * L
    n[L - 1] = (c * jnp.einsum("mk,kp->mpk", t.Do, Wo) if t.B is None
                else jnp.einsum("mkl,lp->mpk", t.B, Wo))  # W_out^T B_i^T
    for j in range(L - 1, 0, -1):
        n[j - 1] = jnp.einsum("mpk,pq->mqk", t.D[j][:, :, None] * n[j], params[j][0])
    delta = [t.D[j][:, :, None] * n[j] for j in range(L)]
    G = jnp.eye(O)[None] + sum(jnp.einsum("mpk,mpl->mkl", nj, nj) for nj in n) / s2
    Ginv = jnp.linalg.inv(G) if O > 1 else 1.0 / G  # (m, O, O)
    rh = t.F - sum(jnp.einsum("mpk,mp->mk", nj, Ej) for nj, Ej in zip(n, E))
    Rsq = jnp.sum(t.F ** 2, axis=1) + s2 * sum(jnp.sum(Ej ** 2, axis=1) for Ej in E)
    return Condensed(n, delta, G, Ginv, rh, Rsq)


def linearise(prob: AugmentedLSQ, params, Z) -> Linearisation:
    """Residual pieces and the per-sample elimination at (params, Z)."""
    t = _terms(prob, params, Z)
    E = [h + o for h, o in zip(t.H, prob.omega)]
    cd = condense(params, Z, t, E, prob.s2, prob.c)
    return Linearisation(params, Z, prob.X, t, E, cd, prob.s2, prob.c, prob.mu_w)


def merit_value_and_grad(lin: Linearisation):
    """Phi (see `merit`) and its gradient from the residual pieces, without autodiff.

    With E_j = H_j + omega_j, g_o = c sigma_out' * F and e_j = sigma_j' * E_j (rows = samples):

        dPhi/dZ_j = s^2 E_j - s^2 e_{j+1} W_{j+1}     (j < L),   dPhi/dZ_L = s^2 E_L + g_o W_out
        dPhi/dW_j = -s^2 e_j^T Z_{j-1},  dPhi/db_j = -s^2 sum_i e_j,
        dPhi/dW_out = g_o^T Z_L,  dPhi/db_out = sum_i g_o,   plus mu_w theta on every parameter.

    Returns (Phi, grads shaped like params, [dPhi/dZ_j]).
    """
    params, Z, t, E, s2, mu_w = lin.params, lin.Z, lin.terms, lin.E, lin.s2, lin.mu_w
    L = len(Z)
    val = _merit_value(params, t, E, s2, mu_w)
    go = out_rapply(t, lin.c, t.F)
    e = [Dj * Ej for Dj, Ej in zip(t.D, E)]
    gz = []
    for j in range(L):
        nxt = -s2 * (e[j + 1] @ params[j + 1][0]) if j + 1 < L else go @ params[-1][0]
        gz.append(s2 * E[j] + nxt)
    gp = []
    zprev = lin.X
    for j, (W, b) in enumerate(params[:-1]):
        gp.append((-s2 * (e[j].T @ zprev), None if b is None else -s2 * jnp.sum(e[j], axis=0)))
        zprev = Z[j]
    gp.append((go.T @ zprev, None if params[-1][1] is None else jnp.sum(go, axis=0)))
    if has_weight_decay(mu_w):
        gp = jax.tree_util.tree_map(lambda g, q: g + mu_w * q, gp, params)
    return val, gp, gz


def reduced_jacobian(lin: Linearisation) -> jax.Array:
    """Jh (m, O, P): rows N_i^T J_theta^i in the order of ravel_pytree(params)."""
    params, Z, t, cd = lin.params, lin.Z, lin.terms, lin.condensed
    L = len(Z)
    m, O = t.F.shape
    blocks = []
    zprev = lin.X
    for j in range(L):
        dl = cd.delta[j]  # (m, d_j, O)
        blocks.append(jnp.einsum("mpk,mq->mkpq", dl, zprev).reshape(m, O, -1))
        if params[j][1] is not None:
            blocks.append(jnp.transpose(dl, (0, 2, 1)))
        zprev = Z[j]
    if t.B is not None:  # cross-entropy: rows B_i (x) [z_L; 1]
        blocks.append(jnp.einsum("mkl,mq->mklq", t.B, zprev).reshape(m, O, -1))
        if params[-1][1] is not None:
            blocks.append(t.B)
        return jnp.concatenate(blocks, axis=2)
    eye = jnp.eye(O)
    g = lin.c * t.Do  # (m, O)
    blocks.append(jnp.einsum("mk,kl,mq->mklq", g, eye, zprev).reshape(m, O, -1))
    if params[-1][1] is not None:
        blocks.append(jnp.einsum("mk,kl->mkl", g, eye))
    return jnp.concatenate(blocks, axis=2)


def jh_matvec(lin: Linearisation, dparams) -> jax.Array:
    """Jh @ d_theta without forming Jh: (m, O)."""
    out = 0.0
    zprev = lin.X
    for j, (dW, db) in enumerate(dparams[:-1]):
        u = _affine(zprev, dW, db)  # (m, d_j)
        out = out + jnp.einsum("mpk,mp->mk", lin.condensed.delta[j], u)
        zprev = lin.Z[j]
    dW, db = dparams[-1]
    return out + out_apply(lin.terms, lin.c, _affine(zprev, dW, db))


def jh_rmatvec(lin: Linearisation, w) -> list:
    """Jh^T @ w for w (m, O): the gradient-shaped (params-structured) result."""
    params = lin.params
    res = []
    zprev = lin.X
    for j, (W, b) in enumerate(params[:-1]):
        gz = jnp.einsum("mpk,mk->mp", lin.condensed.delta[j], w)
        res.append((gz.T @ zprev, None if b is None else jnp.sum(gz, axis=0)))
        zprev = lin.Z[j]
    gz = out_rapply(lin.terms, lin.c, w)
    res.append((gz.T @ zprev, None if params[-1][1] is None else jnp.sum(gz, axis=0)))
    return res


def back_substitute(lin: Linearisation, dparams, Jd) -> tuple:
    """States step d_Z from d_theta (forward substitution) and c_i = G_i^{-1}(rh_i + Jh_i d_theta)."""
    t, cd, E, s2 = lin.terms, lin.condensed, lin.E, lin.s2
    ci = jnp.einsum("mkl,ml->mk", cd.Ginv, cd.rh + Jd)
    dZ = []
    zprev = lin.X
    for j, (dW, db) in enumerate(dparams[:-1]):
        v = -E[j] + t.D[j] * _affine(zprev, dW, db) - jnp.einsum("mpk,mk->mp", cd.n[j], ci) / s2
        if j > 0:
            v = v + t.D[j] * (dZ[j - 1] @ lin.params[j][0].T)
        dZ.append(v)
        zprev = lin.Z[j]
    return dZ, ci
