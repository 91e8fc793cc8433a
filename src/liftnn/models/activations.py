"""Activation (transfer) functions with their derivatives.

Each activation is a pair (sigma, dsigma) of elementwise JAX functions of the pre-activation
a = W z + b.  The explicit derivative is what backpropagation (seed 002: delta_j = h'_j(z_j) ...)
and the lifted Jacobian (seed 000, Table 3.1: sigma'(W z + b)) use; autodiff only checks it.
For ReLU the derivative is the generalised one, 1[a > 0].
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from liftnn._validate import check_choice

Array = jax.Array


class Activation(NamedTuple):
    """An elementwise transfer function and its derivative, both of the pre-activation."""

    name: str
    f: Callable[[Array], Array]
    df: Callable[[Array], Array]


LEAKY_SLOPE = 0.01


def _sigmoid(a):
    return jax.nn.sigmoid(a)


def _dsigmoid(a):
    s = jax.nn.sigmoid(a)
    return s * (1.0 - s)


def _dtanh(a):
    t = jnp.tanh(a)
    return 1.0 - t * t


ACTIVATIONS: dict[str, Activation] = {
    "identity": Activation("identity", lambda a: a, lambda a: jnp.ones_like(a)),
    "relu": Activation("relu", lambda a: jnp.maximum(a, 0.0), lambda a: (a > 0).astype(a.dtype)),
    "leaky_relu": Activation(
        "leaky_relu",
        lambda a: jnp.where(a > 0, a, LEAKY_SLOPE * a),
        lambda a: jnp.where(a > 0, 1.0, LEAKY_SLOPE).astype(a.dtype),
    ),
    "tanh": Activation("tanh", jnp.tanh, _dtanh),
    "sigmoid": Activation("sigmoid", _sigmoid, _dsigmoid),
    "softplus": Activation("softplus", jax.nn.softplus, _sigmoid),
}
ALIASES = {"tansig": "tanh", "logsig": "sigmoid", "linear": "identity", "purelin": "identity",
           "poslin": "relu"}


def canonical_name(name: str) -> str:
    """Resolve aliases ("tansig" -> "tanh") and check the name exists."""
    if isinstance(name, Activation):
        return name.name
    key = ALIASES.get(str(name).lower(), str(name).lower())
    return check_choice("activation", key, list(ACTIVATIONS) + list(ALIASES))


def get_activation(name: str | Activation) -> Activation:
    """Return the Activation for a name or alias (raises LiftnnError listing valid names)."""
    if isinstance(name, Activation):
        return name
    return ACTIVATIONS[ALIASES.get(canonical_name(name), canonical_name(name))]
