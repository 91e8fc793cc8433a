"""Gauss-Newton on the augmented Lagrangian of the lifted problem, states eliminated per sample.

Lifted variables u = (theta, Z_1..Z_L): weights and the hidden states of every training sample
(Z_j has shape (m, d_j)).  With a_j = Z_{j-1} W_j^T + b_j (Z_0 = X) the constraints and the
output residual are

    H_j = Z_j - sigma_j(a_j)                       (m, d_j)   layer equations, j = 1..L
    F   = c (sigma_out(Z_L W_out^T + b_out) - Y)   (m, O)     1/2 ||F||^2 = the loss ("mse": c = sqrt(2/(m O)))

and the augmented Lagrangian (seed 000 eq. 3.1, DESIGN.md §1), with the constraints averaged over
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

Nothing of size (m S)^2 is formed; the reduced solves are in liftnn.lifted.linsolve.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from liftnn.models.activations import Activation, get_activation

RELU_MODES = ("gd", "complementarity", "softplus")


def hidden_activations(model, relu_mode: str, t) -> list[Activation]:
    """Hidden-layer transfer functions used in the constraints.

    For ReLU layers: "gd" uses max(a, 0) with the generalised derivative 1[a > 0];
    "softplus" the homotopy sigma_t(a) = t softplus(a / t) -> relu as t -> 0;
    "complementarity" the relaxed complementarity system of the thesis (ch. 2.2):
    z >= 0, z - a >= 0, z (z - a) = t^2, whose unique solution is
    z = (a + sqrt(a^2 + 4 t^2)) / 2 (a Scholtes-type relaxation driven to t -> 0).
    `t` may be a traced scalar.
    """
    acts = []
    for name in model.activations[:-1]:
        if name != "relu" or relu_mode == "gd":
            acts.append(get_activation(name))
        elif relu_mode == "softplus":
            acts.append(Activation(
                "softplus_t",
                lambda a, t=t: t * jax.nn.softplus(a / t),
                lambda a, t=t: jax.nn.sigmoid(a / t),
            ))
        elif relu_mode == "complementarity":
            acts.append(Activation(
                "compl_t",
                lambda a, t=t: 0.5 * (a + jnp.sqrt(a * a + 4.0 * t * t)),
                lambda a, t=t: 0.5 * (1.0 + a / jnp.sqrt(a * a + 4.0 * t * t)),
            ))
        else:  # pragma: no cover - validated by the caller
            raise ValueError(relu_mode)
    return acts


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


class Terms(NamedTuple):
    """Residual pieces at a lifted point (all per sample, samples as rows)."""

    H: list  # constraint residuals H_j (m, d_j)
    D: list  # sigma_j'(a_j) (m, d_j)
    F: jax.Array  # output residual (m, O)
    Do: jax.Array  # sigma_out'(a_out) (m, O)


def terms(params, Z, X, Y, acts, out_act, c) -> Terms:
    """Evaluate H_j, sigma_j', F and sigma_out' at (theta, Z)."""
    H, D = [], []
    zprev = X
    for (W, b), act, Zj in zip(params[:-1], acts, Z):
        a = _affine(zprev, W, b)
        H.append(Zj - act.f(a))
        D.append(act.df(a))
        zprev = Zj
    W, b = params[-1]
    ao = _affine(zprev, W, b)
    return Terms(H, D, c * (out_act.f(ao) - Y), out_act.df(ao))


def merit(params, Z, X, Y, E_shift, s2, mu_w, acts, out_act, c):
    """Phi = 1/2 ||F||^2 + s^2/2 sum_j ||H_j + omega_j||^2 + mu_w/2 ||theta||^2 (= L_beta + const)."""
    t = terms(params, Z, X, Y, acts, out_act, c)
    return _merit_value(params, t, [Hj + Oj for Hj, Oj in zip(t.H, E_shift)], s2, mu_w)


def _merit_value(params, t: Terms, E: list, s2, mu_w):
    """Phi from the residual pieces, E_j = H_j + omega_j."""
    val = 0.5 * jnp.sum(t.F ** 2) + 0.5 * s2 * sum(jnp.sum(Ej ** 2) for Ej in E)
    if mu_w:
        val = val + 0.5 * mu_w * sum(jnp.sum(q ** 2) for q in jax.tree_util.tree_leaves(params))
    return val


def merit_value_and_grad(params, Z, X, t: Terms, E: list, s2, mu_w, c):
    """Phi (see `merit`) and its gradient from the residual pieces, without autodiff.

    With E_j = H_j + omega_j, g_o = c sigma_out' * F and e_j = sigma_j' * E_j (rows = samples):

        dPhi/dZ_j = s^2 E_j - s^2 e_{j+1} W_{j+1}     (j < L),   dPhi/dZ_L = s^2 E_L + g_o W_out
        dPhi/dW_j = -s^2 e_j^T Z_{j-1},  dPhi/db_j = -s^2 sum_i e_j,
        dPhi/dW_out = g_o^T Z_L,  dPhi/db_out = sum_i g_o,   plus mu_w theta on every parameter.

    Returns (Phi, grads shaped like params, [dPhi/dZ_j]).
    """
    L = len(Z)
    val = _merit_value(params, t, E, s2, mu_w)
    go = c * t.Do * t.F
    e = [Dj * Ej for Dj, Ej in zip(t.D, E)]
    gz = []
    for j in range(L):
        nxt = -s2 * (e[j + 1] @ params[j + 1][0]) if j + 1 < L else go @ params[-1][0]
        gz.append(s2 * E[j] + nxt)
    gp = []
    zprev = X
    for j, (W, b) in enumerate(params[:-1]):
        gp.append((-s2 * (e[j].T @ zprev), None if b is None else -s2 * jnp.sum(e[j], axis=0)))
        zprev = Z[j]
    gp.append((go.T @ zprev, None if params[-1][1] is None else jnp.sum(go, axis=0)))
    if mu_w:
        gp = jax.tree_util.tree_map(lambda g, q: g + mu_w * q, gp, params)
    return val, gp, gz


class Condensed(NamedTuple):
    """The per-sample elimination: costates n_j, delta_j = sigma_j' n_j, G, rh and R norms."""

    n: list  # (m, d_j, O)
    delta: list  # (m, d_j, O)
    G: jax.Array  # (m, O, O)
    Ginv: jax.Array  # (m, O, O)
    rh: jax.Array  # (m, O)
    Rsq: jax.Array  # (m,) ||R_i||^2


def condense(params, Z, t: Terms, E: list, s2, c) -> Condensed:
    """Per-sample null-space basis of J_Z^T (costates by a backward recursion), G_i^{-1}, rh_i."""
    L = len(Z)
    Wo = params[-1][0]
    O = Wo.shape[0]
    n = [None] * L
    n[L - 1] = c * jnp.einsum("mk,kp->mpk", t.Do, Wo)
    for j in range(L - 1, 0, -1):
        n[j - 1] = jnp.einsum("mpk,pq->mqk", t.D[j][:, :, None] * n[j], params[j][0])
    delta = [t.D[j][:, :, None] * n[j] for j in range(L)]
    G = jnp.eye(O)[None] + sum(jnp.einsum("mpk,mpl->mkl", nj, nj) for nj in n) / s2
    Ginv = jnp.linalg.inv(G) if O > 1 else 1.0 / G  # (m, O, O)
    rh = t.F - sum(jnp.einsum("mpk,mp->mk", nj, Ej) for nj, Ej in zip(n, E))
    Rsq = jnp.sum(t.F ** 2, axis=1) + s2 * sum(jnp.sum(Ej ** 2, axis=1) for Ej in E)
    return Condensed(n, delta, G, Ginv, rh, Rsq)


def reduced_jacobian(params, Z, X, t: Terms, cd: Condensed, c) -> jax.Array:
    """Jh (m, O, P): rows N_i^T J_theta^i in the order of ravel_pytree(params)."""
    L = len(Z)
    m, O = t.F.shape
    blocks = []
    zprev = X
    for j in range(L):
        dl = cd.delta[j]  # (m, d_j, O)
        blocks.append(jnp.einsum("mpk,mq->mkpq", dl, zprev).reshape(m, O, -1))
        if params[j][1] is not None:
            blocks.append(jnp.transpose(dl, (0, 2, 1)))
        zprev = Z[j]
    eye = jnp.eye(O)
    g = c * t.Do  # (m, O)
    blocks.append(jnp.einsum("mk,kl,mq->mklq", g, eye, zprev).reshape(m, O, -1))
    if params[-1][1] is not None:
        blocks.append(jnp.einsum("mk,kl->mkl", g, eye))
    return jnp.concatenate(blocks, axis=2)


def jh_matvec(params, Z, X, t: Terms, cd: Condensed, c, dparams) -> jax.Array:
    """Jh @ d_theta without forming Jh: (m, O)."""
    out = 0.0
    zprev = X
    for j, (dW, db) in enumerate(dparams[:-1]):
        u = _affine(zprev, dW, db)  # (m, d_j)
        out = out + jnp.einsum("mpk,mp->mk", cd.delta[j], u)
        zprev = Z[j]
    dW, db = dparams[-1]
    return out + c * t.Do * _affine(zprev, dW, db)


def jh_rmatvec(params, Z, X, t: Terms, cd: Condensed, c, w) -> list:
    """Jh^T @ w for w (m, O): the gradient-shaped (params-structured) result."""
    res = []
    zprev = X
    for j, (W, b) in enumerate(params[:-1]):
        gz = jnp.einsum("mpk,mk->mp", cd.delta[j], w)
        res.append((gz.T @ zprev, None if b is None else jnp.sum(gz, axis=0)))
        zprev = Z[j]
    gz = c * t.Do * w
    res.append((gz.T @ zprev, None if params[-1][1] is None else jnp.sum(gz, axis=0)))
    return res


def back_substitute(params, Z, X, t: Terms, cd: Condensed, E, s2, c, dparams, Jd) -> tuple:
    """States step d_Z from d_theta (forward substitution) and c_i = G_i^{-1}(rh_i + Jh_i d_theta)."""
    ci = jnp.einsum("mkl,ml->mk", cd.Ginv, cd.rh + Jd)
    dZ = []
    zprev = X
    for j, (dW, db) in enumerate(dparams[:-1]):
        v = -E[j] + t.D[j] * _affine(zprev, dW, db) - jnp.einsum("mpk,mk->mp", cd.n[j], ci) / s2
        if j > 0:
            v = v + t.D[j] * (dZ[j - 1] @ params[j][0].T)
        dZ.append(v)
        zprev = Z[j]
    return dZ, ci
