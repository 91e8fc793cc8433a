"""Curvature diagnostics: Hessian products, spectra, condition numbers, step-size bounds.

Seed 003 ("On the Hessian H"): H is positive definite iff all its eigenvalues are > 0; near saddle
points the regularised H + alpha I is used (Levenberg-Marquardt); a few large eigenvalues make the
problem ill-conditioned, and a single learning rate must satisfy eta < 2 / lambda_max to avoid
divergence; the principal eigenvalue is found without forming H (the power method), and "in many
methods all we need is the product of H with a vector".  Seed 004 ("condition of the Hessian"):
condition = largest EV / smallest EV; in neural networks 1e10 is not uncommon.

Functions take a scalar function f(theta) of a vector theta: (n,) (the Hessian is that of f at
theta), or, where they say so, an explicit symmetric matrix / a matvec, or a TrainingProblem and
its params (network tools).  Everything is float64.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg as sla

from liftnn._validate import check_choice, check_positive
from liftnn.errors import LiftnnError

DENSE_MAX = 2000  # largest n for which full Hessians / dense spectra are formed by default


# ---- products and matrices ----------------------------------------------------------------
def _theta(theta) -> jax.Array:
    t = jnp.asarray(theta, jnp.float64)
    if t.ndim != 1 or t.size == 0:
        raise LiftnnError(f"theta must be a non-empty vector (n,); got shape {t.shape}")
    if not bool(jnp.all(jnp.isfinite(t))):
        raise LiftnnError("theta contains non-finite values")
    return t


def hvp(f: Callable, theta, v) -> jax.Array:
    """Hessian-vector product H(theta) v = d/de grad f(theta + e v) |_{e=0} (forward-over-reverse).

    One jax.jvp of jax.grad: about the cost of two gradients, H never formed (seed 003).
    theta, v: (n,).  Returns (n,).
    """
    theta = jnp.asarray(theta, jnp.float64)
    v = jnp.asarray(v, jnp.float64)
    return jax.jvp(jax.grad(f), (theta,), (v,))[1]


def hvp_operator(f: Callable, theta) -> Callable[[np.ndarray], np.ndarray]:
    """A jitted v -> H(theta) v on NumPy vectors (n,) -> (n,), for the iterative eigensolvers."""
    theta = _theta(theta)
    mv = jax.jit(lambda v: hvp(f, theta, v))
    return lambda v: np.asarray(mv(jnp.asarray(v, jnp.float64)))


def hessian(f: Callable, theta, max_n: int = DENSE_MAX) -> np.ndarray:
    """Full Hessian H_ij = d^2 f / dtheta_i dtheta_j, (n, n), symmetrised (H + H^T)/2.

    jax.hessian (forward-over-reverse); for small problems only (n <= max_n), since it costs n
    Hessian-vector products and n^2 memory.
    """
    theta = _theta(theta)
    if theta.size > max_n:
        raise LiftnnError(f"n = {theta.size} > max_n = {max_n}: use hvp / lanczos instead of the "
                          "full Hessian (or raise max_n)")
    H = np.asarray(jax.jit(jax.hessian(f))(theta), np.float64)
    return 0.5 * (H + H.T)


def gauss_newton_matrix(residual: Callable, theta) -> np.ndarray:
    """Gauss-Newton matrix G = J^T J, J = dr/dtheta (m, n), for f = 1/2 ||r||^2; returns (n, n).

    G is the Hessian of f without the term sum_i r_i nabla^2 r_i, so G == H at a zero-residual
    minimiser; G is always positive semidefinite (seed 003, "square Jacobian").
    """
    theta = _theta(theta)
    J = np.asarray(jax.jit(jax.jacfwd(residual))(theta), np.float64)
    if J.ndim != 2:
        raise LiftnnError(f"residual must return a vector; its Jacobian has shape {J.shape}")
    return J.T @ J


def gnvp(residual: Callable, theta, v) -> jax.Array:
    """G v = J^T (J v) without forming J (one jvp + one vjp).  theta, v: (n,) -> (n,)."""
    theta = jnp.asarray(theta, jnp.float64)
    _, jv = jax.jvp(residual, (theta,), (jnp.asarray(v, jnp.float64),))
    _, vjp = jax.vjp(residual, theta)
    return vjp(jv)[0]


def hessian_diag(f: Callable, theta, method: str = "exact", n_samples: int = 64, seed: int = 0,
                 chunk: int = 256) -> np.ndarray:
    """Diagonal of H, (n,).

    method="exact": H_ii = e_i^T H e_i from n Hessian-vector products with unit vectors (batched
    with vmap, `chunk` at a time).  method="hutchinson": the unbiased estimate
    diag(H) ~ (1/S) sum_s v_s * (H v_s) with S = n_samples Rademacher vectors v_s (entries +-1),
    for large n (seed 003: "just compute the diagonal of H").
    """
    check_choice("method", method, ("exact", "hutchinson"))
    theta = _theta(theta)
    n = theta.size
    batched = jax.jit(jax.vmap(lambda v: hvp(f, theta, v)))
    if method == "exact":
        out = np.empty(n)
        for s in range(0, n, int(chunk)):
            idx = np.arange(s, min(n, s + int(chunk)))
            E = np.zeros((idx.size, n))
            E[np.arange(idx.size), idx] = 1.0
            out[idx] = np.asarray(batched(jnp.asarray(E)))[np.arange(idx.size), idx]
        return out
    if int(n_samples) < 1:
        raise LiftnnError(f"n_samples must be >= 1; got {n_samples}")
    V = np.random.default_rng(seed).choice([-1.0, 1.0], size=(int(n_samples), n))
    HV = np.asarray(batched(jnp.asarray(V)))
    return np.mean(V * HV, axis=0)


def fd_hessian(f: Callable, theta, eps: float | None = None) -> np.ndarray:
    """Finite-difference Hessian from central differences of the gradient, (n, n), symmetrised:

        H[:, i] ~ (grad f(theta + h_i e_i) - grad f(theta - h_i e_i)) / (2 h_i),
        h_i = eps * max(1, |theta_i|),  eps = machine_eps^(1/3) ~ 6e-6 by default

    (truncation O(h^2) balances rounding O(eps_mach / h)); seed 003's "finite differences".
    """
    theta = _theta(theta)
    e = float(np.finfo(np.float64).eps ** (1.0 / 3.0)) if eps is None else check_positive("eps", eps)
    h = e * np.maximum(1.0, np.abs(np.asarray(theta)))
    P = np.diag(h)
    g = jax.jit(jax.vmap(jax.grad(f)))
    Gp = np.asarray(g(theta[None, :] + jnp.asarray(P)))
    Gm = np.asarray(g(theta[None, :] - jnp.asarray(P)))
    H = ((Gp - Gm) / (2.0 * h[:, None])).T  # column i from row i of the batch
    return 0.5 * (H + H.T)


# ---- eigenvalues --------------------------------------------------------------------------
class EigResult(NamedTuple):
    """One eigenpair estimate: value, unit vector (n,), iterations, converged flag and the
    residual norm ||A v - value v||."""

    value: float
    vector: np.ndarray
    n_iter: int
    converged: bool
    residual: float


class LanczosResult(NamedTuple):
    """Ritz values (ascending, (k,)), Ritz vectors (n, k), residual bounds |beta_k s_{k,i}| (k,),
    and the tridiagonal T's diagonal alpha (k,) and off-diagonal beta (k-1,)."""

    values: np.ndarray
    vectors: np.ndarray
    residuals: np.ndarray
    alpha: np.ndarray
    beta: np.ndarray


def _operator(f, theta, matvec, n):
    """Resolve (f, theta) | symmetric matrix f | explicit matvec into (v -> A v, n)."""
    if matvec is not None:
        if n is None:
            if theta is None:
                raise LiftnnError("give n (or theta) together with matvec")
            n = int(np.size(theta))
        return (lambda v: np.asarray(matvec(v), np.float64)), int(n)
    if hasattr(f, "shape") and len(getattr(f, "shape", ())) == 2 and not callable(f):
        A = f
        if A.shape[0] != A.shape[1]:
            raise LiftnnError(f"the matrix must be square; got shape {A.shape}")
        return (lambda v: np.asarray(A @ v, np.float64).reshape(-1)), int(A.shape[0])
    if not callable(f):
        raise LiftnnError("f must be a scalar function of theta, a square matrix, or give matvec")
    theta = _theta(theta)
    return hvp_operator(f, theta), int(theta.size)


def _start(n, seed):
    v = np.random.default_rng(seed).standard_normal(n)
    return v / np.linalg.norm(v)


def power_iteration(f=None, theta=None, *, matvec=None, n=None, shift: float = 0.0,
                    max_iter: int = 1000, tol: float = 1e-8, seed: int = 0) -> EigResult:
    """Power iteration on A - shift I: the eigenvalue of A whose distance to `shift` is largest.

        v <- (A - shift I) v / ||(A - shift I) v||,   mu = v^T (A - shift I) v  (Rayleigh quotient)

    stopping when ||(A - shift I) v - mu v|| <= tol |mu|; returns mu + shift.  The error shrinks
    like |lambda_2 / lambda_1|^k (seed 003: the principal eigenvalue without forming H).
    A is H(theta) of f (via HVPs), a symmetric matrix passed as f, or `matvec` with size n.
    """
    op, n = _operator(f, theta, matvec, n)
    v = _start(n, seed)
    mu, res = 0.0, np.inf
    for it in range(1, int(max_iter) + 1):
        w = op(v) - shift * v
        mu = float(v @ w)
        res = float(np.linalg.norm(w - mu * v))
        nw = float(np.linalg.norm(w))
        if nw == 0.0:  # v in the null space of A - shift I
            return EigResult(shift, v, it, True, 0.0)
        if res <= tol * abs(mu):
            return EigResult(mu + shift, v, it, True, res)
        v = w / nw
    return EigResult(mu + shift, v, int(max_iter), False, res)


def lambda_max(f=None, theta=None, *, matvec=None, n=None, max_iter: int = 1000,
               tol: float = 1e-8, seed: int = 0) -> EigResult:
    """Largest (algebraic) eigenvalue by power iteration.

    Plain power iteration finds the eigenvalue of largest modulus lambda_d.  If it is positive it
    is lambda_max; otherwise iterate again on A - lambda_d I (spectrum shifted into [0, ...]),
    whose dominant eigenvalue is lambda_max - lambda_d.
    """
    op, n = _operator(f, theta, matvec, n)
    r = power_iteration(matvec=op, n=n, max_iter=max_iter, tol=tol, seed=seed)
    if r.value > 0 and r.converged:
        return r
    return power_iteration(matvec=op, n=n, shift=-abs(r.value), max_iter=max_iter, tol=tol,
                           seed=seed + 1)


def lambda_min(f=None, theta=None, *, matvec=None, n=None, lam_max: float | None = None,
               max_iter: int = 5000, tol: float = 1e-8, seed: int = 0) -> EigResult:
    """Smallest (algebraic) eigenvalue by shifted power iteration on A - lambda_max I.

    The shifted spectrum lies in [lambda_min - lambda_max, 0], so its dominant eigenvalue is
    lambda_min - lambda_max.  Converges slowly when the bottom of the spectrum is clustered (use
    `lanczos` then).  lam_max: a known lambda_max (computed with `lambda_max` if None).
    """
    op, n = _operator(f, theta, matvec, n)
    if lam_max is None:
        lam_max = lambda_max(matvec=op, n=n, tol=tol, seed=seed).value
    return power_iteration(matvec=op, n=n, shift=float(lam_max), max_iter=max_iter, tol=tol,
                           seed=seed + 2)


def lanczos(f=None, theta=None, k: int | None = None, *, matvec=None, n=None, seed: int = 0,
            breakdown_tol: float = 1e-12) -> LanczosResult:
    """Lanczos tridiagonalisation with full reorthogonalisation; Ritz values of A.

        beta_j q_{j+1} = A q_j - alpha_j q_j - beta_{j-1} q_{j-1},   alpha_j = q_j^T A q_j,

    with every new q re-orthogonalised (twice, Gram-Schmidt) against all previous ones, so the
    Ritz values of T_k = tridiag(beta, alpha, beta) have no spurious copies.  The extreme Ritz
    values converge first (lambda_min and lambda_max after a few dozen steps); with k = n they
    are the whole spectrum.  Memory k n, work k matvecs + O(k^2 n).  Stops early (invariant
    subspace) when beta_j < breakdown_tol * ||T||.  k defaults to min(n, 100).
    """
    op, n = _operator(f, theta, matvec, n)
    k = min(n, 100) if k is None else int(k)
    if not 1 <= k <= n:
        raise LiftnnError(f"k must be in 1..n = {n}; got {k}")
    Q = np.zeros((k, n))
    alpha, beta = [], []
    q = _start(n, seed)
    scale = 0.0
    for j in range(k):
        Q[j] = q
        w = op(q)
        a = float(q @ w)
        alpha.append(a)
        w = w - a * q - (beta[-1] * Q[j - 1] if j > 0 else 0.0)
        for _ in range(2):  # full reorthogonalisation
            w -= Q[:j + 1].T @ (Q[:j + 1] @ w)
        b = float(np.linalg.norm(w))
        scale = max(scale, abs(a), b)
        if j == k - 1:
            beta.append(b)
            break
        if b <= breakdown_tol * max(scale, 1e-300):
            beta.append(b)
            break
        beta.append(b)
        q = w / b
    m = len(alpha)
    al = np.array(alpha)
    be = np.array(beta[:m - 1])
    if m == 1:
        vals, S = al.copy(), np.ones((1, 1))
    else:
        vals, S = sla.eigh_tridiagonal(al, be)
    res = np.abs(beta[m - 1] * S[-1, :])
    return LanczosResult(vals, Q[:m].T @ S, res, al, be)


def spectrum(f, theta, *, method: str = "auto", k: int | None = None,
             dense_max: int = DENSE_MAX, seed: int = 0) -> tuple[np.ndarray, str]:
    """Eigenvalues of H(theta), ascending, and the method used.

    "dense": numpy.linalg.eigvalsh of the full Hessian (exact, n <= dense_max);
    "lanczos": k Ritz values (extremes accurate, interior ones a sketch); "auto": dense if
    n <= dense_max else lanczos with k = min(n, 200).
    """
    check_choice("method", method, ("auto", "dense", "lanczos"))
    theta = _theta(theta)
    n = theta.size
    if method == "auto":
        method = "dense" if n <= dense_max else "lanczos"
    if method == "dense":
        return np.linalg.eigvalsh(hessian(f, theta, max_n=max(dense_max, n))), "dense"
    res = lanczos(f, theta, k=min(n, 200) if k is None else k, seed=seed)
    return res.values, "lanczos"


def condition_number(eigenvalues, rtol: float | None = None) -> float:
    """kappa = max|lambda| / min|lambda| of a symmetric matrix (its 2-norm condition number).

    For a positive definite H this is lambda_max / lambda_min, seed 004's "largest EV / smallest
    EV"; for an indefinite H the moduli are used, since an eigenvalue near zero of either sign
    makes H nearly singular.  Returns inf when min|lambda| <= rtol * max|lambda| (numerically
    singular; rtol defaults to n * machine epsilon, as numpy.linalg.matrix_rank).
    """
    lam = np.abs(np.asarray(eigenvalues, np.float64).ravel())
    if lam.size == 0 or not np.all(np.isfinite(lam)):
        raise LiftnnError("condition_number needs a non-empty, finite set of eigenvalues")
    rtol = lam.size * np.finfo(np.float64).eps if rtol is None else float(rtol)
    top, bottom = lam.max(), lam.min()
    if top == 0.0 or bottom <= rtol * top:
        return float("inf")
    return float(top / bottom)


def is_positive_definite(H) -> bool:
    """True iff the symmetric matrix H (n, n) has a Cholesky factor, i.e. all eigenvalues > 0
    (seed 003: z^T H z > 0 for all z != 0)."""
    H = np.asarray(H, np.float64)
    if H.ndim != 2 or H.shape[0] != H.shape[1]:
        raise LiftnnError(f"H must be a square matrix; got shape {H.shape}")
    if not np.all(np.isfinite(H)):
        raise LiftnnError("H contains non-finite values")
    try:
        np.linalg.cholesky(0.5 * (H + H.T))
    except np.linalg.LinAlgError:
        return False
    return True


def pd_shift(H, alpha0: float = 1e-3, factor: float = 10.0, max_tries: int = 60) -> float:
    """Smallest alpha in {0, alpha0, alpha0 * factor, ...} with H + alpha I positive definite.

    Seed 003: near saddle points use the regularised Hessian H_reg = H + alpha I (the
    Levenberg-Marquardt idea); the Cholesky test decides.  Raises if none is found.
    """
    check_positive("alpha0", alpha0)
    if float(factor) <= 1.0:
        raise LiftnnError(f"factor must be > 1; got {factor}")
    H = np.asarray(H, np.float64)
    if is_positive_definite(H):
        return 0.0
    alpha = float(alpha0)
    eye = np.eye(H.shape[0])
    for _ in range(int(max_tries)):
        if is_positive_definite(H + alpha * eye):
            return alpha
        alpha *= float(factor)
    raise LiftnnError(f"H + alpha I is not positive definite up to alpha = {alpha:g}")


def step_size_bound(lam_max: float) -> float:
    """Largest stable fixed gradient-descent step, eta < 2 / lambda_max (seed 003).

    On a quadratic, gd multiplies the error along eigenvector i by (1 - eta lambda_i); it
    diverges iff |1 - eta lambda_max| > 1.  Returns inf when lambda_max <= 0 (no upper bound
    from curvature).
    """
    lam = float(lam_max)
    if not np.isfinite(lam):
        raise LiftnnError(f"lambda_max must be finite; got {lam_max!r}")
    return float("inf") if lam <= 0.0 else 2.0 / lam


# ---- networks -----------------------------------------------------------------------------
def layer_gradient_norms(problem, params) -> list[dict]:
    """Per-layer gradient norms of the training objective C (TrainingProblem.objective).

    For each layer j = 1..L: ||dC/dW_j||_F, ||dC/db_j|| (None without biases) and ||W_j||_F.
    Norms shrinking towards the input layer show vanishing gradients, growing ones exploding
    gradients (seed 003: "lower layers going slow, last layer going faster").
    """
    grads = jax.jit(jax.grad(problem.objective))(params)
    out = []
    for j, ((gW, gb), (W, _)) in enumerate(zip(grads, params), start=1):
        out.append({
            "layer": j,
            "shape": [int(s) for s in np.shape(W)],
            "weight_grad_norm": float(jnp.linalg.norm(gW)),
            "bias_grad_norm": None if gb is None else float(jnp.linalg.norm(gb)),
            "weight_norm": float(jnp.linalg.norm(W)),
        })
    return out


def curvature_report(problem, params, *, method: str = "auto", k: int | None = None,
                     seed: int = 0) -> dict:
    """Everything `liftnn inspect --hessian` prints, for a TrainingProblem at params.

    Keys: n_params, loss, grad_norm, lambda_max, lambda_min, lambda_max_power (power-iteration
    estimate, a cross-check), power_iters, condition_number (inf if singular), singular,
    condition_exact (False with Lanczos: Ritz values miss interior eigenvalues near zero, so the
    condition number is then a lower bound),
    positive_definite (Cholesky of H when dense; lambda_min > 0 from Lanczos otherwise),
    n_negative / n_zero / n_positive (eigenvalues below -tol, within +-tol, above tol, with
    tol = n eps max|lambda|: numerically zero ones are not counted as negative), eta_bound = 2 / lambda_max, method, eigenvalues (ascending), layers.
    """
    theta = _theta(problem.flatten(params))
    f = problem.fun
    check_choice("method", method, ("auto", "dense", "lanczos"))
    loss, g = jax.jit(jax.value_and_grad(f))(theta)
    used = method if method != "auto" else ("dense" if theta.size <= DENSE_MAX else "lanczos")
    if used == "dense":
        H = hessian(f, theta, max_n=theta.size)
        eig = np.linalg.eigvalsh(H)
        pd = is_positive_definite(H)
    else:
        eig = lanczos(f, theta, k=min(theta.size, 200) if k is None else k, seed=seed).values
        pd = bool(eig[0] > 0)
    pw = lambda_max(f, theta, seed=seed, max_iter=500)
    cond = condition_number(eig)
    tol = eig.size * np.finfo(np.float64).eps * float(np.max(np.abs(eig)))
    return {
        "n_params": int(theta.size),
        "loss": float(loss),
        "grad_norm": float(jnp.linalg.norm(g)),
        "lambda_max": float(eig[-1]),
        "lambda_min": float(eig[0]),
        "lambda_max_power": float(pw.value),
        "power_iters": int(pw.n_iter),
        "condition_number": cond,
        "singular": bool(np.isinf(cond)),
        "condition_exact": used == "dense",
        "positive_definite": bool(pd),
        "n_negative": int(np.sum(eig < -tol)),
        "n_zero": int(np.sum(np.abs(eig) <= tol)),
        "n_positive": int(np.sum(eig > tol)),
        "eta_bound": step_size_bound(float(eig[-1])),
        "method": used,
        "eigenvalues": np.asarray(eig),
        "layers": layer_gradient_norms(problem, params),
    }


def plot_spectrum(eigenvalues, path, title: str = "Hessian spectrum") -> Path:
    """Save a two-panel PNG: stem plot of |lambda_i| (log scale; positive blue, negative red) in
    ascending order, and a histogram of log10 |lambda_i| split by sign."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lam = np.sort(np.asarray(eigenvalues, np.float64).ravel())
    if lam.size == 0:
        raise LiftnnError("no eigenvalues to plot")
    path = Path(path)
    if path.parent and not path.parent.exists():
        raise LiftnnError(f"cannot write {path}: folder {path.parent} does not exist")
    tiny = max(np.abs(lam).max(), 1e-300) * 1e-18
    mag = np.maximum(np.abs(lam), tiny)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    idx = np.arange(lam.size)
    for sel, colour, label in ((lam >= 0, "tab:blue", "lambda >= 0"), (lam < 0, "tab:red", "lambda < 0")):
        if sel.any():
            a1.vlines(idx[sel], tiny, mag[sel], color=colour, lw=0.8, label=label)
            a1.plot(idx[sel], mag[sel], "o", color=colour, ms=2.5)
    a1.set_yscale("log")
    a1.set_xlabel("index (ascending lambda)")
    a1.set_ylabel("|lambda|")
    a1.legend(fontsize=8, loc="upper center")
    logs = np.log10(mag)
    bins = np.linspace(logs.min(), logs.max() + 1e-9, 30)
    a2.hist([logs[lam >= 0], logs[lam < 0]], bins=bins, color=["tab:blue", "tab:red"],
            label=["lambda >= 0", "lambda < 0"], stacked=True)
    a2.set_xlabel("log10 |lambda|")
    a2.set_ylabel("count")
    a2.legend(fontsize=8)
    fig.suptitle(f"{title} (n = {lam.size}, lambda in [{lam[0]:.3g}, {lam[-1]:.3g}])", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
