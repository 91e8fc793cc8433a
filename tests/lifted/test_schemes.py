"""The outer schemes' multiplier / penalty / tolerance updates (liftnn.lifted.schemes) on made-up
constraint-violation sequences: each update does what docs/lifted.md says, per seed."""

import math

import numpy as np
import pytest

from liftnn.lifted import schemes


def test_evens_start_scales_beta_with_the_start_loss():
    s = schemes.init("evens", np.array([2.0, 0.5]), beta0_factor=1e-3, eps0=0.1)
    np.testing.assert_allclose(s.beta, [2e-3, 5e-4])
    np.testing.assert_allclose(s.beta0, s.beta)
    np.testing.assert_allclose(s.eps, [0.1, 0.1])
    assert np.all(np.isinf(s.h_prev)) and np.all(np.isnan(s.h_first))
    given = schemes.init("evens", np.array([2.0, 0.5]), beta0=3.0)
    np.testing.assert_allclose(given.beta, [3.0, 3.0])


def test_evens_keeps_beta_when_h_shrank_by_gamma_else_grows_it():
    """Seed 0's ||h|| halves (kept), seed 1's does not (beta -> max(xi beta, beta0 (k+1)^alpha)),
    seed 2's beta is large, so xi beta wins."""
    s = schemes.PenaltyState(beta=np.array([1.0, 1.0, 100.0]), beta0=np.array([1.0, 1.0, 1.0]),
                             eps=np.array([0.1, 0.1, 0.1]), h_prev=np.array([1.0, 1.0, 1.0]),
                             h_first=np.full(3, np.nan))
    coef, new = schemes.update("evens", s, np.array([0.5, 0.6, 0.9]), k=2)
    np.testing.assert_allclose(coef, s.beta)  # lambda += beta h with the old beta
    np.testing.assert_allclose(new.beta, [1.0, max(2.0, 1.0 * 3 ** 2), 200.0])
    np.testing.assert_allclose(new.eps, [0.05, 0.05, 0.05])
    np.testing.assert_allclose(new.h_prev, [0.5, 0.6, 0.9])


def test_evens_tolerance_halves_down_to_eps_min():
    s = schemes.init("evens", np.array([1.0]), eps0=0.1)
    seen = []
    for k in range(1, 6):
        _, s = schemes.update("evens", s, np.array([0.5 ** k]), k, schemes.EvensSettings(eps_min=0.02))
        seen.append(float(s.eps[0]))
    assert seen == pytest.approx([0.05, 0.025, 0.02, 0.02, 0.02])


def test_evens_first_iteration_always_keeps_beta():
    """h_prev starts at inf, so any finite ||h|| counts as having shrunk."""
    s = schemes.init("evens", np.array([1.0]))
    _, new = schemes.update("evens", s, np.array([123.0]), k=1)
    assert new.beta[0] == s.beta[0]


def test_ialm_penalty_is_a_power_and_the_dual_step_follows_sahin():
    s = schemes.init("ialm", np.zeros(2), beta0=10.0)
    np.testing.assert_allclose(s.beta, [10.0, 10.0])
    np.testing.assert_allclose(s.eps, [0.1, 0.1])
    h = [np.array([2.0, 1.0]), np.array([1.0, 4.0]), np.array([0.5, 0.5])]
    for k, hk in enumerate(h, start=1):
        coef, new = schemes.update("ialm", s, hk, k)
        h1 = h[0]
        sigma = np.minimum(h1 * math.log(2) ** 2 / (hk * k * math.log(k + 1) ** 2), 1.0)
        np.testing.assert_allclose(coef, sigma * s.beta)
        np.testing.assert_allclose(new.beta, 10.0 ** (k + 1))
        np.testing.assert_allclose(new.eps, 1.0 / 10.0 ** (k + 1))
        np.testing.assert_allclose(new.h_first, h1)  # recorded at k = 1, then fixed
        s = new
    assert sigma[0] < 1.0  # at k = 3 the dual step is damped


def test_ialm_sigma_is_capped_at_one():
    s = schemes.init("ialm", np.zeros(1), beta0=10.0)
    coef, _ = schemes.update("ialm", s, np.array([1.0]), k=1)
    # k = 1: ||h_1|| log^2 2 / (||h_1|| 1 log^2 2) = 1
    assert coef[0] == pytest.approx(10.0)
    s = s._replace(h_first=np.array([1.0]))
    coef, _ = schemes.update("ialm", s, np.array([1e-6]), k=1)
    assert coef[0] == pytest.approx(10.0)  # min(1e6, 1) = 1


def test_accept_keeps_the_old_state_where_the_step_was_not_taken():
    s = schemes.init("ialm", np.zeros(2), beta0=10.0)
    _, new = schemes.update("ialm", s, np.array([1.0, 2.0]), k=1)
    got = schemes.accept(s, new, np.array([True, False]))
    np.testing.assert_allclose(got.beta, [100.0, 10.0])
    np.testing.assert_allclose(got.eps, [0.01, 0.1])
    np.testing.assert_allclose(got.h_prev, [1.0, np.inf])
    np.testing.assert_allclose(got.h_first, [1.0, 2.0])  # recorded for every seed
