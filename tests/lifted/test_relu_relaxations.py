"""The ReLU relaxations of the lifted constraints (liftnn.models.activations): the Scholtes
point solves the relaxed complementarity system, derivatives equal autodiff, and both
relaxations tend to ReLU as t -> 0."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from liftnn.errors import LiftnnError
from liftnn.models.activations import RELU_MODES, relu_relaxation

A = jnp.linspace(-3.0, 3.0, 61)


def test_scholtes_point_solves_the_relaxed_complementarity_system():
    t = 0.3
    z = relu_relaxation("complementarity", t).f(A)
    assert bool(jnp.all(z >= 0)) and bool(jnp.all(z - A >= 0))
    np.testing.assert_allclose(z * (z - A), t * t, rtol=1e-12)


@pytest.mark.parametrize("mode", RELU_MODES)
def test_derivative_equals_autodiff_away_from_the_kink(mode):
    act = relu_relaxation(mode, 0.2)
    a = A[jnp.abs(A) > 1e-6]
    np.testing.assert_allclose(act.df(a), jax.vmap(jax.grad(act.f))(a), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("mode", ["complementarity", "softplus"])
def test_relaxations_tend_to_relu(mode):
    err = [float(jnp.max(jnp.abs(relu_relaxation(mode, t).f(A) - jnp.maximum(A, 0.0))))
           for t in (1e-1, 1e-2, 1e-3)]
    assert err[0] > err[1] > err[2] and err[2] <= 1e-3


def test_unknown_mode_is_named():
    with pytest.raises(LiftnnError, match="ReLU mode"):
        relu_relaxation("magic", 0.1)
