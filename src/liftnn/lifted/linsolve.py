"""Structured linear solves for the reduced (states-eliminated) Gauss-Newton system.

After eliminating every sample's states (liftnn.lifted.gauss_newton), the weight step solves

    M d = -g,   M = sum_i Jh_i^T G_i^{-1} Jh_i + cc I,   g = sum_i Jh_i^T G_i^{-1} rh_i + mu_w theta,

with Jh_i of size O x P (O outputs, P weights) and cc = mu_w + damping.  Three exact modes:

- "primal": form the P x P matrix M (cost m O P^2, linear in m) and factor it by Cholesky.
- "dual":   when m O < P, the push-through identity gives the same step from the m O x m O system
            K = Jh Jh^T + cc blockdiag(G):  d = -Jh^T K^{-1} (rh - (mu_w/cc) Jh theta) - (mu_w/cc) theta
            (cost (m O)^2 P; used only while m O < P, so it is bounded by the primal cost).
- "cg":     matrix-free preconditioned conjugate gradients with products Jh v and Jh^T w (each
            one forward / backward sweep over the samples) and the per-neuron blocks of M
            ((d_{j-1} + 1)^2 each) as a block-Jacobi preconditioner; for large networks.

"auto" picks dual if m O < P and m O <= DIRECT_MAX_P, else primal if P <= DIRECT_MAX_P, else cg;
for the cross-entropy (ce) primal also needs its assembly work m O P^2 <= CE_PRIMAL_MAX_WORK
(classification has O = the number of classes, e.g. digits 64-16-10: m O P^2 = 2e10 per step,
where cg's products cost about m P each), else cg.
`dense_reference_step` solves the full lifted system densely (tests only); for the cross-entropy
`dense_ggn_reference_step` the full lifted generalised Gauss-Newton system, built from JAX's own
Hessian of the loss in the logits (independent of liftnn.lifted.output's factor).  Every solve takes the
`Linearisation` of liftnn.lifted.gauss_newton; the three solves are derived in docs/lifted.md.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from liftnn.lifted import gauss_newton as gnm
from liftnn.problem import has_weight_decay

SOLVERS = ("auto", "primal", "dual", "cg")
DIRECT_MAX_P = 4000
CE_PRIMAL_MAX_WORK = 1e9
REL_FLOOR = 1e-12


def choose(solver: str, m: int, O: int, P: int, ce: bool = False) -> str:
    """Resolve "auto" by size (static: shapes only); ce: the cross-entropy's rule for primal."""
    if solver != "auto":
        return solver
    if m * O < P and m * O <= DIRECT_MAX_P:
        return "dual"
    if ce and m * O * P * P > CE_PRIMAL_MAX_WORK:
        return "cg"
    return "primal" if P <= DIRECT_MAX_P else "cg"


def _chol_solve(K, rhs):
    Lc = jnp.linalg.cholesky(K)
    return jax.scipy.linalg.cho_solve((Lc, True), rhs)


def solve_primal(lin: gnm.Linearisation, theta, mu_w, cc):
    """d = -M^{-1} g with M formed explicitly (P x P)."""
    cd = lin.condensed
    Jh = gnm.reduced_jacobian(lin)
    WJ = jnp.einsum("mkl,mlp->mkp", cd.Ginv, Jh)
    M = jnp.einsum("mkp,mkq->pq", Jh, WJ)
    g = jnp.einsum("mkp,mk->p", WJ, cd.rh) + mu_w * theta
    floor = REL_FLOOR * jnp.maximum(jnp.mean(jnp.diag(M)), 1e-300)
    M = M + jnp.maximum(cc, floor) * jnp.eye(M.shape[0])
    return -_chol_solve(M, g), jnp.int32(1)


def _with_one(z, bias):
    return z if bias is None else jnp.concatenate([z, jnp.ones((z.shape[0], 1), z.dtype)], axis=1)


def dual_gram(lin: gnm.Linearisation):
    """K0 = Jh Jh^T (m O x m O) without forming Jh.

    Each row of Jh is, per layer, a Kronecker product delta_j[i, :, k] (x) [z_{j-1, i}; 1], so
    <Jh_(i,k), Jh_(i',k')> = sum_j (delta_j[i,:,k] . delta_j[i',:,k']) ([z_i; 1] . [z_i'; 1]):
    a sum of Hadamard products of small Gram matrices, cost O(m^2 (S + sum_j d_j) O^2).
    """
    params, cd = lin.params, lin.condensed
    m, O = lin.terms.F.shape
    K = jnp.zeros((m, O, m, O))
    zprev = lin.X
    for j, (W, b) in enumerate(params[:-1]):
        zh = _with_one(zprev, b)
        K = K + jnp.einsum("ipk,jpl->ikjl", cd.delta[j], cd.delta[j]) * (zh @ zh.T)[:, None, :, None]
        zprev = lin.Z[j]
    zh = _with_one(zprev, params[-1][1])
    if lin.terms.B is not None:  # cross-entropy: (B_i B_i'^T)[k, l] ([z_i; 1] . [z_i'; 1])
        B = lin.terms.B
        K = K + jnp.einsum("ika,jla->ikjl", B, B) * (zh @ zh.T)[:, None, :, None]
        return K.reshape(m * O, m * O)
    g = lin.c * lin.terms.Do
    K = K + jnp.einsum("ik,jk,kl->ikjl", g, g, jnp.eye(O)) * (zh @ zh.T)[:, None, :, None]
    return K.reshape(m * O, m * O)


def solve_dual(lin: gnm.Linearisation, theta, mu_w, cc):
    """Same step from the (m O) x (m O) system (push-through identity), for m O < P.

    d = -Jh^T K^{-1} (rh - (mu_w/cc) Jh theta) - (mu_w/cc) theta,  K = Jh Jh^T + cc blockdiag(G);
    Jh is never formed (dual_gram, jh_matvec, jh_rmatvec).
    """
    cd = lin.condensed
    m, O = lin.terms.F.shape
    K = dual_gram(lin)
    floor = REL_FLOOR * jnp.maximum(jnp.mean(jnp.diag(K)), 1e-300)
    ce = jnp.maximum(cc, floor)
    Gblk = jax.scipy.linalg.block_diag(*[cd.G[i] for i in range(m)]) if O > 1 else jnp.diag(cd.G[:, 0, 0])
    K = K + ce * Gblk
    ratio = mu_w / ce
    rhs = cd.rh
    if has_weight_decay(mu_w):
        rhs = rhs - ratio * gnm.jh_matvec(lin, lin.params)
    y = _chol_solve(K, rhs.reshape(-1)).reshape(m, O)
    step = ravel_pytree(gnm.jh_rmatvec(lin, y))[0]
    return -step - ratio * theta, jnp.int32(1)


def _neuron_blocks(lin: gnm.Linearisation, cc):
    """Per-neuron diagonal blocks of M: for layer j, neuron p, sum_i w_ip zh_i zh_i^T (+ cc I)."""
    params, cd = lin.params, lin.condensed
    blocks = []
    zprev = lin.X
    for j, (W, b) in enumerate(params):
        if j < len(params) - 1:
            dl = cd.delta[j]  # (m, d_j, O)
            w = jnp.einsum("mpk,mkl,mpl->mp", dl, cd.Ginv, dl)
        elif lin.terms.B is not None:  # cross-entropy: (B_i^T G_i^{-1} B_i)[l, l]
            B = lin.terms.B
            w = jnp.einsum("mkl,mkj,mjl->ml", B, cd.Ginv, B)
        else:
            g = lin.c * lin.terms.Do
            w = g * g * jnp.einsum("mkk->mk", cd.Ginv)
        zh = zprev if b is None else jnp.concatenate([zprev, jnp.ones((zprev.shape[0], 1))], axis=1)
        B = jnp.einsum("mp,mq,mr->pqr", w, zh, zh) + cc * jnp.eye(zh.shape[1])[None]
        blocks.append(jnp.linalg.cholesky(B))
        if j < len(params) - 1:
            zprev = lin.Z[j]
    return blocks


def _apply_blocks(blocks, tree):
    out = []
    for Lc, (W, b) in zip(blocks, tree):
        R = W if b is None else jnp.concatenate([W, b[:, None]], axis=1)  # (d_j, d_{j-1}+1)
        S = jax.vmap(lambda L_, r: jax.scipy.linalg.cho_solve((L_, True), r))(Lc, R)
        out.append((S, None) if b is None else (S[:, :-1], S[:, -1]))
    return out


def solve_cg(lin: gnm.Linearisation, theta, mu_w, cc, tol=1e-10, max_iter=None):
    """Matrix-free PCG on M d = -g with block-Jacobi (per-neuron) preconditioning."""
    _, unravel = ravel_pytree(lin.params)
    cd = lin.condensed
    P = theta.shape[0]
    max_iter = max_iter or min(3 * P, 1000)
    floor = 1e-12
    cc = jnp.maximum(cc, floor)

    def flat(tree):
        return ravel_pytree(tree)[0]

    def Mv(v):
        Jd = gnm.jh_matvec(lin, unravel(v))
        w = jnp.einsum("mkl,ml->mk", cd.Ginv, Jd)
        return flat(gnm.jh_rmatvec(lin, w)) + cc * v

    g = flat(gnm.jh_rmatvec(lin, jnp.einsum("mkl,ml->mk", cd.Ginv, cd.rh))) + mu_w * theta
    blocks = _neuron_blocks(lin, cc)

    def precond(r):
        return flat(_apply_blocks(blocks, unravel(r)))

    b = -g
    x0 = jnp.zeros_like(b)
    r0 = b
    z0 = precond(r0)
    bnorm = jnp.linalg.norm(b)

    def cond(s):
        _x, r, _z, _p, _rz, k = s
        return (k < max_iter) & (jnp.linalg.norm(r) > tol * bnorm)

    def body(s):
        x, r, z, p, rz, k = s
        Ap = Mv(p)
        alpha = rz / jnp.vdot(p, Ap)
        x = x + alpha * p
        r = r - alpha * Ap
        z = precond(r)
        rz_new = jnp.vdot(r, z)
        p = z + (rz_new / rz) * p
        return x, r, z, p, rz_new, k + 1

    x, *_, k = jax.lax.while_loop(cond, body, (x0, r0, z0, z0, jnp.vdot(r0, z0), jnp.int32(0)))
    return x, k


def reduced_step(mode: str, lin: gnm.Linearisation, damping: float):
    """Weight step d_theta (flat, in the order of ravel_pytree(params)) and the number of
    linear-solver iterations, from the reduced system with cc = mu_w + damping."""
    theta = ravel_pytree(lin.params)[0]
    mu_w = lin.mu_w
    cc = mu_w + damping
    if mode == "cg":
        return solve_cg(lin, theta, mu_w, cc)
    if mode == "dual":
        return solve_dual(lin, theta, mu_w, cc)
    return solve_primal(lin, theta, mu_w, cc)


def dense_terms(prob: gnm.AugmentedLSQ, params, Z) -> tuple:
    """(u0, unravel, P, F, JF, H, JH) at the lifted point u0 = (theta, Z), theta its first P
    entries: the output residuals F and the stacked constraint residuals H (flattened) and their
    dense Jacobians.  Only for small problems: the references the tests check steps against."""
    u0, unravel = ravel_pytree((params, Z))
    P = ravel_pytree(params)[0].shape[0]

    def FH(u):
        p, z = unravel(u)
        tt = gnm.terms(p, z, prob.X, prob.Y, prob.acts, prob.out_act, prob.c)
        return tt.F.reshape(-1), jnp.concatenate([h.reshape(-1) for h in tt.H])

    F, H = FH(u0)
    JF, JH = jax.jacfwd(FH)(u0)
    return u0, unravel, P, F, JF, H, JH


def dense_reference_step(prob: gnm.AugmentedLSQ, params, Z, damping):
    """The full lifted GN step by a dense solve of (J^T J + D) d = -(J^T R + mu_w [theta; 0]),
    R = [F; sqrt(s2) (H + omega)].

    D = (mu_w + damping) on the weights, 0 on the states.  Only for small problems (tests).
    """
    u0, unravel, P, F, JF, H, JH = dense_terms(prob, params, Z)
    omega = jnp.concatenate([o.reshape(-1) for o in prob.omega])
    r = jnp.concatenate([F, jnp.sqrt(prob.s2) * (H + omega)])
    J = jnp.concatenate([JF, jnp.sqrt(prob.s2) * JH])
    dvec = jnp.zeros(u0.shape[0]).at[:P].set(prob.mu_w + damping)
    g = J.T @ r + jnp.zeros_like(u0).at[:P].set(prob.mu_w * u0[:P])
    d = -jnp.linalg.solve(J.T @ J + jnp.diag(dvec), g)
    return unravel(d)


def dense_ggn_terms(prob: gnm.AugmentedLSQ, params, Z) -> tuple:
    """(u0, unravel, P, A, b, H, JH) at u0 = (theta, Z) for the cross-entropy (tests only): the
    dense GGN of the loss term, A = J_o^T (d^2 C / da^2) J_o and b = J_o^T dC/da (a: the logits
    (m O,), J_o = da/du; the Hessian by jax.hessian of liftnn.models.losses.cross_entropy), and
    the stacked constraint residuals H with their Jacobian JH."""
    from liftnn.models.losses import cross_entropy

    u0, unravel = ravel_pytree((params, Z))
    P = ravel_pytree(params)[0].shape[0]
    m, O = prob.Y.shape

    def logits(u):
        p, z = unravel(u)
        return gnm._affine(z[-1], *p[-1]).reshape(-1)

    def Hres(u):
        p, z = unravel(u)
        tt = gnm.terms(p, z, prob.X, prob.Y, prob.acts, prob.out_act, prob.c)
        return jnp.concatenate([h.reshape(-1) for h in tt.H])

    def loss(a):
        return cross_entropy(a.reshape(m, O), prob.Y)

    a0, Jo = logits(u0), jax.jacfwd(logits)(u0)
    A = Jo.T @ jax.hessian(loss)(a0) @ Jo
    return u0, unravel, P, A, Jo.T @ jax.grad(loss)(a0), Hres(u0), jax.jacfwd(Hres)(u0)


def dense_ggn_reference_step(prob: gnm.AugmentedLSQ, params, Z, damping):
    """The full lifted GGN step of the cross-entropy augmented Lagrangian by a dense solve of
    (A + s2 JH^T JH + D) d = -(b + s2 JH^T (H + omega) + mu_w [theta; 0]) (A, b: dense_ggn_terms;
    D as dense_reference_step).  Only for small problems (tests)."""
    u0, unravel, P, A, b, H, JH = dense_ggn_terms(prob, params, Z)
    omega = jnp.concatenate([o.reshape(-1) for o in prob.omega])
    dvec = jnp.zeros(u0.shape[0]).at[:P].set(prob.mu_w + damping)
    g = b + prob.s2 * JH.T @ (H + omega) + jnp.zeros_like(u0).at[:P].set(prob.mu_w * u0[:P])
    d = -jnp.linalg.solve(A + prob.s2 * JH.T @ JH + jnp.diag(dvec), g)
    return unravel(d)
