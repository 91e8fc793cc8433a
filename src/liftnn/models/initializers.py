"""Weight initialisers.  Each returns (W, b) for one layer, W of shape (fan_out, fan_in).

- glorot_uniform: W ~ U(-l, l), l = sqrt(6 / (fan_in + fan_out)), b = 0 (the Keras default the
  thesis used).
- glorot_normal: W ~ N(0, 2 / (fan_in + fan_out)), b = 0.
- kaiming_uniform: W ~ U(-l, l), l = sqrt(6 / fan_in), b = 0 (He, gain sqrt 2).
- kaiming_normal: W ~ N(0, 2 / fan_in), b = 0.
- torch_default: what torch.nn.Linear does: W, b ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
- normal(scale): W ~ scale * N(0, 1), b = 0 (seed 001's x0.01 / x1 / x100 study).

A spec is a name, "normal(0.01)", a tuple ("normal", 0.01) or a callable
init(key, fan_in, fan_out) -> (W, b).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from liftnn.errors import LiftnnError

Initializer = Callable[[jax.Array, int, int], tuple[jax.Array, jax.Array]]


def _zeros(n):
    return jnp.zeros((n,), dtype=jnp.float64)


def glorot_uniform(key, fan_in, fan_out):
    lim = jnp.sqrt(6.0 / (fan_in + fan_out))
    W = jax.random.uniform(key, (fan_out, fan_in), jnp.float64, -lim, lim)
    return W, _zeros(fan_out)


glorot_uniform.limit = lambda fan_in, fan_out: math.sqrt(6.0 / (fan_in + fan_out))


def glorot_normal(key, fan_in, fan_out):
    std = jnp.sqrt(2.0 / (fan_in + fan_out))
    return std * jax.random.normal(key, (fan_out, fan_in), jnp.float64), _zeros(fan_out)


def kaiming_uniform(key, fan_in, fan_out):
    lim = jnp.sqrt(6.0 / fan_in)
    W = jax.random.uniform(key, (fan_out, fan_in), jnp.float64, -lim, lim)
    return W, _zeros(fan_out)


kaiming_uniform.limit = lambda fan_in, fan_out: math.sqrt(6.0 / fan_in)


def uniform_from_bits(bits, lim):
    """W in [-lim, lim) from the raw random bits (uint64) of jax.random.bits(key, shape): the
    steps of jax.random.uniform after its bits (mantissa fill, shift and scale, clamp), so that
    uniform_from_bits(jax.random.bits(k, s, jnp.uint64), lim) is bit for bit
    jax.random.uniform(k, s, jnp.float64, -lim, lim) when compiled as XLA compiles uniform (the
    same fused multiply-add; tests/models/test_initializers.py checks it)."""
    one = jnp.asarray(np.array(1.0).view(np.uint64), dtype=jnp.uint64)
    mantissa = lax.bitwise_or(lax.shift_right_logical(bits, jnp.array(12, jnp.uint64)), one)
    floats = lax.bitcast_convert_type(mantissa, jnp.float64) - jnp.array(1.0, jnp.float64)
    lo = lax.broadcast_to_rank(lax.convert_element_type(-lim, jnp.float64), bits.ndim)
    hi = lax.broadcast_to_rank(lax.convert_element_type(lim, jnp.float64), bits.ndim)
    return lax.max(lo, lax.reshape(floats * (hi - lo) + lo, bits.shape))


def uniform_from_bits_host(bits: np.ndarray, lim: float) -> np.ndarray:
    """uniform_from_bits by NumPy, bit for bit, with nothing compiled (a cold call compiled
    the scaling in 0.05-0.10 s).  With k = bits >> 12 < 2^52, the mantissa fill gives
    u = k 2^-52 exactly, and XLA's fused multiply-add rounds u (2 lim) - lim once.  That exact
    value is lim t with t = (k - 2^51) 2^-51, itself a double (an integer below 2^51 in size
    times a power of two), so the one rounding of the float product lim * t is the same
    number; then the clamp at -lim.  tests/models/test_initializers.py checks it against the
    compiled uniform_from_bits and jax.random.uniform."""
    k = (np.asarray(bits, dtype=np.uint64) >> np.uint64(12)).astype(np.int64)
    t = (k - (1 << 51)).astype(np.float64) * 2.0**-51
    lim = float(lim)
    return np.maximum(-lim, lim * t)


def kaiming_normal(key, fan_in, fan_out):
    std = jnp.sqrt(2.0 / fan_in)
    return std * jax.random.normal(key, (fan_out, fan_in), jnp.float64), _zeros(fan_out)


def torch_default(key, fan_in, fan_out):
    kw, kb = jax.random.split(key)
    lim = 1.0 / jnp.sqrt(fan_in)
    W = jax.random.uniform(kw, (fan_out, fan_in), jnp.float64, -lim, lim)
    b = jax.random.uniform(kb, (fan_out,), jnp.float64, -lim, lim)
    return W, b


def normal(scale: float = 1.0) -> Initializer:
    """W ~ scale * N(0, 1), zero biases."""
    scale = float(scale)

    def init(key, fan_in, fan_out):
        return scale * jax.random.normal(key, (fan_out, fan_in), jnp.float64), _zeros(fan_out)

    init.__name__ = f"normal({scale:g})"
    return init


INITIALIZERS: dict[str, Callable] = {
    "glorot_uniform": glorot_uniform,
    "glorot_normal": glorot_normal,
    "kaiming_uniform": kaiming_uniform,
    "kaiming_normal": kaiming_normal,
    "torch_default": torch_default,
    "normal": normal,
}
ALIASES = {"xavier_uniform": "glorot_uniform", "xavier_normal": "glorot_normal",
           "he_uniform": "kaiming_uniform", "he_normal": "kaiming_normal", "torch": "torch_default"}

_NORMAL_RE = re.compile(r"^normal\(\s*([-+0-9.eE]+)\s*\)$")


def get_initializer(spec) -> Initializer:
    """Resolve an initialiser spec (see module docstring) to a function."""
    if callable(spec):
        return spec
    if isinstance(spec, (tuple, list)) and len(spec) == 2 and spec[0] == "normal":
        return normal(float(spec[1]))
    name = str(spec).strip().lower()
    m = _NORMAL_RE.match(name)
    if m:
        return normal(float(m.group(1)))
    name = ALIASES.get(name, name)
    if name == "normal":
        return normal(1.0)
    if name not in INITIALIZERS:
        raise LiftnnError(
            f"unknown initialiser {spec!r}; choose one of: {', '.join(sorted(INITIALIZERS))} "
            "(normal takes a scale, e.g. 'normal(0.01)')"
        )
    return INITIALIZERS[name]


def initializer_name(spec) -> str:
    """A printable name for an initialiser spec (what results.csv records)."""
    if callable(spec):
        return getattr(spec, "__name__", "custom")
    if isinstance(spec, (tuple, list)):
        return f"normal({float(spec[1]):g})"
    name = str(spec).strip().lower()
    return ALIASES.get(name, name)
