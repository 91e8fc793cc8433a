"""Line searches (liftnn.solvers.linesearch): the returned step satisfies the conditions it claims.

Armijo: f(x + a d) <= f(x) + mu a g^T d.  Strong Wolfe: that and |g(x + a d)^T d| <= eta |g^T d|
(seed 001's mu and eta).  Checked on Rosenbrock along steepest descent (step 1 far too long), on a
quadratic along a tiny direction (step 1 far too short, so the bracketing phase must expand) and
for seed 001's three (mu, eta) pairs; bad parameters and non-descent directions are rejected;
at a kink of phi (|a - c|, where no step satisfies the curvature condition) the search fails
unless accept_kink, which then takes the sufficient-decrease step at the kink.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import liftnn as ln
from liftnn.errors import LiftnnError
from liftnn.solvers.linesearch import (
    KINK_MSG,
    armijo,
    check_armijo_parameters,
    check_wolfe_parameters,
    lowers_beyond_rounding,
    strong_wolfe,
)


def rosen(x):
    return jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


def quad(x):
    return 0.5 * jnp.sum(jnp.arange(1.0, x.size + 1.0) * x**2)


_fg = {f: jax.jit(jax.value_and_grad(f)) for f in (rosen, quad)}


def fg_of(f):
    def fg(x):
        v, g = _fg[f](x)
        return float(v), np.asarray(g)
    return fg


SEED001_PAIRS = [(1e-4, 0.1), (1e-5, 0.3), (1e-6, 0.5), (1e-4, 0.9)]
CASES = [  # (function, x, direction scale): steepest descent d = scale * (-g)
    (rosen, np.array([-1.2, 1.0]), 1.0),      # step 1 lands far up the valley wall
    (rosen, np.array([0.5, 0.9, -0.3]), 1.0),
    (quad, np.array([3.0, -2.0, 1.0, 0.5]), 1e-3),  # step 1 is ~1000x too short
]


@pytest.mark.parametrize("mu,eta", SEED001_PAIRS)
@pytest.mark.parametrize("case", range(len(CASES)))
def test_strong_wolfe_conditions_hold(case, mu, eta):
    f, x, scale = CASES[case]
    fg = fg_of(f)
    f0, g0 = fg(x)
    d = -scale * g0
    ls = strong_wolfe(fg, x, d, f0, g0, mu=mu, eta=eta)
    assert ls.success, ls.message
    fa, ga = fg(x + ls.step * d)
    slope = float(g0 @ d)
    assert fa <= f0 + mu * ls.step * slope                 # sufficient decrease (Armijo)
    assert abs(float(ga @ d)) <= eta * abs(slope)          # strong curvature condition
    np.testing.assert_allclose(ls.x, x + ls.step * d)
    assert ls.f == pytest.approx(fa, rel=1e-14)
    np.testing.assert_allclose(ls.g, ga, rtol=1e-12, atol=1e-300)
    assert ls.nfev == ls.njev >= 1


def test_strong_wolfe_expands_when_step_one_is_too_short():
    """On the quadratic with d = -1e-3 g the accepted step is > 1 (bracketing doubled it)."""
    f, x, scale = CASES[2]
    fg = fg_of(f)
    f0, g0 = fg(x)
    ls = strong_wolfe(fg, x, -scale * g0, f0, g0, mu=1e-4, eta=0.1)
    assert ls.success and ls.step > 100.0 and ls.nfev > 5


@pytest.mark.parametrize("mu,shrink", [(1e-4, 0.5), (0.3, 0.8), (1e-6, 0.1)])
@pytest.mark.parametrize("case", range(2))
def test_armijo_condition_holds_and_step_is_the_first_that_does(case, mu, shrink):
    f, x, _ = CASES[case]
    fg = fg_of(f)
    f0, g0 = fg(x)
    d = -g0
    slope = float(g0 @ d)
    ls = armijo(lambda z: fg(z)[0], x, d, f0, slope, mu=mu, shrink=shrink)
    assert ls.success and ls.g is None
    assert fg(x + ls.step * d)[0] <= f0 + mu * ls.step * slope
    assert ls.step == pytest.approx(shrink ** (ls.nfev - 1))
    if ls.nfev > 1:  # the previous (longer) trial violated the condition
        prev = ls.step / shrink
        assert fg(x + prev * d)[0] > f0 + mu * prev * slope


def test_nan_and_inf_trials_are_backed_off_from():
    """f is NaN beyond x = 1: both searches back off and return a finite, acceptable step."""
    def f(x):
        return float(np.where(x[0] < 1.0, (x[0] - 0.9) ** 2, np.nan))

    def fg(x):
        return f(x), np.array([2.0 * (x[0] - 0.9)]) if x[0] < 1.0 else np.array([np.nan])

    x = np.array([0.0])
    f0, g0 = fg(x)
    d = np.array([5.0])  # the unit step lands at x = 5, where f is NaN
    a = armijo(f, x, d, f0, float(g0 @ d))
    assert a.success and np.isfinite(a.f) and a.x[0] < 1.0
    w = strong_wolfe(fg, x, d, f0, g0, mu=1e-4, eta=0.5)
    assert w.success and np.isfinite(w.f) and w.x[0] < 1.0


def test_minus_inf_is_reported_as_unbounded():
    def fg(x):
        return -float(np.exp(x[0])), np.array([-np.exp(x[0])])

    x = np.array([0.0])
    f0, g0 = fg(x)
    with np.errstate(over="ignore"):
        w = strong_wolfe(fg, x, -g0, f0, g0)
    assert w.unbounded and not w.success and "unbounded" in w.message


@pytest.mark.parametrize("mu,eta", [(0.5, 0.5), (0.9, 0.1), (0.0, 0.5), (1e-4, 1.0), (-1e-4, 0.9),
                                    (float("nan"), 0.9), ("a", 0.9)])
def test_bad_wolfe_parameters_are_rejected(mu, eta):
    with pytest.raises(LiftnnError, match="mu|eta"):
        check_wolfe_parameters(mu, eta)


def test_mu_not_below_eta_is_rejected_by_the_front_door_before_any_work():
    calls = []

    def f(x):
        calls.append(1)
        return jnp.sum(x**2)

    with pytest.raises(LiftnnError, match="mu = 0.5 >= eta = 0.1"):
        ln.minimize(f, [1.0, 2.0], method="bfgs", mu=0.5, eta=0.1)
    with pytest.raises(LiftnnError, match="0 < mu < eta < 1"):
        ln.minimize(f, [1.0, 2.0], method="cg", mu=0.2, eta=0.2)
    assert not calls  # rejected before fun was ever evaluated (or traced)


def test_bad_armijo_parameters_and_non_descent_direction_are_rejected():
    with pytest.raises(LiftnnError, match="shrink"):
        check_armijo_parameters(1e-4, 1.0)
    fg = fg_of(quad)
    x = np.array([1.0, 1.0])
    f0, g0 = fg(x)
    with pytest.raises(LiftnnError, match="descent"):
        strong_wolfe(fg, x, g0, f0, g0)  # uphill
    with pytest.raises(LiftnnError, match="descent"):
        armijo(lambda z: fg(z)[0], x, g0, f0, float(g0 @ g0))


def _kinked(c: float):
    """phi(a) = 1 + |a - c| along d = 1 from x = 0: slope -1 before the kink at c, +1 after, so
    no step satisfies the strong curvature condition |phi'| <= eta < 1 (at c the slope is +1, the
    one-sided convention of a ReLU's derivative)."""
    def fg(x):
        return 1.0 + float(abs(x[0] - c)), np.array([1.0 if x[0] >= c else -1.0])
    return fg


def test_a_kink_fails_the_strong_wolfe_search_unless_accept_kink():
    fg = _kinked(0.3141592653589793)
    x, d = np.zeros(1), np.ones(1)
    f0, g0 = fg(x)
    plain = strong_wolfe(fg, x, d, f0, g0)
    assert not plain.success and "failed" in plain.message
    kink = strong_wolfe(fg, x, d, f0, g0, accept_kink=True)
    assert kink.success and kink.kink and kink.message == KINK_MSG
    assert kink.f <= f0 + 1e-4 * kink.step * float(g0 @ d) and kink.f < 1.0 + 1e-6  # at c
    assert kink.step == pytest.approx(0.3141592653589793, abs=1e-6)


def test_accept_kink_still_fails_where_no_step_lowers_f_beyond_rounding():
    fg = _kinked(1e-14)  # the kink sits within rounding of f: nothing to gain along d
    x, d = np.zeros(1), np.ones(1)
    f0, g0 = fg(x)
    ls = strong_wolfe(fg, x, d, f0, g0, accept_kink=True)
    assert not ls.success and not ls.unbounded
    assert not lowers_beyond_rounding(f0, ls.f)
