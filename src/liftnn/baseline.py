"""The linear model as the evidence's baseline: Bayesian linear regression in closed form, and
the comparison of its log evidence with a Bayesian-regularised network's (docs/bayes.md "The
linear baseline"); for classification, `fit_logistic`, the Bayesian softmax regression
(docs/sklearn.md "The classifier's linear baseline").

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
import scipy.linalg
import scipy.optimize

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


# --- classification: Bayesian softmax regression --------------------------------------------

#: Newton iterations at one alpha at most, and the Newton decrement (relative to the objective)
#: that ends them; fixed-point steps of alpha at most, and the relative change that ends them
NEWTON_STEPS, NEWTON_TOL, ALPHA_STEPS, ALPHA_TOL = 100, 1e-12, 200, 1e-5
#: the start of alpha (measured on iris, wine, breast cancer and digits: the starts 1e-2 and 1e2
#: reach the same fixed point)
ALPHA_START = 1.0
#: the Newton tolerance while alpha still moves by more than NEAR (relative) per step; closer
#: to the fixed point, and for the last fit, NEWTON_TOL
NEWTON_TOL_CYCLE, NEAR = 1e-6, 1e-2
#: the secant step of alpha (`_secant`) goes at most this many plain steps far
SECANT_REACH = 10.0


class LogisticFit(NamedTuple):
    """The Bayesian softmax (multinomial logistic) regression at the evidence's fixed point."""

    params: list  # [(W (K, d), b (K,))]: liftnn.MLP((d, K))'s layout, logits
    alpha: float  # the weight decay params minimise CE + alpha/2 ||theta||^2 for
    gamma: float  # effective number of parameters there
    log_evidence: float

    def predict_proba(self, X) -> np.ndarray:
        """The class probabilities (m, K) at X: (m, d)."""
        W, b = self.params[0]
        return softmax(np.asarray(X, dtype=np.float64) @ W.T + b)


def softmax(Z: np.ndarray) -> np.ndarray:
    """The softmax of logits Z along the last axis (shifted by the row maximum)."""
    E = np.exp(Z - Z.max(axis=-1, keepdims=True))
    return E / E.sum(axis=-1, keepdims=True)


def _cross_entropy(Phi, Y, Theta):
    """(the summed cross-entropy, the probabilities (m, K)) of the logits Phi Theta."""
    Pr = softmax(Phi @ Theta)
    return float(-np.sum(Y * np.log(np.clip(Pr, 1e-300, None)))), Pr


def _hessian(Phi, Pr):
    """The summed cross-entropy's Hessian in Theta (P x P, row-major (feature, class)):
    blocks Phi^T diag(S_kn) Phi with S_i = diag(p_i) - p_i p_i^T."""
    d1, K = Phi.shape[1], Pr.shape[1]
    H = np.empty((d1, K, d1, K))
    for k in range(K):
        for n in range(k, K):
            s = Pr[:, k] * ((k == n) - Pr[:, n])
            B = Phi.T @ (Phi * s[:, None])
            H[:, k, :, n] = B
            H[:, n, :, k] = B
    return H.reshape(d1 * K, d1 * K)


def _newton(Phi, Y, Theta, alpha, tol=NEWTON_TOL):
    """(Theta*, its cross-entropy, the cross-entropy's Hessian there): the minimiser of
    CE + alpha/2 ||Theta||^2 from Theta by Newton's method with an Armijo halving search (the
    objective is convex), ended when half the squared Newton decrement is below NEWTON_TOL of
    the objective (tol)."""
    n = Theta.size
    ce, Pr = _cross_entropy(Phi, Y, Theta)
    for _ in range(NEWTON_STEPS):
        H = _hessian(Phi, Pr)
        G = (Phi.T @ (Pr - Y) + alpha * Theta).reshape(-1)
        d = np.linalg.solve(H + alpha * np.eye(n), G)
        f0, dec = ce + 0.5 * alpha * float(np.sum(Theta**2)), float(G @ d)
        if 0.5 * dec <= tol * (1.0 + abs(f0)):
            return Theta, ce, H
        d, t = d.reshape(Theta.shape), 1.0
        for _ in range(40):
            trial = Theta - t * d
            ce_t, Pr_t = _cross_entropy(Phi, Y, trial)
            if ce_t + 0.5 * alpha * float(np.sum(trial**2)) <= f0 - 1e-4 * t * dec:
                break
            t *= 0.5
        else:
            return Theta, ce, H  # no decrease at rounding level: at the minimiser
        Theta, ce, Pr = trial, ce_t, Pr_t
    return Theta, ce, _hessian(Phi, Pr)


def _secant(alpha: float, new: float, previous) -> float:
    """The next alpha of the fixed-point iteration alpha <- g(alpha) = gamma / ||theta||^2: the
    secant root of ln g(a) - ln a through this and the previous (a, g(a)), where it steps in the
    plain iteration's direction and at most SECANT_REACH times as far; else g(alpha).  On digits
    (650 weights) 5 cycles instead of 14 to the same fixed point."""
    if previous is None:
        return new
    x1, f1 = math.log(alpha), math.log(new) - math.log(alpha)
    x0, f0 = math.log(previous[0]), math.log(previous[1]) - math.log(previous[0])
    if f1 == f0 or x1 == x0:
        return new
    step = -f1 * (x1 - x0) / (f1 - f0)
    if not math.isfinite(step) or step * f1 <= 0 or abs(step) > SECANT_REACH * abs(f1):
        return new
    return math.exp(x1 + step)


def fit_logistic(X, Y) -> LogisticFit:
    """The Bayesian softmax regression of one-hot Y: (m, K) on X: (m, d): one alpha over every
    weight and bias, the Laplace evidence of docs/bayes.md "Classification" (exact Hessian, a
    linear model's GGN), alpha <- gamma / ||theta||^2 run to its fixed point from
    ALPHA_START."""
    X, Y = np.asarray(X, dtype=np.float64), np.asarray(Y, dtype=np.float64)
    if X.ndim != 2 or Y.ndim != 2 or X.shape[0] != Y.shape[0] or X.shape[0] == 0:
        raise LiftnnError(f"the logistic baseline needs X (m, d) and one-hot Y (m, K) with m >= 1 "
                          f"rows in both; got X {X.shape}, Y {Y.shape}")
    Phi = _design(X)
    P = Phi.shape[1] * Y.shape[1]
    alpha, Theta = ALPHA_START, np.zeros((Phi.shape[1], Y.shape[1]))
    change, previous = math.inf, None  # the last relative change of alpha; the last (a, g(a))
    with limit_blas():
        for _ in range(ALPHA_STEPS):
            tol = NEWTON_TOL_CYCLE if change > NEAR else NEWTON_TOL
            Theta, ce, H = _newton(Phi, Y, Theta, alpha, tol=tol)
            # gamma = P - alpha tr(A^-1), A = H + alpha I, from A's Cholesky factor
            L_inv = scipy.linalg.solve_triangular(
                np.linalg.cholesky(H + alpha * np.eye(P)), np.eye(P), lower=True)
            gamma = P - alpha * float(np.sum(L_inv**2))
            new = max(gamma, 1e-12) / max(float(np.sum(Theta**2)), 1e-300)
            change = abs(new - alpha) / alpha
            if change <= ALPHA_TOL and tol == NEWTON_TOL:
                alpha = new
                break
            alpha, previous = _secant(alpha, new, previous), (alpha, new)
        Theta, ce, H = _newton(Phi, Y, Theta, alpha)
        lam = np.clip(np.linalg.eigvalsh(H), 0.0, None)
    ev = bayes.evidence_ce(lam, ce, float(np.sum(Theta**2)), P, alpha)
    params = [(np.ascontiguousarray(Theta[:-1].T), np.ascontiguousarray(Theta[-1]))]
    return LogisticFit(params, float(alpha), bayes.effective_params(lam, alpha), ev.log_evidence)


# --- the classifier's mixture of the network and the softmax regression ---------------------

#: the tolerance in w of the held-out mixture's minimiser (`blend_weight`)
BLEND_XTOL = 1e-4


def log_loss(Y: np.ndarray, proba: np.ndarray) -> float:
    """The mean cross-entropy of one-hot Y (m, K) under proba (m, K), clipped at 1e-15 (as
    scikit-learn's log_loss)."""
    return float(-np.mean(np.sum(Y * np.log(np.clip(proba, 1e-15, 1.0)), axis=1)))


def blend_weight(Y, p_network, p_linear) -> float:
    """The network's weight w in [0, 1] in the mixture w p_network + (1 - w) p_linear of class
    probabilities that minimises the mean log-loss of held-out one-hot rows Y: the stacking of
    predictive distributions by the log score (Yao, Vehtari, Simpson & Gelman, "Using stacking
    to average Bayesian predictive distributions", Bayesian Analysis 13, 2018), for two models.
    The loss is convex in w (minus the log of a function linear in w), so one bounded scalar
    search finds it.  The ends win ties, the network first: 1.0 where the network alone is at
    most the mixture's loss, 0.0 where the linear model alone is.  Probabilities that are not
    finite (a network that diverged) get no weight: 0.0 for the network's, else 1.0 for the
    linear model's."""
    Y, pn, pl = (np.asarray(a, dtype=np.float64) for a in (Y, p_network, p_linear))
    if not (Y.shape == pn.shape == pl.shape) or Y.ndim != 2 or len(Y) == 0:
        raise LiftnnError(f"blend_weight needs one-hot Y and two probability arrays of one shape "
                          f"(m, K), m >= 1; got {Y.shape}, {pn.shape}, {pl.shape}")
    if not np.all(np.isfinite(pn)):
        return 0.0
    if not np.all(np.isfinite(pl)):
        return 1.0

    def loss(w):
        return log_loss(Y, w * pn + (1.0 - w) * pl)

    inner = scipy.optimize.minimize_scalar(loss, bounds=(0.0, 1.0), method="bounded",
                                           options={"xatol": BLEND_XTOL})
    best = min(float(inner.fun), loss(float(inner.x)))
    if loss(1.0) <= best:
        return 1.0
    if loss(0.0) <= best:
        return 0.0
    return float(inner.x)
