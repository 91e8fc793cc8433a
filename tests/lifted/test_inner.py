"""The inner solve's pieces alone (liftnn.lifted.inner): the Armijo line search on made-up 1-D
merits, and inner_solve's named result and string statuses on a tiny network."""

import jax.numpy as jnp
import numpy as np
import pytest

import liftnn as ln
from liftnn.lifted import gauss_newton as gnm
from liftnn.lifted import inner
from liftnn.models.activations import get_activation


@pytest.mark.parametrize("interp", [True, False])
def test_line_search_returns_the_first_armijo_point(interp):
    """phi(t) = (t - 0.1)^2: slope -0.2 at 0; t = 1 fails sufficient decrease, so it shrinks."""
    ls = inner.LineSearch(factor=0.8, sigma=0.1, max_evals=40, interp=interp)
    f, slope = 0.01, -0.2
    t, ft, n = (float(a) for a in inner.line_search(lambda t: (t - 0.1) ** 2, f, slope, ls))
    assert ft == pytest.approx((t - 0.1) ** 2)
    assert ft <= f + ls.sigma * t * slope  # Armijo holds at the returned step
    assert t < 1.0 and n >= 2
    if not interp:  # plain backtracking: t = 0.8^(n-1), and the previous trial failed
        assert t == pytest.approx(0.8 ** (n - 1))
        tp = t / 0.8
        assert (tp - 0.1) ** 2 > f + ls.sigma * tp * slope


def test_line_search_accepts_the_full_step_when_it_decreases_enough():
    ls = inner.LineSearch()
    t, ft, n = inner.line_search(lambda t: (t - 1.0) ** 2, 1.0, -2.0, ls)
    assert (float(t), float(ft), int(n)) == (1.0, 0.0, 1)


def test_line_search_gives_up_after_max_evals():
    ls = inner.LineSearch(max_evals=5, interp=False)
    t, ft, n = inner.line_search(lambda t: 1.0 + t, 1.0, -1.0, ls)  # an ascent "direction"
    assert int(n) == 5 and float(ft) > 1.0 and float(t) == pytest.approx(0.8 ** 4)


def test_status_names_is_the_one_mapping():
    codes = [inner.INNER_OK, inner.INNER_MAX, inner.INNER_LS_FAILED]
    assert inner.status_names(np.array(codes)) == ["ok", "max_inner", "line_search_failed"]


def _tiny(max_inner=3):
    model = ln.MLP("1-3-1", activation="tanh")
    X = jnp.linspace(0.0, 1.0, 5)[:, None]
    Y = jnp.sin(3 * X)
    cfg = inner.InnerConfig(model, "gd", "dual", (2.0 / 5) ** 0.5, 5, 0.0, 1e-9, max_inner,
                            inner.LineSearch())
    p = model.init(0)
    Z = gnm.simulate(p, X, gnm.hidden_activations(model, "gd", 1.0))
    lam = [jnp.zeros_like(z) for z in Z]
    return cfg, p, Z, lam, X, Y


def test_inner_solve_stops_at_once_when_the_tolerance_is_met():
    cfg, p, Z, lam, X, Y = _tiny()
    r = inner.inner_solve(cfg, p, Z, lam, 1.0, jnp.inf, 1.0, X, Y)
    assert int(r.gn_iters) == 0 and inner.status_names([r.status]) == ["ok"]
    assert float(r.h_inf) == 0.0  # the simulated states are feasible


def test_inner_solve_runs_max_inner_steps_and_lowers_the_merit():
    cfg, p, Z, lam, X, Y = _tiny(max_inner=3)
    r = inner.inner_solve(cfg, p, Z, lam, 1.0, 0.0, 1.0, X, Y)
    assert int(r.gn_iters) == 3 and inner.status_names([r.status]) == ["max_inner"]
    prob0 = gnm.AugmentedLSQ(X, Y, lam, 1.0 / 5, 0.0, gnm.hidden_activations(cfg.model, "gd", 1.0),
                             get_activation("identity"), cfg.c)
    assert float(gnm.merit(prob0, r.params, r.Z)) < float(gnm.merit(prob0, p, Z))
    assert float(r.lagrangian) == pytest.approx(float(gnm.merit(prob0, r.params, r.Z)), rel=1e-12)
