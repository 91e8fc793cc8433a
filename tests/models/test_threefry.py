"""liftnn.models.threefry against JAX's own threefry, bit for bit, and the MLP draw that uses it."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import liftnn as ln
from liftnn.models import initializers, threefry

SEEDS = [0, 1, 7, 12345, 2**31 - 1, 2**31, 2**32 + 5, 2**40 + 123, 2**63 - 1, -1, -2**63]


def test_the_pinned_jax_is_the_one_reproduced():
    assert threefry.matches_jax()


@pytest.mark.parametrize("seed", SEEDS)
def test_seed_key_split_and_bits_equal_jax(seed):
    key = jax.random.PRNGKey(seed)
    np.testing.assert_array_equal(threefry.seed_key(seed), np.asarray(key))
    for n in (1, 2, 3, 4, 7):
        np.testing.assert_array_equal(threefry.split(threefry.seed_key(seed), n),
                                      np.asarray(jax.random.split(key, n)))
    for shape in [(1,), (5,), (16, 1), (16, 16), (3, 7), (10, 64), (2, 3, 4)]:
        mine = threefry.bits64(threefry.seed_key(seed), shape)
        assert mine.dtype == np.uint64 and mine.shape == shape
        np.testing.assert_array_equal(mine, np.asarray(jax.random.bits(key, shape, jnp.uint64)))


def test_hash_of_many_counters_equals_jax_and_uses_the_high_word():
    """Counters above 2**32 (the high word of the 64-bit index) hash as JAX's do."""
    from jax._src.random.threefry2x32 import threefry2x32_p

    rng = np.random.default_rng(0)
    k = rng.integers(0, 2**32, size=2, dtype=np.uint64).astype(np.uint32)
    x1 = rng.integers(0, 2**32, size=1000, dtype=np.uint64).astype(np.uint32)
    x2 = rng.integers(0, 2**32, size=1000, dtype=np.uint64).astype(np.uint32)
    a, b = threefry.hash2x32(k[0], k[1], x1, x2)
    ra, rb = threefry2x32_p.bind(jnp.uint32(k[0]), jnp.uint32(k[1]), jnp.asarray(x1),
                                 jnp.asarray(x2))
    np.testing.assert_array_equal(a, np.asarray(ra))
    np.testing.assert_array_equal(b, np.asarray(rb))


def test_seeds_beyond_int64_are_refused_as_jax_refuses_them():
    with pytest.raises(OverflowError):
        threefry.seed_key(2**64)


@pytest.mark.parametrize("init", ["glorot_uniform", "kaiming_uniform"])
def test_mlp_init_is_jax_random_uniform_of_the_split_keys(init):
    """MLP.init (host bits) = jax.random.uniform per layer of jax.random.split(PRNGKey(seed))."""
    model = ln.MLP("4-9-3-2", activation="tanh", init=init)
    initf = initializers.get_initializer(init)
    for seed in (0, 3, 2**35 + 1):
        keys = jax.random.split(jax.random.PRNGKey(seed), model.n_layers)
        for (W, b), k, (i, o) in zip(model.init(seed), keys,
                                     zip(model.sizes[:-1], model.sizes[1:])):
            W_ref, b_ref = jax.jit(initf, static_argnums=(1, 2))(k, i, o)
            np.testing.assert_array_equal(np.asarray(W), np.asarray(W_ref))
            np.testing.assert_array_equal(np.asarray(b), np.asarray(b_ref))


def test_a_cold_init_compiles_no_random_bits_program():
    """The draw compiles neither threefry nor the scaling of the bits (both by NumPy)."""
    from liftnn import compile_clock

    model = ln.MLP("5-11-2", activation="tanh")  # an architecture no other test draws
    with compile_clock.measure() as acc:
        model.init(0)
    assert acc["compiles"] == 0, acc
