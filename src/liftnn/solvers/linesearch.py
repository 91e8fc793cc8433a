"""Line searches: how far to go along a descent direction d from x (seed 001).

Along d the objective is the scalar function phi(a) = f(x + a d), with phi(0) = f(x) and slope
phi'(0) = g(x)^T d < 0.  Seed 001 names the two Wolfe parameters:

- mu (sufficient decrease, the Armijo condition):   phi(a) <= phi(0) + mu a phi'(0)
- eta (curvature):                                   phi'(a) >= eta phi'(0)
  and the *strong* form used here                    |phi'(a)| <= eta |phi'(0)|

with 0 < mu < eta < 1 (otherwise a step satisfying both need not exist; Nocedal & Wright,
Lemma 3.1).  Seed 001 uses mu = 1e-4, eta = 0.1 and tightens to (1e-5, 0.3), (1e-6, 0.5).

Two searches:

- `armijo`: backtracking (Nocedal & Wright, Algorithm 3.1): try a = step0, then a <- shrink * a
  until the sufficient-decrease condition holds.  Needs only function values.  Used by Newton,
  Newton-CG and Gauss-Newton, whose unit step is the natural first trial.
- `strong_wolfe`: bracketing + zoom (Nocedal & Wright, Algorithms 3.5 and 3.6): extend the trial
  step (a <- 2a) until an interval is known to contain points satisfying the strong Wolfe
  conditions, then shrink it with safeguarded cubic interpolation.  Every trial evaluates f and
  its gradient together.  Used by BFGS, L-BFGS (the curvature condition guarantees y^T s > 0) and
  nonlinear CG (with eta < 1/2 it keeps Fletcher-Reeves directions descent directions).

Both searches also demand a strict decrease, f(x + a d) < f(x): when mu a phi'(0) is below the
rounding level of f(x) the Armijo inequality alone would accept steps that change nothing, and a
run near its minimum would creep on forever; instead the search fails there (as scipy's "precision
loss"), which ends the run with status line_search_failed at the best iterate.  The one exception is
in `strong_wolfe`, which has slopes: where phi(a) is within rounding of phi(0) (|phi(a) - phi(0)|
<= 1e3 eps |phi(0)|) the values cannot tell a decrease, but the slopes still can, and the search
accepts the step on Hager and Zhang's (2005) approximate Wolfe conditions
(2 mu - 1) phi'(0) >= phi'(a) and |phi'(a)| <= eta |phi'(0)|: the gradient then keeps shrinking
until the solver's gtol test ends the run as converged.

Non-finite trial values: NaN or +inf at a trial step counts as "step too long" (the search backs
off from it, as from a failed Armijo test); -inf means f is unbounded below along d, and the
search stops at once with ``unbounded=True`` (the solver then reports the run as diverged).

Both return a `LineSearchResult` (step, x, f, g, nfev, njev, success, unbounded, message).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from liftnn.errors import LiftnnError


class LineSearchResult(NamedTuple):
    """Outcome of a line search.

    step: the accepted step length a (the last trial when success is False);
    x: x + step d; f: phi(step); g: grad f(x + step d) (None for `armijo`, which evaluates
    values only); nfev / njev: function / gradient evaluations made by the search;
    success: the conditions hold at `step`; unbounded: a trial gave f = -inf;
    message: why the search stopped; kink: the step was accepted by strong_wolfe's accept_kink
    (sufficient decrease without the curvature condition).
    """

    step: float
    x: np.ndarray
    f: float
    g: np.ndarray | None
    nfev: int
    njev: int
    success: bool
    unbounded: bool = False
    message: str = ""
    kink: bool = False


def _number(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise LiftnnError(f"{name} must be a number; got {value!r}")
    v = float(value)
    if not math.isfinite(v):
        raise LiftnnError(f"{name} must be finite; got {value!r}")
    return v


def check_wolfe_parameters(mu, eta) -> tuple[float, float]:
    """Validate seed 001's Wolfe parameters: 0 < mu < eta < 1; returns (mu, eta) as floats.

    Raises LiftnnError naming the violated inequality (mu >= eta is the common mistake: then a
    step satisfying both conditions need not exist).
    """
    mu, eta = _number("mu", mu), _number("eta", eta)
    if not 0.0 < mu < 1.0:
        raise LiftnnError(f"mu (sufficient decrease) must satisfy 0 < mu < 1; got mu = {mu:g}")
    if not 0.0 < eta < 1.0:
        raise LiftnnError(f"eta (curvature) must satisfy 0 < eta < 1; got eta = {eta:g}")
    if mu >= eta:
        raise LiftnnError(f"the Wolfe conditions need 0 < mu < eta < 1; got mu = {mu:g} >= "
                          f"eta = {eta:g}")
    return mu, eta


def check_armijo_parameters(mu, shrink) -> tuple[float, float]:
    """Validate Armijo backtracking parameters: 0 < mu < 1 and 0 < shrink < 1."""
    mu, shrink = _number("mu", mu), _number("shrink", shrink)
    if not 0.0 < mu < 1.0:
        raise LiftnnError(f"mu (sufficient decrease) must satisfy 0 < mu < 1; got mu = {mu:g}")
    if not 0.0 < shrink < 1.0:
        raise LiftnnError(f"shrink must satisfy 0 < shrink < 1; got shrink = {shrink:g}")
    return mu, shrink


_ROUNDING = 1e3 * np.finfo(np.float64).eps


def _rounding_level(f0: float) -> float:
    """The searches' rounding level of f near f0: 1e3 eps |f0| (at least the smallest normal)."""
    return _ROUNDING * max(abs(f0), np.finfo(np.float64).tiny)


def lowers_beyond_rounding(f0: float, f: float) -> bool:
    """Whether f is below f0 by more than the rounding level 1e3 eps |f0| of the searches."""
    return bool(f0 - f > _rounding_level(f0))


def _rounding_note(f0: float, spread: float) -> str:
    """A hint when every trial value was within rounding of f0 (x is as good as f resolves)."""
    if math.isfinite(spread) and spread <= _rounding_level(f0):
        return (f"; every trial value was within {spread:.2g} of f(x) = {f0:.17g}, i.e. at "
                f"rounding level: x is as accurate as the precision of f allows")
    return ""


def _check_direction(slope: float) -> None:
    if not (math.isfinite(slope) and slope < 0.0):
        raise LiftnnError(f"d is not a descent direction: g^T d = {slope!r} (must be < 0)")


def armijo(f: Callable[[np.ndarray], float], x: np.ndarray, d: np.ndarray, f0: float,
           slope: float, *, step0: float = 1.0, mu: float = 1e-4, shrink: float = 0.5,
           max_evals: int = 50) -> LineSearchResult:
    """Backtracking line search for the sufficient-decrease (Armijo) condition.

        find a = step0 * shrink^k (k = 0, 1, ...) with  f(x + a d) <= f0 + mu a slope
                                                         (and f(x + a d) < f0)

    (Nocedal & Wright, Algorithm 3.1; seed 001's first Wolfe condition, parameter mu).

    Args:
        f: x (n,) -> float.
        x, d: (n,) current point and descent direction.
        f0: f(x); slope: g(x)^T d, must be < 0.
        step0: first trial step (1 for Newton-type directions).
        mu: sufficient-decrease parameter, 0 < mu < 1.
        shrink: backtracking factor, 0 < shrink < 1.
        max_evals: most function evaluations before giving up (success False).
    """
    _check_direction(slope)
    a = float(step0)
    fa, xa = math.inf, x
    spread = 0.0
    for k in range(1, int(max_evals) + 1):
        xa = x + a * d
        fa = float(f(xa))
        spread = max(spread, abs(fa - f0)) if not math.isnan(fa) else math.inf
        if fa == -math.inf:
            return LineSearchResult(a, xa, fa, None, k, 0, False, True,
                                    f"f = -inf at step {a:g}: unbounded below along d")
        if fa <= f0 + mu * a * slope and fa < f0:
            return LineSearchResult(a, xa, fa, None, k, 0, True, False, "sufficient decrease")
        a *= shrink
    return LineSearchResult(a / shrink, xa, fa, None, int(max_evals), 0, False, False,
                            f"no sufficient decrease (mu = {mu:g}) after {int(max_evals)} "
                            f"backtracking steps (last step {a / shrink:.3g})"
                            + _rounding_note(f0, spread))


def _cubic_min(a, fa, da, b, fb, db) -> float:
    """Minimiser of the cubic interpolating phi, phi' at a and b (Nocedal & Wright eq. 3.59);
    NaN when it does not exist."""
    d1 = da + db - 3.0 * (fa - fb) / (a - b)
    disc = d1 * d1 - da * db
    if not (math.isfinite(disc) and disc >= 0.0):
        return math.nan
    d2 = math.copysign(math.sqrt(disc), b - a)
    den = db - da + 2.0 * d2
    if den == 0.0:
        return math.nan
    return b - (b - a) * (db + d2 - d1) / den


def strong_wolfe(fg: Callable[[np.ndarray], tuple[float, np.ndarray]], x: np.ndarray,
                 d: np.ndarray, f0: float, g0: np.ndarray, *, step0: float = 1.0,
                 mu: float = 1e-4, eta: float = 0.9, max_evals: int = 50,
                 expand: float = 2.0, accept_kink: bool = False) -> LineSearchResult:
    """Bracketing + zoom line search for the strong Wolfe conditions (seed 001's mu and eta).

        phi(a) <= phi(0) + mu a phi'(0)      and      |phi'(a)| <= eta |phi'(0)|

    with phi(a) = f(x + a d).  Nocedal & Wright Algorithm 3.5 (bracketing: a_{i+1} = expand *
    a_i until phi(a_i) violates sufficient decrease, phi(a_i) >= phi(a_{i-1}) or phi'(a_i) >= 0)
    and Algorithm 3.6 (zoom: the trial is the minimiser of the cubic through phi, phi' at both ends
    of the bracket, safeguarded to the middle 80 % of the bracket, else bisection).

    Args:
        fg: x (n,) -> (f, grad f) evaluated together (one function + one gradient evaluation).
        x, d: (n,) current point and descent direction; f0, g0: f and grad f at x.
        step0: first trial step.
        mu, eta: Wolfe parameters, 0 < mu < eta < 1 (validate with check_wolfe_parameters).
        max_evals: most (f, grad) evaluations before giving up (success False).
        expand: growth factor of the trial step while bracketing (> 1).
        accept_kink: where the zoom ends without a strong Wolfe step (the bracket shrank to
            rounding width, or max_evals ran out) but its low end a_lo > 0 satisfies sufficient
            decrease and lowers f by more than rounding (1e3 eps |f0|), accept a_lo with success
            True, kink True and KINK_MSG instead of failing.  That is what a kink of phi does (a ReLU
            network's loss: the slope jumps from negative to positive across the kink, so no
            step near it satisfies the curvature condition).  The caller must tolerate
            y^T s <= 0 (quasi-Newton methods skip that pair).
    """
    dphi0 = float(np.dot(g0, d))
    _check_direction(dphi0)
    return _WolfeSearch(fg, x, d, f0, g0, dphi0, mu, eta, max_evals,
                        bool(accept_kink)).bracket(step0, expand)

_APPROX_MSG = "approximate Wolfe conditions hold (phi at rounding level of phi(0))"
KINK_MSG = ("sufficient decrease without the curvature condition (a kink of phi: the zoom found "
            "no strong Wolfe step, its best step lowers f beyond rounding)")


class _WolfeSearch:
    """One strong Wolfe search (see strong_wolfe): phi(a) = f(x + a d), its evaluation count,
    the acceptance tests, and the two phases, bracket (N&W Alg. 3.5) and zoom (Alg. 3.6)."""

    def __init__(self, fg, x, d, f0, g0, dphi0, mu, eta, max_evals, accept_kink=False):
        self.fg, self.x, self.d, self.f0, self.g0 = fg, x, d, f0, g0
        self.dphi0, self.mu, self.eta, self.max_evals = dphi0, mu, eta, max_evals
        self.n_eval = 0
        self.spread = 0.0  # largest |phi(a) - phi(0)| over the trials
        self.f_noise = _rounding_level(f0)
        self.accept_kink = accept_kink

    def phi(self, a):
        """(x + a d, phi(a), grad, phi'(a)); NaN / +inf read as "too long" (phi = inf)."""
        self.n_eval += 1
        xa = self.x + a * self.d
        fa, ga = self.fg(xa)
        fa = float(fa)
        self.spread = (max(self.spread, abs(fa - self.f0)) if not math.isnan(fa) else math.inf)
        ga = np.asarray(ga, dtype=np.float64)
        da = float(np.dot(ga, self.d))
        if not (math.isfinite(fa) and math.isfinite(da)):
            if fa == -math.inf:
                return xa, fa, ga, da
            fa, da = math.inf, math.nan
        return xa, fa, ga, da

    # --- results ---------------------------------------------------------------------------
    def done(self, a, xa, fa, ga, msg="strong Wolfe conditions hold"):
        return LineSearchResult(a, xa, fa, ga, self.n_eval, self.n_eval, True, False, msg)

    def kink(self, a, xa, fa, ga):
        """accept_kink's step (kink_ok): success, with KINK_MSG and kink True."""
        return self.done(a, xa, fa, ga, KINK_MSG)._replace(kink=True)

    def unbounded(self, a, xa):
        return LineSearchResult(a, xa, -math.inf, None, self.n_eval, self.n_eval, False, True,
                                f"f = -inf at step {a:g}: unbounded below along d")

    def failed(self, a, xa, fa, ga, why):
        return LineSearchResult(a, xa, fa, ga, self.n_eval, self.n_eval, False, False,
                                f"strong Wolfe search (mu = {self.mu:g}, eta = {self.eta:g}) "
                                f"failed: {why}" + _rounding_note(self.f0, self.spread))

    # --- tests -----------------------------------------------------------------------------
    def armijo_ok(self, a, fa):
        return fa <= self.f0 + self.mu * a * self.dphi0 and fa < self.f0

    def kink_ok(self, a_lo, f_lo):
        """accept_kink's fallback for a zoom that found no strong Wolfe step: its low end a_lo
        > 0 satisfies sufficient decrease and lowers f by more than rounding."""
        return self.accept_kink and a_lo > 0.0 and lowers_beyond_rounding(self.f0, f_lo)

    def curvature_ok(self, da):
        return abs(da) <= -self.eta * self.dphi0

    def approx_wolfe_ok(self, fa, da):
        """Hager-Zhang: phi(a) indistinguishable from phi(0), slopes show the step is good."""
        return (abs(fa - self.f0) <= self.f_noise
                and da <= (2.0 * self.mu - 1.0) * self.dphi0 and self.curvature_ok(da))

    # --- the two phases --------------------------------------------------------------------
    def zoom(self, lo, hi):
        """lo = (a, f, dphi, x, g) satisfies sufficient decrease with the lowest f so far; hi =
        (a, f, dphi) the other end of the bracket."""
        a_lo, f_lo, d_lo, x_lo, g_lo = lo
        a_hi, f_hi, d_hi = hi
        while self.n_eval < self.max_evals:
            width = a_hi - a_lo
            if abs(width) <= 1e-16 * max(abs(a_lo), abs(a_hi)) or width == 0.0:
                if self.kink_ok(a_lo, f_lo):
                    return self.kink(a_lo, x_lo, f_lo, g_lo)
                return self.failed(a_lo, x_lo, f_lo, g_lo, "the bracket shrank to rounding level")
            a = math.nan
            if math.isfinite(f_hi) and math.isfinite(d_hi):
                a = _cubic_min(a_lo, f_lo, d_lo, a_hi, f_hi, d_hi)
            lo_s, hi_s = sorted((a_lo + 0.1 * width, a_hi - 0.1 * width))
            if not (math.isfinite(a) and lo_s <= a <= hi_s):
                a = 0.5 * (a_lo + a_hi)
            xa, fa, ga, da = self.phi(a)
            if fa == -math.inf:
                return self.unbounded(a, xa)
            if self.approx_wolfe_ok(fa, da):
                return self.done(a, xa, fa, ga, _APPROX_MSG)
            if not self.armijo_ok(a, fa) or fa >= f_lo:
                a_hi, f_hi, d_hi = a, fa, da
            else:
                if self.curvature_ok(da):
                    return self.done(a, xa, fa, ga)
                if da * (a_hi - a_lo) >= 0.0:
                    a_hi, f_hi, d_hi = a_lo, f_lo, d_lo
                a_lo, f_lo, d_lo, x_lo, g_lo = a, fa, da, xa, ga
        if self.kink_ok(a_lo, f_lo):
            return self.kink(a_lo, x_lo, f_lo, g_lo)
        return self.failed(a_lo, x_lo, f_lo, g_lo,
                           f"no acceptable step in {self.max_evals} evaluations")

    def bracket(self, step0: float, expand: float):
        """Grow the trial step from step0 by `expand` until it brackets an acceptable step."""
        a_prev, f_prev, d_prev = 0.0, float(self.f0), self.dphi0
        x_prev, g_prev = self.x, np.asarray(self.g0)
        a = float(step0)
        first = True
        while self.n_eval < self.max_evals:
            xa, fa, ga, da = self.phi(a)
            if fa == -math.inf:
                return self.unbounded(a, xa)
            if self.approx_wolfe_ok(fa, da):
                return self.done(a, xa, fa, ga, _APPROX_MSG)
            if not self.armijo_ok(a, fa) or (not first and fa >= f_prev):
                return self.zoom((a_prev, f_prev, d_prev, x_prev, g_prev), (a, fa, da))
            if self.curvature_ok(da):
                return self.done(a, xa, fa, ga)
            if da >= 0.0:
                return self.zoom((a, fa, da, xa, ga), (a_prev, f_prev, d_prev))
            a_prev, f_prev, d_prev, x_prev, g_prev = a, fa, da, xa, ga
            a *= expand
            first = False
        if a_prev > 0.0:
            return self.failed(a_prev, x_prev, f_prev, g_prev,
                               f"the step kept growing (last {a_prev:.3g}) for {self.max_evals} "
                               f"evaluations")
        return self.failed(0.0, self.x, self.f0, self.g0,
                           f"no acceptable step in {self.max_evals} evaluations")
