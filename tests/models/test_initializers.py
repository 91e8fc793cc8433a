"""The uniform initialisers' two-program draw (random bits, then the scaling) against
jax.random.uniform in one program: the same bits for every shape and seed tried."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import liftnn as ln
from liftnn.models import initializers
from liftnn.models.mlp import _init_fn


def _one_program(model, initf):
    def draw(key):
        keys = jax.random.split(key, model.n_layers)
        return [initf(k, i, o) for k, (i, o) in zip(keys, zip(model.sizes[:-1], model.sizes[1:]))]

    return jax.jit(draw)


@pytest.mark.parametrize("init", ["glorot_uniform", "kaiming_uniform"])
@pytest.mark.parametrize("arch", ["10-16-1", "1-16-16-1", "3-7-5-2", "64-16-10"])
def test_the_split_draw_equals_jax_random_uniform_bit_for_bit(init, arch):
    model = ln.MLP(arch, activation="tanh", init=init)
    ref = _one_program(model, initializers.get_initializer(init))
    for seed in range(8):
        key = jax.random.PRNGKey(seed)
        for (W, b), (W_ref, b_ref) in zip(_init_fn(model)(key), ref(key)):
            np.testing.assert_array_equal(np.asarray(W), np.asarray(W_ref))
            np.testing.assert_array_equal(np.asarray(b), np.asarray(b_ref))
    assert [np.shape(W) for W, _ in model.init(0)] == [
        (o, i) for i, o in zip(model.sizes[:-1], model.sizes[1:])]


def test_uniform_from_bits_stays_in_the_interval():
    bits = jax.random.bits(jax.random.PRNGKey(3), (1000,), jnp.uint64)
    W = np.asarray(jax.jit(initializers.uniform_from_bits)(bits, 0.5))
    assert W.min() >= -0.5 and W.max() < 0.5 and abs(W.mean()) < 0.05


def test_the_host_scaling_equals_the_compiled_one_bit_for_bit():
    """uniform_from_bits_host (NumPy) = uniform_from_bits compiled by XLA (its fused
    multiply-add), on random bits and on the extremes of the mantissa."""
    bits = np.asarray(jax.random.bits(jax.random.PRNGKey(11), (4000,), jnp.uint64))
    edges = np.array([0, 1, 2**12 - 1, 2**12, 2**63, 2**63 + 2**12, 2**64 - 1,
                      2**64 - 2**12], dtype=np.uint64)
    compiled = jax.jit(initializers.uniform_from_bits)
    for b in (bits, edges):
        for lim in (0.5, 0.1234567, initializers.glorot_uniform.limit(10, 16),
                    initializers.kaiming_uniform.limit(64, 16), 3.0):
            np.testing.assert_array_equal(initializers.uniform_from_bits_host(b, lim),
                                          np.asarray(compiled(b, lim)))


def test_a_uniform_init_compiles_nothing():
    """The uniform draw (host bits, host scaling) compiles no program."""
    from liftnn import compile_clock

    model = ln.MLP("6-13-3", activation="tanh")  # an architecture no other test draws
    with compile_clock.measure() as acc:
        model.init(0)
    assert acc["compiles"] == 0, acc
