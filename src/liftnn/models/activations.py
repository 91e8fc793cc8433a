"""Activation (transfer) functions with their derivatives.

Each activation is a pair (sigma, dsigma) of elementwise JAX functions of the pre-activation
a = W z + b.  The explicit derivative is what backpropagation (lecture notes on backpropagation: delta_j = h'_j(z_j) ...)
and the lifted Jacobian (the thesis, Table 3.1, docs/lifted.md: sigma'(W z + b)) use; autodiff only checks it.
For ReLU the derivative is the generalised one, 1[a > 0].

The lifted trainer (docs/lifted.md, "ReLU") may replace ReLU in the layer constraints by a smooth
relaxation driven to ReLU as t -> 0: `relu_relaxation(mode, t)` for the modes in RELU_MODES.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from liftnn._validate import canonical, check_choice

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
    """The canonical activation name: aliases resolved ("tansig" -> "tanh", MATLAB's names in
    ALIASES) and case ignored ("ReLU" -> "relu"), as for method and loss names
    (liftnn._validate.canonical); an unknown name raises LiftnnError listing the valid ones."""
    if isinstance(name, Activation):
        return name.name
    return canonical("activation", name, ACTIVATIONS, ALIASES)


def get_activation(name: str | Activation) -> Activation:
    """Return the Activation for a name or alias (raises LiftnnError listing valid names)."""
    if isinstance(name, Activation):
        return name
    return ACTIVATIONS[canonical_name(name)]


# ---- ReLU relaxations for the lifted constraints (docs/lifted.md, "ReLU") -------------------
RELU_MODES = ("gd", "complementarity", "softplus")


def scholtes_relu(t) -> Activation:
    """The thesis's complementarity reformulation (ch. 2.2) with a Scholtes relaxation.

    z >= 0, z - a >= 0, z (z - a) = t^2 has the unique solution
    z = (a + sqrt(a^2 + 4 t^2)) / 2, with dz/da = (1 + a / sqrt(a^2 + 4 t^2)) / 2; -> relu as t -> 0.
    `t` may be a traced scalar.
    """
    return Activation(
        "compl_t",
        lambda a: 0.5 * (a + jnp.sqrt(a * a + 4.0 * t * t)),
        lambda a: 0.5 * (1.0 + a / jnp.sqrt(a * a + 4.0 * t * t)),
    )


def softplus_relu(t) -> Activation:
    """The softplus homotopy sigma_t(a) = t softplus(a / t), sigma_t' = sigmoid(a / t); -> relu as t -> 0."""
    return Activation("softplus_t", lambda a: t * jax.nn.softplus(a / t), lambda a: jax.nn.sigmoid(a / t))


def relu_relaxation(mode: str, t) -> Activation:
    """The ReLU used in the lifted constraints: "gd" max(a, 0) with the generalised derivative
    1[a > 0]; "complementarity" `scholtes_relu(t)`; "softplus" `softplus_relu(t)`."""
    check_choice("ReLU mode", mode, RELU_MODES)
    if mode == "gd":
        return ACTIVATIONS["relu"]
    return scholtes_relu(t) if mode == "complementarity" else softplus_relu(t)
