"""Multilayer perceptron: the network as a multi-stage dynamical system (seed 000, eq. 1.5).

    z_0 = x,   z_j = sigma_j(W_j z_{j-1} + b_j)  (j = 1..L),   f = sigma_out(W_out z_L + b_out)

Params are a list of (W, b) pairs, W of shape (out, in), b of shape (out,) or None when the
network has no biases.  Samples are rows: X has shape (m, d_in), the output (m, d_out).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from liftnn._validate import check_data, check_input_shape
from liftnn.errors import LiftnnError
from liftnn.models import threefry
from liftnn.models.activations import canonical_name, get_activation
from liftnn.models.initializers import get_initializer, initializer_name, uniform_from_bits_host

Params = list  # list[tuple[Array, Array | None]]


def parse_arch(arch: str | Sequence[int]) -> tuple[int, ...]:
    """'1-16-16-1' -> (1, 16, 16, 1); checks every size is a positive integer."""
    if isinstance(arch, str):
        try:
            sizes = tuple(int(s) for s in arch.replace("x", "-").split("-"))
        except ValueError:
            raise LiftnnError(f"architecture {arch!r} is not of the form 1-16-16-1") from None
    else:
        sizes = tuple(int(s) for s in arch)
    if len(sizes) < 2:
        raise LiftnnError(f"architecture needs at least an input and an output size; got {sizes}")
    if any(s <= 0 for s in sizes):
        raise LiftnnError(f"layer sizes must be positive; got {sizes}")
    return sizes


class MLP:
    """A fully connected feedforward network.

    Args:
        sizes: layer widths (d_in, h_1, ..., h_L, d_out) or a string "1-16-16-1".
        activation: hidden activation name (or one name per hidden layer).
        output_activation: activation of the output layer ("identity" for regression).
        bias: whether layers have biases.
        init: initialiser spec (see liftnn.models.initializers); kept as `init_spec`.
        dropout: dropout rate per hidden layer (a float for all); applied only in training.

    `.init(seed)` draws the initial params; models are immutable and hashable (usable as static
    arguments of jitted functions).
    """

    def __init__(self, sizes, activation="tanh", output_activation="identity", bias=True,
                 init="glorot_uniform", dropout=0.0):
        sizes = parse_arch(sizes)
        n_hidden = len(sizes) - 2
        acts = (activation,) * n_hidden if isinstance(activation, str) else tuple(activation)
        acts = tuple(canonical_name(a) for a in acts)
        if len(acts) != n_hidden:
            raise LiftnnError(f"{len(acts)} activations given for {n_hidden} hidden layers")
        get_initializer(init)  # validate now
        drop = (float(dropout),) * n_hidden if np.isscalar(dropout) else tuple(float(d) for d in dropout)
        if len(drop) != n_hidden or any(not 0.0 <= d < 1.0 for d in drop):
            raise LiftnnError(f"dropout must be one rate in [0, 1) per hidden layer; got {drop}")
        self.sizes = sizes
        self.activations = acts + (canonical_name(output_activation),)
        self.activation = acts[0] if len(set(acts)) == 1 and acts else acts
        self.output_activation = self.activations[-1]
        self.bias = bool(bias)
        self.init_spec = init
        self.dropout = drop
        self._frozen = True

    def __setattr__(self, name, value):
        if getattr(self, "_frozen", False):
            raise AttributeError("MLP is immutable; build a new one")
        object.__setattr__(self, name, value)

    def _key(self):
        return (self.sizes, self.activations, self.bias, self.init_name, self.dropout)

    def __eq__(self, other):
        return isinstance(other, MLP) and self._key() == other._key()

    def __hash__(self):
        return hash(self._key())

    def __repr__(self):
        return (f"MLP({self.arch!r}, activation={self.activation!r}, output_activation="
                f"{self.output_activation!r}, bias={self.bias}, init={self.init_name!r})")

    # ---- structure -------------------------------------------------------------------------
    @property
    def n_layers(self) -> int:
        """Number of weight layers (hidden layers + output layer)."""
        return len(self.sizes) - 1

    @property
    def d_in(self) -> int:
        return self.sizes[0]

    @property
    def d_out(self) -> int:
        return self.sizes[-1]

    @property
    def hidden_sizes(self) -> tuple[int, ...]:
        return self.sizes[1:-1]

    @property
    def n_params(self) -> int:
        return sum(o * i + (o if self.bias else 0) for i, o in zip(self.sizes[:-1], self.sizes[1:]))

    @property
    def init_name(self) -> str:
        return initializer_name(self.init_spec)

    @property
    def arch(self) -> str:
        return "-".join(str(s) for s in self.sizes)

    # ---- parameters ------------------------------------------------------------------------
    def init(self, seed: int = 0) -> Params:
        """Initial weights for `seed`: deterministic, the same for every method given the seed."""
        key = threefry.seed_key(seed) if threefry.matches_jax() else jax.random.PRNGKey(int(seed))
        W_b = _init_fn(self)(key)
        return [(W, b if self.bias else None) for W, b in W_b]

    def flatten(self, params: Params) -> jax.Array:
        """Params -> one vector theta (W row-major then b, layer by layer)."""
        return ravel_pytree(params)[0]

    def unflatten(self, theta) -> Params:
        """Vector theta -> params (inverse of flatten)."""
        return _unravel_for(self)(jnp.asarray(theta))

    # ---- evaluation ------------------------------------------------------------------------
    def apply(self, params: Params, X, *, key=None, train: bool = False) -> jax.Array:
        """Network output f(X), shape (m, d_out), of X (m, d_in) (anything else raises
        LiftnnError naming d_in).  Dropout (inverted scaling) only if train."""
        Z = jnp.asarray(X)
        check_input_shape(Z.shape, self.d_in)
        if train and key is None and any(r > 0.0 for r in self.dropout):
            raise LiftnnError("dropout in training mode needs a random key: apply(..., train=True, "
                              "key=jax.random.key(seed))")
        drop = self.dropout if train and key is not None else (0.0,) * (self.n_layers - 1)
        keys = jax.random.split(key, self.n_layers) if (train and key is not None) else [None] * self.n_layers
        for j, (W, b) in enumerate(params):
            A = Z @ W.T + (b if b is not None else 0.0)
            Z = get_activation(self.activations[j]).f(A)
            if j < self.n_layers - 1 and drop[j] > 0.0:
                keep = jax.random.bernoulli(keys[j], 1.0 - drop[j], Z.shape)
                Z = jnp.where(keep, Z / (1.0 - drop[j]), 0.0)
        return Z

    def __call__(self, params, X, **kw):
        return self.apply(params, X, **kw)

    def forward(self, params: Params, X) -> tuple[list, list]:
        """Forward pass that keeps every layer: (pre-activations [a_1..a_{L+1}], outputs [z_0..z_{L+1}])."""
        Z = jnp.asarray(X)
        check_input_shape(Z.shape, self.d_in)
        pre, outs = [], [Z]
        for j, (W, b) in enumerate(params):
            A = Z @ W.T + (b if b is not None else 0.0)
            Z = get_activation(self.activations[j]).f(A)
            pre.append(A)
            outs.append(Z)
        return pre, outs

    def check_data(self, X, Y=None):
        """Validate X (and Y) against the network's input and output sizes."""
        return check_data(X, Y, self.d_in, self.d_out)

    def describe(self) -> dict:
        """A JSON-able description (what model files store)."""
        return {
            "type": "MLP",
            "sizes": list(self.sizes),
            "activations": list(self.activations[:-1]),
            "output_activation": self.activations[-1],
            "bias": self.bias,
            "init": self.init_name,
            "dropout": list(self.dropout),
        }


#: XLA options of the program that draws the raw random bits of a uniform initialiser when JAX's
#: random bits are not the ones liftnn.models.threefry computes on the host (else no program): integer
#: work only (threefry), exact at any optimisation level, and optimising it costs most of a cold
#: draw's compile time (10-16-1: 0.72 s for the one default program, 0.30 s for the two)
BITS_OPTIONS = {"xla_backend_optimization_level": 0}


@functools.lru_cache(maxsize=256)
def _init_fn(model: MLP):
    """One function drawing all layers' (W, b) from a key (compiled once per model).  For the
    uniform initialisers with a `limit` (glorot_uniform, kaiming_uniform): the random bits by
    NumPy (liftnn.models.threefry; where JAX's bits are not threefry's, a program compiled with
    BITS_OPTIONS), then their scaling by NumPy too (initializers.uniform_from_bits_host): the
    same bits as jax.random.uniform in one program, with nothing compiled."""
    initf = get_initializer(model.init_spec)

    def draw(key):
        keys = jax.random.split(key, model.n_layers)
        out = []
        for k, (i, o) in zip(keys, zip(model.sizes[:-1], model.sizes[1:])):
            W, b = initf(k, i, o)
            out.append((jnp.asarray(W, jnp.float64), jnp.asarray(b, jnp.float64)))
        return out

    one_program = jax.jit(draw)
    if not hasattr(initf, "limit"):
        return one_program
    split = _uniform_draw(model, initf.limit)
    # under a trace (model.init inside a jitted function) the draw is part of that program
    return lambda key: one_program(key) if isinstance(key, jax.core.Tracer) else split(key)


def _uniform_draw(model: MLP, limit):
    """The two-program draw of _init_fn: key -> [(W, b)] per layer."""
    shapes = [(o, i) for i, o in zip(model.sizes[:-1], model.sizes[1:])]

    def bits(key):
        keys = jax.random.split(key, model.n_layers)
        return [jax.random.bits(k, s, jnp.uint64) for k, s in zip(keys, shapes)]

    def host_bits(key):  # the same bits by NumPy, nothing compiled (liftnn.models.threefry)
        keys = threefry.split(np.asarray(key), model.n_layers)
        return [threefry.bits64(k, s) for k, s in zip(keys, shapes)]

    def weights(layer_bits):  # by NumPy, bit for bit what XLA computes (nothing compiled)
        return [(jax.device_put(uniform_from_bits_host(np.asarray(b), limit(i, o))),
                 jax.device_put(np.zeros(o))) for b, (o, i) in zip(layer_bits, shapes)]

    if threefry.matches_jax():
        return lambda key: weights(host_bits(key))
    draw_bits = jax.jit(bits, compiler_options=BITS_OPTIONS)
    return lambda key: weights(draw_bits(key))


_UNRAVEL_CACHE: dict = {}


def _unravel_for(model: MLP):
    key = (model.sizes, model.bias)
    if key not in _UNRAVEL_CACHE:
        _UNRAVEL_CACHE[key] = ravel_pytree(model.init(0))[1]
    return _UNRAVEL_CACHE[key]
