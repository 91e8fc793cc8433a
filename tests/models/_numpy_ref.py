"""NumPy reference implementations (no JAX) written straight from the seed definitions.

Used by the model tests as an independent check of liftnn's JAX code, and to evaluate losses for
finite differences without compiling anything.
"""

from __future__ import annotations

import numpy as np

ACT = {
    "identity": lambda a: a,
    "relu": lambda a: np.maximum(a, 0.0),
    "leaky_relu": lambda a: np.where(a > 0, a, 0.01 * a),
    "tanh": np.tanh,
    "sigmoid": lambda a: 1.0 / (1.0 + np.exp(-a)),
    "softplus": lambda a: np.logaddexp(0.0, a),
}


def mlp_forward(sizes_acts, params, X):
    """MLP: z_0 = x, z_j = act_j(W_j z_{j-1} + b_j); rows are samples (seed 000 eq. 1.5).

    sizes_acts: the list of activation names, one per weight layer (hidden..., output).
    params: [(W, b or None)] with W of shape (out, in).
    """
    Z = np.asarray(X, dtype=float)
    for (W, b), act in zip(params, sizes_acts):
        A = Z @ np.asarray(W, dtype=float).T
        if b is not None:
            A = A + np.asarray(b, dtype=float)
        Z = ACT[act](A)
    return Z


def graph_forward(graph, w, X):
    """Seed 002 literally: units in numbering order, z_j = sum_{i in In(j)} o_i w_ji,
    o_j = h_j(z_j); o_0 = 1 (bias unit), o_{1..d_in} = x (fake units).  Returns (Z, O)."""
    w = np.asarray(w, dtype=float)
    X = np.asarray(X, dtype=float)
    m = X.shape[0]
    O = np.zeros((m, graph.n_units))
    Z = np.zeros((m, graph.n_units))
    O[:, 0] = 1.0
    O[:, 1:1 + graph.n_inputs] = X
    for j in graph.computing_units:
        for e, (i, k) in enumerate(graph.edges):
            if k == j:
                Z[:, j] += O[:, i] * w[e]
        O[:, j] = ACT[graph.activation_of(j)](Z[:, j])
    return Z, O


def moeller_forward(Ws, Y):
    """Seed 001's two-hidden-layer network as the report writes it (see Moeller2Net)."""
    W1, W2, W3 = (np.asarray(W, dtype=float) for W in Ws)
    out = []
    for y in np.asarray(Y, dtype=float):
        h_star = W1 @ y
        h0 = 1.0 / (1.0 + np.exp(-np.sum(W1[0, :] * y)))          # sigma(sum_j W_1j y_j)
        H_star = np.tanh(W2 @ h_star + h0 * np.ones(4))
        H0 = np.tanh(np.sum(W2[0, :] * h_star) + h0)                # tanh(sum_j W_2j h_j + h0)
        out.append(np.tanh(W3 @ H_star + H0 * np.ones(3)))
    return np.array(out)


def model_forward(model, params, X):
    """Dispatch on the liftnn model type."""
    name = type(model).__name__
    if name == "MLP":
        return mlp_forward(model.activations, params, X)
    if name == "FeedforwardGraph":
        return graph_forward(model, params, X)[1][:, list(model.outputs)]
    if name == "Moeller2Net":
        return moeller_forward([W for W, _ in params], X)
    raise TypeError(name)


def loss(name, pred, Y):
    if name == "mse":
        return float(np.mean((pred - Y) ** 2))
    if name == "sse":
        return float(0.5 * np.sum((pred - Y) ** 2))
    if name == "cross_entropy":
        z = pred - pred.max(axis=1, keepdims=True)
        logp = z - np.log(np.sum(np.exp(z), axis=1, keepdims=True))
        return float(-np.mean(np.sum(Y * logp, axis=1)))
    raise ValueError(name)
