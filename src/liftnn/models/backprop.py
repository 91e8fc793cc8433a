"""Explicit backpropagation: the delta recursion of seed 002 and seed 000 sec. 1.4.

Forward pass: store the pre-activations (internal activations) z_j and outputs o_j = h_j(z_j).
Backward pass (seed 002, "Back-propagation"):

    delta_j = dE/dz_j = h'_j(z_j) * sum_{i in Out(j)} delta_i w_ij,      dE/dw_ji = delta_j o_i

with delta_j = dE/do_j * h'_j(z_j) at an output unit.  For a layered network this is seed 000
eqs. 1.13-1.16: delta_l = f'_l . W_{l+1}^T delta_{l+1},  grad_{W_l} C = delta_l z_{l-1}^T, and the
gradient with respect to the input is grad_x C = W_1^T delta_1 (eq. 1.13).

Everything is batched over samples: rows are samples, so per layer
    Delta_l = (Delta_{l+1} @ W_{l+1}) * h'(A_l),   dW_l = Delta_l^T Z_{l-1},   db_l = 1^T Delta_l.
The derivatives are the explicit ones of liftnn.models.activations (Activation.df); autodiff is
not used here (the tests compare against it).

Losses (liftnn.models.losses) enter only through dL/dpred (pred: (m, d_out)):
    "mse":  2 (pred - Y) / (m d_out)       "sse":  pred - Y
    "cross_entropy":  (softmax(pred) (Y 1) - Y) / m  (pred are the logits; = (softmax - Y)/m
                      for one-hot Y)
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from scipy.optimize import OptimizeResult, minimize

from liftnn._validate import as_2d_finite, check_choice, check_positive
from liftnn.errors import LiftnnError
from liftnn.models.activations import get_activation
from liftnn.models.feedforward_graph import FeedforwardGraph
from liftnn.models.losses import LOSSES
from liftnn.models.mlp import MLP
from liftnn.models.moeller import Moeller2Net

# ---- loss derivative ---------------------------------------------------------------------------


def _loss_grad(loss: str, pred, Y):
    """dL/dpred for the batch loss L(pred, Y); pred: (m, d_out)."""
    m = pred.shape[0]
    if loss == "mse":
        return 2.0 * (pred - Y) / (pred.shape[0] * pred.shape[1])
    if loss == "sse":
        return pred - Y
    # cross_entropy: L = -(1/m) sum_k sum_c Y_kc log softmax(pred_k)_c, so
    # dL/dpred_kc = (softmax(pred_k)_c sum_c' Y_kc' - Y_kc) / m  (= (P - Y)/m for one-hot rows)
    P = jax.nn.softmax(pred, axis=-1)
    return (P * jnp.sum(Y, axis=-1, keepdims=True) - Y) / m


def _prepare(model, X, Y, loss):
    """Validate (model, X, Y, loss) before any work; returns jnp X (m, d_in) and Y (m, d_out)."""
    if not isinstance(model, (MLP, FeedforwardGraph, Moeller2Net)):
        raise LiftnnError(f"backprop supports MLP, FeedforwardGraph and Moeller2Net; got "
                          f"{type(model).__name__}")
    loss = check_choice("loss", str(loss).lower(), LOSSES)
    if loss != "cross_entropy":
        Xa, Ya = model.check_data(X, Y)
        return loss, jnp.asarray(Xa), jnp.asarray(Ya)
    Xa = model.check_data(X)
    Ya = as_2d_finite("Y", Y)
    if Ya.shape[0] != Xa.shape[0]:
        raise LiftnnError(f"X has {Xa.shape[0]} samples but Y has {Ya.shape[0]}")
    k = model.d_out
    if Ya.shape[1] == 1 and k > 1:  # class indices
        idx = Ya[:, 0]
        if np.any(idx != np.round(idx)) or np.any(idx < 0) or np.any(idx >= k):
            raise LiftnnError(f"cross_entropy: class indices in Y must be integers in [0, {k})")
        Ya = np.eye(k)[idx.astype(int)]
    elif Ya.shape[1] != k:
        raise LiftnnError(f"Y has {Ya.shape[1]} columns but the network outputs {k}")
    return loss, jnp.asarray(Xa), jnp.asarray(Ya)


def _check_mlp_params(model: MLP, params):
    try:
        params = [(jnp.asarray(W, jnp.float64), None if b is None else jnp.asarray(b, jnp.float64))
                  for W, b in params]
    except (TypeError, ValueError):
        raise LiftnnError("MLP params must be a list of (W, b) pairs") from None
    if len(params) != model.n_layers:
        raise LiftnnError(f"MLP params have {len(params)} layers; the model has {model.n_layers}")
    for l, ((W, b), i, o) in enumerate(zip(params, model.sizes[:-1], model.sizes[1:])):
        if W.shape != (o, i):
            raise LiftnnError(f"layer {l}: W has shape {W.shape}, expected {(o, i)}")
        if model.bias and (b is None or b.shape != (o,)):
            raise LiftnnError(f"layer {l}: b must have shape {(o,)}")
        if not model.bias and b is not None:
            raise LiftnnError(f"layer {l}: the model has no biases but b is given")
    return params


# ---- the three backward passes --------------------------------------------------------------


def _mlp_backward(model: MLP, params, X, G_out):
    """Layer-wise delta recursion (seed 000 eqs. 1.14-1.16), batched.

    G_out = dL/dpred: (m, d_out).  Returns ([(dW_l, db_l)], dL/dX (m, d_in)).
    """
    A, Z = model.forward(params, X)  # A[l]: (m, d_{l+1}) pre-activations, Z[l]: (m, d_l) outputs
    grads = [None] * model.n_layers
    delta = G_out * get_activation(model.activations[-1]).df(A[-1])
    for l in range(model.n_layers - 1, -1, -1):
        W, b = params[l]
        dW = delta.T @ Z[l]                         # dE/dw_ji = sum_k delta_j o_i
        db = jnp.sum(delta, axis=0) if b is not None else None
        grads[l] = (dW, db)
        back = delta @ W                            # sum_{i in Out(j)} delta_i w_ij
        if l > 0:
            delta = back * get_activation(model.activations[l - 1]).df(A[l - 1])
    return grads, back


def _graph_backward(model: FeedforwardGraph, w, X, G_out):
    """Unit-wise delta recursion on a feedforward graph (seed 002), batched over samples.

    Units are visited from the deepest level down; units of one level do not feed each other,
    so delta_j = h'_j(z_j) G_j, with G_j = dE/do_j = sum_{i in Out(j)} delta_i w_ij (plus dL/dpred
    at output units), is computed for the whole level at once, and then G receives the level's
    contributions delta_j w_ji at every source unit i (one product with the level's rows of the
    weight matrix).  Finally dE/dw_ji = sum_k delta_j o_i for every edge.  Works in the graph's
    internal unit order (levels contiguous).  Returns (dE/dw: (n_edges,), dE/dX: (m, d_in)).
    """
    Z, O, W = model._forward_internal(w, X)
    n = model.n_units
    P_out = np.zeros((model.d_out, n))
    P_out[np.arange(model.d_out), model._out_int] = 1.0
    G = G_out @ jnp.asarray(P_out)                  # dE/do at the output units, zero elsewhere
    deltas = []
    for start, stop, groups in reversed(model._blocks):
        delta = jnp.concatenate([get_activation(name).df(Z[:, a:b]) * G[:, a:b]
                                 for name, a, b in groups], axis=1)
        G = G + delta @ W[start:stop, :]            # G_i += delta_j w_ji for every edge i -> j
        deltas.append(delta)
    D = jnp.concatenate([jnp.zeros((X.shape[0], model.n_inputs + 1))] + deltas[::-1], axis=1)
    grad = jnp.sum(D[:, model._dst_int] * O[:, model._src_int], axis=0)   # delta_j o_i
    return grad, G[:, 1:1 + model.n_inputs]


def _moeller_backward(model: Moeller2Net, params, X, G_out):
    """Seed 001's network: the recursion with its computed bias units h0 and H0.

    With D3 = dL/dA3, D2 = dL/dA2, D1 = dL/dh* (all batched, rows = samples):
        D3 = G_out * (1 - z^2)                                 dW3 = D3^T H*
        D2 = (D3 W3) * (1 - H*^2) + e_1 (D3 1)(1 - H0^2)       dW2 = D2^T h*
        D1 = D2 W2 + e_1 (D2 1) sigmoid'(h*_1)                 dW1 = D1^T y
    (H0 feeds every output with weight 1; h0 feeds every unit of H* with weight 1.)
    """
    W1, W2, W3 = model._weights(params)
    f = model.forward(params, X)
    tanh, sig = get_activation("tanh"), get_activation("sigmoid")
    D3 = G_out * tanh.df(f["A3"])
    dW3 = D3.T @ f["H_star"]
    D2 = (D3 @ W3) * tanh.df(f["A2"])
    D2 = D2.at[:, 0].add(jnp.sum(D3, axis=1) * tanh.df(f["A2"][:, 0]))
    dW2 = D2.T @ f["h_star"]
    D1 = D2 @ W2                                     # h* has the identity transfer function
    D1 = D1.at[:, 0].add(jnp.sum(D2, axis=1) * sig.df(f["h_star"][:, 0]))
    dW1 = D1.T @ jnp.asarray(X, jnp.float64)
    return [(dW1, None), (dW2, None), (dW3, None)], D1 @ W1


def _check_params(model, params):
    """Validate params against the model (shapes, structure) and return them as float64 arrays."""
    if isinstance(model, MLP):
        return _check_mlp_params(model, params)
    if isinstance(model, FeedforwardGraph):
        return model._check_params(params)
    return [(W, None) for W in model._weights(params)]


@functools.partial(jax.jit, static_argnames=("model", "loss"))
def _backward_core(model, params, X, Y, loss):
    """(gradient w.r.t. params, gradient w.r.t. X, loss value, prediction); inputs validated.

    Compiled once per (model, loss, shapes): models are immutable and hashable.
    """
    if isinstance(model, MLP):
        backward = _mlp_backward
    elif isinstance(model, FeedforwardGraph):
        backward = _graph_backward
    else:
        backward = _moeller_backward
    pred = model.apply(params, X)
    g, gx = backward(model, params, X, _loss_grad(loss, pred, Y))
    return g, gx, LOSSES[loss](pred, Y), pred


def _backward(model, params, X, Y, loss):
    return _backward_core(model, _check_params(model, params), X, Y, loss)


# ---- public ---------------------------------------------------------------------------------


def backprop(model, params, X, Y, loss: str = "mse"):
    """Gradient of the batch loss L(f(X), Y) with respect to the weights, by the delta recursion.

    Seed 002 ("Back-propagation"): delta_j = h'_j(z_j) sum_{i in Out(j)} delta_i w_ij and
    dE/dw_ji = delta_j o_i; seed 000 sec. 1.4, eqs. 1.14-1.16 for layered networks.

    Args:
        model: an MLP (layer-wise recursion), a FeedforwardGraph (unit-wise recursion) or a
            Moeller2Net (seed 001).  Dropout is not applied (the inference network).
        params: the model's params (MLP: [(W, b)], graph: w of shape (n_edges,), Moeller2Net:
            [(W1, None), (W2, None), (W3, None)]).
        X: (m, d_in) inputs.  Y: (m, d_out) targets (for "cross_entropy" also class indices
            (m,) or (m, 1)).
        loss: "mse" (mean over all entries), "sse" (half sum of squares) or "cross_entropy"
            (softmax cross-entropy of the network outputs, averaged over samples).

    Returns:
        The gradient in the structure of params.
    """
    loss, Xa, Ya = _prepare(model, X, Y, loss)
    return _backward(model, params, Xa, Ya, loss)[0]


def value_and_backprop(model, params, X, Y, loss: str = "mse"):
    """(L(f(X), Y), backprop(model, params, X, Y, loss)) from one forward and one backward pass."""
    loss, Xa, Ya = _prepare(model, X, Y, loss)
    g, _, val, _ = _backward(model, params, Xa, Ya, loss)
    return val, g


def input_gradient(model, params, X, Y, loss: str = "mse"):
    """Gradient of the batch loss with respect to the inputs, weights fixed: (m, d_in).

    Seed 000 eq. 1.13, grad_x C = W_0^T f'_0 ... W_L^T grad_{z_L} C, and seed 002's last slide
    (the weights are fixed and the inputs are the controls): the same delta recursion continued
    one step past the first layer, dL/dx = sum_{j in Out(input)} delta_j w_j,input.  Row k of
    the result is dL/dX[k, :].  Arguments as in `backprop`.
    """
    loss, Xa, Ya = _prepare(model, X, Y, loss)
    return _backward(model, params, Xa, Ya, loss)[1]


_OPT_METHODS = {"bfgs": "BFGS", "l-bfgs-b": "L-BFGS-B", "cg": "CG"}  # name -> scipy's


def optimize_inputs(model, params, target, x0, method: str = "bfgs", max_iter: int = 500,
                    tol: float = 1e-10, bounds=None) -> OptimizeResult:
    """Find an input x whose network output matches `target` (inputs as controls, seed 002).

    Minimises phi(x) = 1/2 ||f(x) - target||^2 over x with the weights fixed, using
    scipy.optimize.minimize with the explicit input gradient (`input_gradient`, loss "sse") as
    jac.

    Args:
        model, params: a network and its (trained) weights.
        target: (d_out,) desired output.  x0: (d_in,) starting input.
        method: "bfgs", "l-bfgs-b" (accepts `bounds`) or "cg".
        max_iter: iteration limit (> 0).  tol: gradient tolerance (> 0), scipy's gtol.
        bounds: optional [(lo, hi)] * d_in box for "l-bfgs-b".

    Returns:
        scipy OptimizeResult with x (d_in,), fun (= phi(x)), success, nit, nfev, message, plus
        output (f(x), shape (d_out,)) and residual_norm (||f(x) - target||).
    """
    method = check_choice("method", str(method).lower(), _OPT_METHODS)
    if not isinstance(model, (MLP, FeedforwardGraph, Moeller2Net)):
        raise LiftnnError(f"optimize_inputs supports MLP, FeedforwardGraph and Moeller2Net; got "
                          f"{type(model).__name__}")
    t = as_2d_finite("target", np.reshape(np.asarray(target, dtype=float), (1, -1)))
    x0a = as_2d_finite("x0", np.reshape(np.asarray(x0, dtype=float), (1, -1)))
    model.check_data(x0a, t)
    if isinstance(max_iter, bool) or not isinstance(max_iter, (int, np.integer)) or max_iter < 1:
        raise LiftnnError(f"max_iter must be a positive integer; got {max_iter!r}")
    tol = check_positive("tol", tol)
    if bounds is not None and method != "l-bfgs-b":
        raise LiftnnError(f"bounds need method='l-bfgs-b'; got method={method!r}")
    if bounds is not None and len(bounds) != model.d_in:
        raise LiftnnError(f"bounds has {len(bounds)} pairs; the network takes {model.d_in} inputs")
    params = _check_params(model, params)
    t_j = jnp.asarray(t)

    def fun(x):
        _, gx, val, _ = _backward_core(model, params, jnp.asarray(x, jnp.float64)[None, :], t_j,
                                       "sse")
        return float(val), np.asarray(gx[0], dtype=float)

    opts = {"maxiter": int(max_iter), "gtol": tol}
    if method == "l-bfgs-b":
        opts["ftol"] = 1e-15  # stop on the gradient, not on a small relative decrease
    res = minimize(fun, x0a[0], jac=True, method=_OPT_METHODS[method], bounds=bounds,
                   options=opts)
    out = np.asarray(_backward_core(model, params, jnp.asarray(res.x)[None, :], t_j, "sse")[3])[0]
    res.output = out
    res.residual_norm = float(np.linalg.norm(out - t[0]))
    return res
