"""Loss functions L(pred, Y) on a batch; pred and Y of shape (m, d_out).

- "mse": mean over all entries of (pred - Y)^2, as torch.nn.MSELoss.
- "sse": half the sum of squares, 1/2 sum (pred - Y)^2 (seed 002's E).
- "cross_entropy": softmax cross-entropy averaged over samples; Y one-hot (m, k) or class
  indices (m,) / (m, 1).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from liftnn._validate import canonical


def mse(pred, Y):
    return jnp.mean((pred - Y) ** 2)


def sse(pred, Y):
    return 0.5 * jnp.sum((pred - Y) ** 2)


def cross_entropy(logits, Y):
    logp = jax.nn.log_softmax(logits, axis=-1)
    if Y.ndim == 1 or Y.shape[-1] == 1:
        idx = Y.reshape(-1).astype(jnp.int32)
        return -jnp.mean(jnp.take_along_axis(logp, idx[:, None], axis=-1))
    return -jnp.mean(jnp.sum(Y * logp, axis=-1))


LOSSES: dict[str, Callable] = {"mse": mse, "sse": sse, "cross_entropy": cross_entropy}


def loss_name(name: str) -> str:
    """The canonical loss name ("MSE" -> "mse"; case ignored as for methods and activations)."""
    return canonical("loss", name, LOSSES)


def get_loss(name: str) -> Callable:
    """Return the loss function for a name (raises LiftnnError listing valid names)."""
    if callable(name):
        return name
    return LOSSES[loss_name(name)]


def is_least_squares(name) -> bool:
    """True for the losses that are half a squared norm of a residual (up to a constant)."""
    return name in ("mse", "sse")


def residual_scale(name: str, n_entries: int) -> float:
    """The factor c with loss = 1/2 ||c (pred - Y)||^2, for "mse" and "sse"."""
    if name == "mse":
        return (2.0 / n_entries) ** 0.5
    if name == "sse":
        return 1.0
    raise ValueError(f"loss {name!r} is not a sum of squares")
