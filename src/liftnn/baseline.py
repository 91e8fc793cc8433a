"""The linear model as the evidence's baseline: Bayesian linear regression in closed form, and
the comparison of its log evidence with a Bayesian-regularised network's (docs/bayes.md "The
linear baseline").

The linear model is the MLP with no hidden layer, f(x) = W x + b, under the prior and noise
model of liftnn.bayes (one alpha over every weight and bias, one beta over the N = m * O target
entries).  Its Jacobian is the design Phi = [X, 1] for each output, so J^T J is block diagonal
with O copies of Phi^T Phi ((d + 1) x (d + 1)), and everything of MacKay's "Bayesian
interpolation" (Neural Computation 4, 1992) is exact and cheap: for r = alpha / beta the weights
are the ridge solution theta(r) = (Phi^T Phi + r I)^-1 Phi^T Y, the re-estimation

    gamma(r) = O sum_i lambda_i / (lambda_i + r),   r <- gamma sse(r) / ((N - gamma) ssw(r))

(lambda_i the eigenvalues of Phi^T Phi) runs to its fixed point without any training, and the
log evidence there (liftnn.bayes.evidence) is the Gaussian marginal likelihood
ln N(Y; 0, I/beta + Phi Phi^T/alpha) exactly (the Laplace approximation is exact for a linear
model; tests/test_baseline.py checks it).

`compare(network_log_evidence, linear)` says which model the evidence prefers.  Both log
evidences leave out the factor h! 2^h of a network's equivalent hidden-unit permutations and sign
flips (ln(16! 2^16) = 41.5 for 16 units).  It counts distinct modes, and the strongly regularised
networks the evidence keeps on small tables have few distinct units (gamma 8 of 193 weights on
diabetes), so the factor would overstate their evidence by about its whole size.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from liftnn import bayes
from liftnn.blas_threads import limit_blas
from liftnn.errors import LiftnnError

#: fixed-point iterations of r at most, the relative change of r that ends them, and the
#: starts (multiples of the mean eigenvalue of Phi^T Phi) whose fixed points are compared
MAX_STEPS, TOL = 1000, 1e-12
STARTS = (1e-6, 1.0, 1e6)


class LinearFit(NamedTuple):
    """The Bayesian linear model at the evidence's fixed point."""

    params: list  # [(W (O, d), b (O,))]: liftnn.MLP((d, O))'s layout
    alpha: float
    beta: float
    gamma: float  # effective number of parameters
    log_evidence: float
    ratio: float  # r = alpha / beta
    design_eigenvalues: np.ndarray  # of Phi^T Phi


def _design(X: np.ndarray) -> np.ndarray:
    return np.hstack([X, np.ones((X.shape[0], 1))])


def _solve(V, lam, PhiTY, r):
    """theta(r) as (d + 1, O): V diag(1 / (lam + r)) V^T Phi^T Y."""
    return V @ ((V.T @ PhiTY) / (lam + r)[:, None])


def fit(X, Y) -> LinearFit:
    """The Bayesian linear model of Y: (m, O) on X: (m, d) (module docstring): the fixed point of
    MacKay's re-estimation with the highest log evidence among those reached from STARTS."""
    X, Y = np.asarray(X, dtype=np.float64), np.asarray(Y, dtype=np.float64)
    if Y.ndim == 1:
        Y = Y[:, None]
    if X.ndim != 2 or X.shape[0] != Y.shape[0] or X.shape[0] == 0:
        raise LiftnnError(f"the linear baseline needs X (m, d) and Y (m, O) with m >= 1 rows in "
                          f"both; got X {X.shape}, Y {Y.shape}")
    m, O = Y.shape
    Phi = _design(X)
    with limit_blas():
        lam, V = np.linalg.eigh(Phi.T @ Phi)
        lam = np.clip(lam, 0.0, None)
        PhiTY = Phi.T @ Y
    N, P = m * O, O * Phi.shape[1]
    lam_all = np.repeat(lam, O)  # the eigenvalues of J^T J: O copies of Phi^T Phi's
    scale = max(float(lam.mean()), 1e-300)
    best = None
    for start in STARTS:
        r = start * scale
        for _ in range(MAX_STEPS):
            theta = _solve(V, lam, PhiTY, r)
            e = Phi @ theta - Y
            sse, ssw = float(np.sum(e * e)), float(np.sum(theta * theta))
            gamma = min(O * bayes.effective_params(lam, r), N - 0.5)
            if sse <= 1e-300 or ssw <= 1e-300:
                break  # an exact fit or the zero function: no finite fixed point
            new = max(gamma, 1e-12) * sse / ((N - gamma) * ssw)
            done = abs(new - r) <= TOL * r
            r = new
            if done:
                break
        theta = _solve(V, lam, PhiTY, r)
        e = Phi @ theta - Y
        ev = bayes.evidence(lam_all, float(np.sum(e * e)), float(np.sum(theta * theta)), N, P, r)
        if best is None or ev.log_evidence > best[0].log_evidence:
            best = (ev, theta, r)
    ev, theta, r = best
    params = [(np.ascontiguousarray(theta[:-1].T), np.ascontiguousarray(theta[-1]))]
    return LinearFit(params, ev.alpha, ev.beta, ev.gamma, ev.log_evidence, float(r), lam)


def jacobian(X, n_outputs: int = 1) -> np.ndarray:
    """The Jacobian (m O x P) of liftnn.MLP((d, O))'s outputs, the same at any weights: rows
    (sample, output) as f(X).reshape(-1), columns the flat weights (W row-major, then b)."""
    X = np.asarray(X, dtype=np.float64)
    m, d = X.shape
    O = int(n_outputs)
    J = np.zeros((m, O, O * (d + 1)))
    for o in range(O):
        J[:, o, o * d:(o + 1) * d] = X
        J[:, o, O * d + o] = 1.0
    return J.reshape(m * O, O * (d + 1))


def log_marginal(X, Y, alpha: float, beta: float) -> float:
    """ln N(vec Y; 0, I / beta + Phi Phi^T / alpha) per output, summed (the exact evidence, for
    tests; O(m^3))."""
    X, Y = np.asarray(X, dtype=np.float64), np.asarray(Y, dtype=np.float64)
    Y = Y[:, None] if Y.ndim == 1 else Y
    Phi = _design(X)
    C = np.eye(X.shape[0]) / beta + Phi @ Phi.T / alpha
    sign, logdet = np.linalg.slogdet(C)
    if sign <= 0:
        raise LiftnnError("the marginal covariance is not positive definite")
    sol = np.linalg.solve(C, Y)
    m, O = Y.shape
    return float(-0.5 * np.sum(Y * sol) - 0.5 * O * logdet - 0.5 * m * O * math.log(2 * math.pi))


def compare(network_log_evidence: float, linear: LinearFit) -> str:
    """"network" or "linear": the model with the higher log evidence (a tie keeps the
    network)."""
    if not math.isfinite(network_log_evidence):
        return "linear"
    return "linear" if linear.log_evidence > network_log_evidence else "network"
