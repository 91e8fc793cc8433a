"""The effective number of parameters gamma = P - alpha tr(A^-1), A = beta J^T J + alpha I, in
the three ways the reduced weight solve of liftnn.lifted.linsolve works (docs/bayes.md, "Three
traces").

J (N x P) is the single-shooting output Jacobian of a network at its weights: at a feasible lifted
point the exactly condensed reduced system of alm / lifted-gn is this Gauss-Newton matrix
(docs/lifted.md), so the trace is the one the lifted solve's factor would give.

- "primal": the Cholesky factor L of A (P x P): tr(A^-1) = ||L^-1||_F^2;
- "dual": the push-through identity, only an N x N factor:
  tr((alpha I_P + beta J^T J)^-1) = (P - N) / alpha + tr((alpha I_N + beta J J^T)^-1);
- "pcg": Hutchinson's estimate of gamma = tr(beta J A^-1 J^T) = E[z^T beta J A^-1 J^T z] over
  Rademacher probes z in R^N, each A^-1 (J^T z) by conjugate gradients
  (jax.scipy.sparse.linalg.cg) on v -> beta J^T (J v) + alpha v through jax.jvp and jax.vjp of the
  network: J is never formed, memory O(N + P) per probe.  The matrix's eigenvalues
  beta lambda / (beta lambda + alpha) lie in [0, 1), so the estimate's variance is at most about
  2 gamma per probe; estimating tr(A^-1) instead and subtracting from P loses gamma, often a small
  difference of large numbers, in a variance of about 2 (P - gamma).  The result carries the
  standard error of the probe mean.

"auto" takes primal when P <= N, dual when N < P and N <= DENSE_MAX, else pcg.  liftnn.bayes
re-estimates from the eigenvalues of the smaller Gram matrix (which also give its log determinant);
this module is the route for networks whose Gram matrices are too large to form.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from liftnn._validate import check_choice
from liftnn.errors import LiftnnError

MODES = ("auto", "primal", "dual", "pcg")
#: the largest N x N (or P x P) system "auto" factorises densely
DENSE_MAX = 4000


class TraceResult(NamedTuple):
    gamma: float  # P - alpha tr(A^-1)
    trace: float  # tr(A^-1)
    mode: str  # the mode used ("primal", "dual", "pcg")
    std_error: float  # of gamma (0 for the exact modes; trace's is std_error / alpha)
    probes: int  # Hutchinson probes (0 for the exact modes)


def _output_fn(model, params):
    theta, unravel = ravel_pytree(params)

    def f(t, X):
        return model.apply(unravel(t), X).reshape(-1)

    return theta, f


def effective_params(model, params, X, alpha: float, beta: float, mode: str = "auto",
                     probes: int = 64, seed: int = 0, tol: float = 1e-10) -> TraceResult:
    """gamma and tr(A^-1) of A = beta J^T J + alpha I at `params` on X (m, d_in), J = d
    f_theta(X).ravel() / d theta (module docstring).  probes, seed, tol: pcg's number of
    Rademacher probes, their seed and the relative residual of each CG solve."""
    check_choice("trace mode", mode, MODES)
    if not (math.isfinite(alpha) and alpha > 0 and math.isfinite(beta) and beta > 0):
        raise LiftnnError(f"alpha and beta must be finite numbers > 0; got {alpha!r}, {beta!r}")
    if mode == "pcg" and int(probes) < 2:
        raise LiftnnError(f"pcg needs probes >= 2 (a standard error needs two); got {probes!r}")
    theta, f = _output_fn(model, params)
    X = jnp.asarray(X)
    P, N = int(theta.size), int(np.prod(jax.eval_shape(lambda t: f(t, X), theta).shape))
    if mode == "auto":
        mode = "primal" if P <= N else ("dual" if N <= DENSE_MAX else "pcg")
    if mode in ("primal", "dual"):
        J = np.asarray(jax.jacfwd(f)(theta, X))
        n = P if mode == "primal" else N
        G = J.T @ J if mode == "primal" else J @ J.T
        L = np.linalg.cholesky(beta * G + alpha * np.eye(n))
        Linv = np.linalg.solve(L, np.eye(n))  # tr((L L^T)^-1) = ||L^-1||_F^2
        trace = float(np.sum(Linv**2)) + (0.0 if mode == "primal" else (P - N) / alpha)
        return TraceResult(P - alpha * trace, trace, mode, 0.0, 0)
    return _hutchinson(f, theta, X, alpha, beta, int(probes), int(seed), float(tol), P)


def _hutchinson(f, theta, X, alpha, beta, probes, seed, tol, P) -> TraceResult:
    def g(t):
        return f(t, X)

    def gnvp(v):  # A v = beta J^T (J v) + alpha v, J never formed
        _, vjp = jax.vjp(g, theta)
        return beta * vjp(jax.jvp(g, (theta,), (v,))[1])[0] + alpha * v

    @jax.jit
    def quad(z):  # z^T beta J A^-1 J^T z
        w = jax.vjp(g, theta)[1](z)[0]
        x, _ = jax.scipy.sparse.linalg.cg(gnvp, w, tol=tol, maxiter=10 * P)
        return beta * (w @ x)

    N = int(jax.eval_shape(g, theta).shape[0])
    zs = np.random.default_rng(seed).choice([-1.0, 1.0], size=(probes, N))
    vals = np.array([float(quad(jnp.asarray(z))) for z in zs])
    gamma, se = float(vals.mean()), float(vals.std(ddof=1) / math.sqrt(probes))
    return TraceResult(gamma, (P - gamma) / alpha, "pcg", se, probes)
