"""JAX's threefry random bits on the host, in NumPy: the initial weights without compiling.

A cold first `model.init(seed)` compiled JAX's threefry programs for the random bits of every
layer (the key, the split and the bits: 0.26-0.28 s per architecture on a 2-core CPU, measured
2026-12-07; docs/benchmarks.md "What a first call compiles"), for a few hundred random numbers.
Threefry-2x32 is integer arithmetic (20 rounds of add, rotate and xor on pairs of uint32), so
NumPy computes the same bits exactly, in microseconds and with nothing to compile.  This module
reproduces, for a raw uint32 key of shape (2,) and `jax_threefry_partitionable` on (the default
of the pinned JAX):

- `seed_key(seed)`      = jax.random.PRNGKey(seed)   (the 64-bit seed split into two words),
- `split(key, n)`       = jax.random.split(key, n),
- `bits64(key, shape)`  = jax.random.bits(key, shape, jnp.uint64),

each through `hash2x32`, the Threefry-2x32 block function (Salmon et al. 2011, "Parallel random
numbers: as easy as 1, 2, 3"; JAX's rotation constants and key schedule).  The counters are the
row-major indices of the output as 64-bit numbers split into a high and a low word, as JAX's
partitionable threefry does.  tests/models/test_threefry.py checks all three against JAX bit for
bit; liftnn.models.mlp uses them for the uniform initialisers' draw.
"""

from __future__ import annotations

import math

import numpy as np

#: Threefry-2x32's rotation constants, the two groups of four rounds used alternately
ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
#: the key-schedule parity constant of Threefry
PARITY = 0x1BD11BDA
_U32 = np.uint32


def matches_jax() -> bool:
    """Whether JAX's own random bits are the ones this module computes: the threefry2x32
    implementation (jax_default_prng_impl) with jax_threefry_partitionable on."""
    import jax

    return (str(jax.config.jax_default_prng_impl) == "threefry2x32"
            and bool(jax.config.jax_threefry_partitionable))


def _rotl(x: np.ndarray, d: int) -> np.ndarray:
    return (x << _U32(d)) | (x >> _U32(32 - d))


def hash2x32(k1, k2, x1: np.ndarray, x2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Threefry-2x32 (20 rounds) of the counter pairs (x1, x2) under the key (k1, k2): uint32
    arrays of one shape in, two uint32 arrays of that shape out (wrapping arithmetic)."""
    k1, k2 = np.asarray(k1, _U32).reshape(1), np.asarray(k2, _U32).reshape(1)
    ks = (k1, k2, k1 ^ k2 ^ _U32(PARITY))
    a = np.asarray(x1, _U32) + ks[0]
    b = np.asarray(x2, _U32) + ks[1]
    for i in range(5):
        for r in ROTATIONS[i % 2]:
            a = a + b
            b = _rotl(b, r) ^ a
        a = a + ks[(i + 1) % 3]
        b = b + ks[(i + 2) % 3] + _U32(i + 1)
    return a, b


def seed_key(seed: int) -> np.ndarray:
    """jax.random.PRNGKey(seed): the seed as a 64-bit integer, its high and low 32-bit words."""
    s = int(np.int64(seed).view(np.uint64))  # OverflowError beyond int64, as JAX
    return np.array([s >> 32, s & 0xFFFFFFFF], dtype=_U32)


def _counters(size: int) -> tuple[np.ndarray, np.ndarray]:
    idx = np.arange(size, dtype=np.uint64)
    return (idx >> np.uint64(32)).astype(_U32), (idx & np.uint64(0xFFFFFFFF)).astype(_U32)


def split(key, n: int) -> np.ndarray:
    """jax.random.split(key, n) for a raw key (2,) uint32: (n, 2) uint32."""
    key = np.asarray(key, _U32)
    a, b = hash2x32(key[0], key[1], *_counters(int(n)))
    return np.stack([a, b], axis=-1)


def bits64(key, shape) -> np.ndarray:
    """jax.random.bits(key, shape, jnp.uint64) for a raw key (2,) uint32."""
    key = np.asarray(key, _U32)
    shape = tuple(int(s) for s in shape)
    a, b = hash2x32(key[0], key[1], *_counters(math.prod(shape)))
    return ((a.astype(np.uint64) << np.uint64(32)) | b.astype(np.uint64)).reshape(shape)
