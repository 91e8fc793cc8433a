"""The output block of the lifted Gauss-Newton step: least squares, or the softmax cross-entropy.

The per-sample elimination of liftnn.lifted.gauss_newton needs, at the output of sample i, only
a residual F_i (O,) and its Jacobian B_i (O, O) with respect to the output pre-activation
a_i = W_out z_L,i + b_out, such that the Gauss-Newton model of the loss term is

    l_i(a_i + delta) ~ l_i(a_i) + g_i^T delta + 1/2 delta^T H_i delta,
    g_i = B_i^T F_i,   H_i = B_i^T B_i,   i.e.  1/2 ||F_i + B_i delta||^2 + const.

Least squares ("mse", "sse"): F_i = c (sigma_out(a_i) - y_i), B_i = c diag(sigma_out'(a_i)):
the identity Hessian of 1/2 ||F||^2 in the residuals, the classical Gauss-Newton.
gauss_newton keeps the diagonal as `Terms.Do` (B = c diag(Do)) and its original formulas.

Softmax cross-entropy ("cross_entropy", identity output activation, one-hot y_i): the loss is
C = 1/m sum_i l_i with l_i = -sum_k y_ik log p_ik, p_i = softmax(a_i), and

    g_i = (p_i - y_i) / m,    H_i = (diag(p_i) - p_i p_i^T) / m   (PSD, rank O - 1, H_i 1 = 0),

the generalised Gauss-Newton (Schraudolph 2002; liftnn.solvers.ggn for single shooting): the
loss Hessian in the logits replaces the identity, the network's second derivatives are dropped.
With c = 1/sqrt(m) and q_i = sqrt(p_i) the exact factor (as ggn.py's, transposed) is

    B_i = c diag(q_i) (I - 1 p_i^T):  B_i^T B_i = c^2 (I - p 1^T) diag(p) (I - 1 p^T)
                                                = c^2 (diag(p) - p p^T) = H_i   (sum_k p_k = 1),

and the "residual" F_i = c (p_i - y_i) / q_i gives B_i^T F_i = c^2 (I - p 1^T)(p - y)
= c^2 (p - y) = g_i, since 1^T (p - y) = 0.  So the lifted GGN model is a least-squares model
and the elimination, the three reduced solves and the back-substitution are those of least
squares with B_i in place of c diag(sigma_out').  F_i is only a representation of g_i
(||F_i||^2 = c^2 (1/p_iy - 1), not the loss): the merit Phi of the line search uses the true
cross-entropy (`Out.loss`) and the slope of the model is taken as grad Phi . d.  q_i is floored
at 1e-150 (p_ik underflowing to 0 leaves F_ik = 0 for a wrong class; for the true class the
loss is then infinite anyway).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from liftnn.models.losses import residual_scale

#: the losses whose lifted output block is the softmax cross-entropy's GGN block
CROSS_ENTROPY = "cross_entropy"
Q_FLOOR = 1e-150


class Out(NamedTuple):
    """The cross-entropy output block of a batch: F (m, O), B (m, O, O), loss = 1/m sum_i l_i."""

    F: jax.Array
    B: jax.Array
    loss: jax.Array


def scale(loss: str, m: int, O: int) -> float:
    """The output scale c: residual_scale for least squares (F = c (f - Y)), 1/sqrt(m) for the
    cross-entropy (c^2 = the loss's 1/m)."""
    if loss == CROSS_ENTROPY:
        return (1.0 / m) ** 0.5
    return float(residual_scale(loss, m * O))


def cross_entropy(ao, Y, c) -> Out:
    """F, B and the mean cross-entropy at the logits ao (m, O) for one-hot Y (m, O), c = 1/sqrt(m)
    (module docstring)."""
    logp = jax.nn.log_softmax(ao, axis=-1)
    p = jnp.exp(logp)
    q = jnp.maximum(jnp.sqrt(p), Q_FLOOR)
    O = ao.shape[-1]
    B = c * q[:, :, None] * (jnp.eye(O)[None] - p[:, None, :])
    return Out(c * (p - Y) / q, B, -c * c * jnp.sum(Y * logp))


def hessian_block(B) -> jax.Array:
    """H_i = B_i^T B_i (m, O, O): the loss Hessian in the logits of each sample (the GGN block)."""
    return jnp.einsum("mki,mkj->mij", B, B)
