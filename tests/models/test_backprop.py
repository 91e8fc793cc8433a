"""Explicit backpropagation (seed 002's delta recursion) against autodiff and finite differences.

What is proved here:
- `backprop` equals jax.grad of the same loss to 1e-10 (relative, in the 2-norm of the whole
  gradient) and central finite differences to 1e-7 (relative; step 1e-5, whose truncation error
  h^2 f''' / 6 ~ 1e-11 and rounding error eps |f| / h ~ 1e-11 are far below the tolerance;
  the differences use the NumPy reference networks of _numpy_ref.py, not liftnn's code) on
  MLPs with 1-5 weight layers and every activation, on feedforward graphs with skip
  connections, outputs feeding outputs and dead-end units, and on seed 001's network;
- `input_gradient` equals jax.grad with respect to X;
- `optimize_inputs` finds an input that a briefly trained network maps to a chosen target.
"""

from __future__ import annotations

import _numpy_ref as ref
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import minimize

import liftnn as ln
from liftnn.models.backprop import value_and_backprop
from liftnn.models.losses import get_loss

AUTODIFF_RTOL = 1e-10
FD_RTOL = 1e-7
FD_STEP = 1e-5

backprop = ln.backprop


def rel_err(a, b) -> float:
    a, b = flat(a), flat(b)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))


def flat(params) -> np.ndarray:
    """Params (array, or list of (W, b or None)) -> one NumPy vector (no JAX ops)."""
    if isinstance(params, (list, tuple)):
        return np.concatenate([np.ravel(np.asarray(a, dtype=float))
                               for pair in params for a in pair if a is not None])
    return np.ravel(np.asarray(params, dtype=float))


def unflat_like(params, theta):
    """Inverse of `flat` for the structure of params (NumPy arrays)."""
    if not isinstance(params, (list, tuple)):
        return theta.reshape(np.shape(params))
    out, k = [], 0
    for pair in params:
        new = []
        for a in pair:
            if a is None:
                new.append(None)
            else:
                n = int(np.size(a))
                new.append(theta[k:k + n].reshape(np.shape(a)))
                k += n
        out.append(tuple(new))
    return out


def central_differences(model, params, X, Y, loss, h=FD_STEP):
    """Central differences of the loss over every parameter, evaluated with the NumPy reference
    network of tests/models/_numpy_ref.py (no autodiff, no JAX)."""
    theta = flat(params)
    fd = np.empty_like(theta)
    for k in range(theta.size):
        e = np.zeros_like(theta)
        e[k] = h
        fp = ref.loss(loss, ref.model_forward(model, unflat_like(params, theta + e), X), Y)
        fm = ref.loss(loss, ref.model_forward(model, unflat_like(params, theta - e), X), Y)
        fd[k] = (fp - fm) / (2 * h)
    return fd


def autodiff(model, params, X, Y, loss):
    """jax.grad of the same loss through the model's JAX forward pass (compiled once)."""
    lf = get_loss(loss)
    return jax.jit(jax.grad(lambda p: lf(model.apply(p, X), Y)))(params)


def check_gradient(model, params, X, Y, loss="mse"):
    g = backprop(model, params, X, Y, loss=loss)
    # same structure as params
    assert jax.tree_util.tree_structure(g) == jax.tree_util.tree_structure(params)
    assert all(leaf.dtype == jnp.float64 for leaf in jax.tree_util.tree_leaves(g))
    assert rel_err(g, autodiff(model, params, jnp.asarray(X), jnp.asarray(Y), loss)) < AUTODIFF_RTOL
    assert rel_err(g, central_differences(model, params, X, Y, loss)) < FD_RTOL


def _batch(model, seed, m=7):
    """Random inputs (m, d_in) and targets (m, d_out) for `model`."""
    rng = np.random.default_rng(seed)
    return rng.normal(size=(m, model.d_in)), rng.normal(size=(m, model.d_out))


def random_params(model, seed, scale=1.0):
    """Random float64 NumPy params in the model's structure (weights ~ scale N(0, 1/fan_in),
    biases ~ 0.5 N(0, 1)).  NumPy draws keep the tests independent of liftnn's initialisers."""
    rng = np.random.default_rng(seed)
    if isinstance(model, ln.FeedforwardGraph):
        return scale * rng.normal(size=model.n_params)
    if isinstance(model, ln.Moeller2Net):
        return [(scale * rng.normal(size=s) / np.sqrt(s[1]), None) for s in model.shapes]
    return [(scale * rng.normal(size=(o, i)) / np.sqrt(i),
             0.5 * rng.normal(size=o) if model.bias else None)
            for i, o in zip(model.sizes[:-1], model.sizes[1:])]


ACTS = ["identity", "relu", "leaky_relu", "tanh", "sigmoid", "softplus"]


def assert_away_from_kinks(mlp, params, X):
    """Piecewise-linear units must sit well away from their kink (where they are not
    differentiable), or neither autodiff nor finite differences define the reference."""
    Z = np.asarray(X, dtype=float)
    for (W, b), act in zip(params, mlp.activations):
        A = Z @ np.asarray(W).T + (0.0 if b is None else np.asarray(b))
        if act in ("relu", "leaky_relu"):
            # a step h in one weight moves a pre-activation by about h |o_i| (|o_i| of order 1)
            assert np.min(np.abs(A)) > 10 * FD_STEP
        Z = ref.ACT[act](A)


@pytest.mark.slow
@pytest.mark.parametrize("act", ACTS)
def test_mlp_backprop_matches_autodiff_and_finite_differences(act):
    """Two hidden layers of one activation (the fast test below mixes them)."""
    mlp = ln.MLP((3, 6, 5, 2), activation=act,
                 output_activation="tanh" if act == "relu" else "identity")
    params = random_params(mlp, 1, scale=1.5)
    rng = np.random.default_rng(7)
    X, Y = rng.normal(size=(9, 3)), rng.normal(size=(9, 2))
    assert_away_from_kinks(mlp, params, X)
    check_gradient(mlp, params, X, Y, loss="mse")


MIXED = {  # 1 to 5 weight layers; together the hidden layers use all six activations
    (3, 2): [],
    (3, 6, 2): ["softplus"],
    (4, 6, 5, 4, 2): ["identity", "relu", "sigmoid"],
    (2, 5, 5, 4, 4, 3): ["leaky_relu", "tanh", "softplus", "relu"],
}


@pytest.mark.parametrize("sizes", list(MIXED), ids=lambda s: "-".join(map(str, s)))
def test_mlp_backprop_at_several_depths_and_activations(sizes):
    """Random weights and biases, sigmoid output, mse loss."""
    mlp = ln.MLP(sizes, activation=MIXED[sizes], output_activation="sigmoid")
    params = random_params(mlp, len(sizes), scale=1.5)
    rng = np.random.default_rng(len(sizes))
    X, Y = rng.normal(size=(8, sizes[0])), rng.uniform(size=(8, sizes[-1]))
    assert_away_from_kinks(mlp, params, X)
    check_gradient(mlp, params, X, Y, loss="mse")


@pytest.mark.parametrize("loss", ["sse", "cross_entropy"])
def test_mlp_backprop_other_losses(loss):
    mlp = ln.MLP((3, 7, 4), activation="tanh")
    params = random_params(mlp, 3)
    rng = np.random.default_rng(1)
    X = rng.normal(size=(8, 3))
    Y = np.eye(4)[rng.integers(0, 4, size=8)] if loss == "cross_entropy" else rng.normal(size=(8, 4))
    check_gradient(mlp, params, X, Y, loss=loss)


def test_cross_entropy_accepts_class_indices():
    mlp = ln.MLP((3, 7, 4), activation="tanh")
    params = random_params(mlp, 3)
    rng = np.random.default_rng(1)
    X = rng.normal(size=(8, 3))
    idx = rng.integers(0, 4, size=8)
    g_idx = backprop(mlp, params, X, idx, loss="cross_entropy")
    g_hot = backprop(mlp, params, X, np.eye(4)[idx], loss="cross_entropy")
    assert rel_err(g_idx, g_hot) < 1e-14
    with pytest.raises(ln.LiftnnError, match="class indices"):
        backprop(mlp, params, X, idx + 4, loss="cross_entropy")


def test_mlp_without_bias_returns_none_bias_gradients():
    mlp = ln.MLP((2, 4, 1), activation="softplus", bias=False)
    params = random_params(mlp, 0)
    rng = np.random.default_rng(3)
    X, Y = rng.normal(size=(5, 2)), rng.normal(size=(5, 1))
    g = backprop(mlp, params, X, Y)
    assert all(b is None for _, b in g)
    check_gradient(mlp, params, X, Y)


def test_value_and_backprop_returns_the_loss_and_the_same_gradient():
    mlp = ln.MLP((2, 4, 1), activation="softplus", bias=False)
    params = random_params(mlp, 0)
    rng = np.random.default_rng(3)
    X, Y = rng.normal(size=(5, 2)), rng.normal(size=(5, 1))
    val, g = value_and_backprop(mlp, params, X, Y, loss="mse")
    assert float(val) == pytest.approx(ref.loss("mse", ref.model_forward(mlp, params, X), Y),
                                       rel=1e-13)
    assert rel_err(g, backprop(mlp, params, X, Y, loss="mse")) == 0.0


# ---- graphs -----------------------------------------------------------------------------------


def random_graph(seed, n_inputs=3, n_computing=8, n_outputs=2, p=0.45):
    """A random DAG: each computing unit is fed by each earlier unit (bias, inputs, computing
    units: skip connections across any distance) with probability p, at least one.  Smooth
    activations are drawn per unit."""
    rng = np.random.default_rng(seed)
    n_units = 1 + n_inputs + n_computing
    edges = []
    for j in range(n_inputs + 1, n_units):
        src = [i for i in range(j) if rng.random() < p] or [int(rng.integers(1, j))]
        edges += [(i, j) for i in src]
    smooth = ["tanh", "sigmoid", "softplus", "identity"]
    acts = [smooth[k] for k in rng.integers(0, 4, size=n_computing)]
    return ln.FeedforwardGraph(n_inputs, edges, outputs=n_outputs, activation=acts,
                               n_units=n_units, init="glorot_uniform")


GRAPHS = {
    # a deep chain with a bias on two units
    "chain": ln.FeedforwardGraph(2, [(0, 3), (1, 3), (2, 3), (3, 4), (0, 4), (4, 5), (5, 6)],
                                 outputs=[6], activation="tanh", output_activation="sigmoid"),
    # an output unit (4) that also feeds the other output (6) and a unit (7) reaching no output
    "output_feeds_output": ln.FeedforwardGraph(
        2, [(1, 3), (2, 3), (0, 4), (3, 4), (1, 4), (4, 5), (3, 5), (2, 5), (5, 6), (3, 7)],
        outputs=[4, 6], activation={3: "softplus", 5: "sigmoid", 7: "tanh"},
        output_activation="tanh"),
    "from_mlp": ln.FeedforwardGraph.from_mlp(ln.MLP((3, 4, 3, 2), activation="tanh")),
    "random_skip": random_graph(0),
    "random_wide": random_graph(1, n_inputs=4, n_computing=12, n_outputs=3, p=0.7),
}


@pytest.mark.parametrize("name", [
    "chain", "output_feeds_output", "random_skip",
    pytest.param("random_wide", marks=pytest.mark.slow),
])  # "from_mlp" is checked against the MLP's gradient below
def test_graph_backprop_matches_autodiff_and_finite_differences(name):
    g = GRAPHS[name]
    w = random_params(g, 5)
    X, Y = _batch(g, 11)
    check_gradient(g, w, X, Y, loss="mse")


@pytest.mark.slow
def test_graph_backprop_with_sse_loss():
    g = GRAPHS["random_skip"]
    w = random_params(g, 6)
    X, Y = _batch(g, 12)
    check_gradient(g, w, X, Y, loss="sse")


def test_graph_dead_end_unit_gets_zero_gradient():
    g = GRAPHS["output_feeds_output"]
    w = random_params(g, 5)
    rng = np.random.default_rng(11)
    grad = np.asarray(backprop(g, w, rng.normal(size=(7, 2)), rng.normal(size=(7, 2))))
    dead = [e for e, (_, j) in enumerate(g.edges) if j == 7]
    live = [e for e, (_, j) in enumerate(g.edges) if j != 7]
    assert dead and np.all(grad[dead] == 0.0) and np.all(grad[live] != 0.0)


def test_graph_gradient_equals_mlp_gradient_on_the_same_network():
    mlp = ln.MLP((3, 4, 3, 2), activation="tanh")
    g = GRAPHS["from_mlp"]
    p = random_params(mlp, 5)
    rng = np.random.default_rng(11)
    X, Y = rng.normal(size=(7, 3)), rng.normal(size=(7, 2))
    gm = backprop(mlp, p, X, Y)
    gg = g.params_to_mlp(backprop(g, g.params_from_mlp(p), X, Y))
    assert rel_err(gg, gm) < 1e-13


# ---- seed 001's network -----------------------------------------------------------------------


@pytest.mark.parametrize("loss", ["mse", "sse"])
def test_moeller2net_backprop_matches_autodiff_and_finite_differences(loss):
    net = ln.Moeller2Net()
    params = random_params(net, 0, scale=1.5)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(6, 6))
    Y = rng.uniform(-1, 1, size=(6, 3))
    check_gradient(net, params, X, Y, loss=loss)


def test_moeller2net_w3_gradient_matches_the_report_formula():
    """Seed 001: df/dW3 = 1/m sum_i (2 (z_hat_i - z_i) * (1 - z_hat_i^2)) H*_i^T for
    f = 1/m sum_i ||z_i - z_hat_i||^2, which is 3 * mse (3 outputs).  (The report's W2 and W1
    formulas drop the paths through h0 and H0, so only W3 is comparable.)"""
    net = ln.Moeller2Net()
    params = random_params(net, 0, scale=1.5)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(6, 6))
    Y = rng.uniform(-1, 1, size=(6, 3))
    W1, W2, W3 = (np.asarray(W) for W, _ in params)
    zh = ref.moeller_forward([W1, W2, W3], X)
    H_star = np.tanh(X @ W1.T @ W2.T + (1 / (1 + np.exp(-X @ W1[0])))[:, None])
    report = (2 * (zh - Y) * (1 - zh ** 2)).T @ H_star / X.shape[0]
    ours = 3 * np.asarray(backprop(net, params, X, Y, loss="mse")[2][0])
    assert rel_err(ours, report) < 1e-13


# ---- gradients with respect to the inputs -----------------------------------------------------

INPUT_MODELS = {
    "mlp": ln.MLP((3, 6, 5, 2), activation="tanh"),
    "mlp_nobias": ln.MLP((2, 4, 1), activation="softplus", bias=False),
    "graph": GRAPHS["random_skip"],
    "graph_out_out": GRAPHS["output_feeds_output"],
    "moeller2": ln.Moeller2Net(),
}


@pytest.mark.parametrize("name", [
    "mlp", "graph", "moeller2",
    pytest.param("mlp_nobias", marks=pytest.mark.slow),
    pytest.param("graph_out_out", marks=pytest.mark.slow),
])
def test_input_gradient_matches_autodiff(name):
    model = INPUT_MODELS[name]
    params = random_params(model, 2)
    X, Y = _batch(model, 3)
    gx = ln.input_gradient(model, params, X, Y, loss="mse")
    assert gx.shape == X.shape
    lf = get_loss("mse")
    auto = jax.jit(jax.grad(lambda x: lf(model.apply(params, x), Y)))(jnp.asarray(X))
    assert rel_err(gx, auto) < AUTODIFF_RTOL


# ---- inputs as controls -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained_net():
    """A 2-10-2 tanh network fitted (scipy BFGS with backprop as jac, at most 300 iterations)
    to y = (sin(x1) + 0.5 x2, x1 x2 / 2) on 40 random points of [-1.5, 1.5]^2."""
    mlp = ln.MLP((2, 10, 2), activation="tanh")
    rng = np.random.default_rng(0)
    X = rng.uniform(-1.5, 1.5, size=(40, 2))
    Y = np.c_[np.sin(X[:, 0]) + 0.5 * X[:, 1], 0.5 * X[:, 0] * X[:, 1]]
    p0 = random_params(mlp, 0)

    def fun(th):
        val, g = value_and_backprop(mlp, unflat_like(p0, th), X, Y)
        return float(val), flat(g)

    res = minimize(fun, flat(p0), jac=True, method="BFGS", options={"maxiter": 300})
    assert res.fun < 0.05 * fun(flat(p0))[0]  # it learned the map
    return mlp, unflat_like(p0, res.x)


@pytest.mark.parametrize("method", ["bfgs", "l-bfgs-b", "cg"])
def test_optimize_inputs_recovers_an_input_for_a_target(trained_net, method):
    mlp, params = trained_net
    x_true = np.array([0.7, -0.4])
    target = ref.model_forward(mlp, params, x_true[None, :])[0]
    res = ln.optimize_inputs(mlp, params, target, x0=np.zeros(2), method=method, max_iter=500)
    assert res.success, res.message
    assert res.nit > 0 and res.fun < 1e-12
    # the returned input really maps to the target (checked with the NumPy reference network)
    np.testing.assert_allclose(ref.model_forward(mlp, params, res.x[None, :])[0], target,
                               atol=1e-6)
    assert res.residual_norm < 1e-6


def test_optimize_inputs_respects_bounds(trained_net):
    mlp, params = trained_net
    target = ref.model_forward(mlp, params, np.array([[1.0, 1.0]]))[0]
    res = ln.optimize_inputs(mlp, params, target, x0=np.zeros(2), method="l-bfgs-b",
                             bounds=[(-0.5, 0.5), (-0.5, 0.5)])
    assert np.all(np.abs(res.x) <= 0.5 + 1e-12)
    assert res.residual_norm > 1e-3  # the exact preimage lies outside the box


@pytest.mark.parametrize("name", ["moeller2", pytest.param("graph", marks=pytest.mark.slow)])
def test_optimize_inputs_on_a_graph_and_on_moeller2net(name):
    model = INPUT_MODELS[name]
    params = random_params(model, 1)
    x_true = np.linspace(-0.5, 0.5, model.d_in)
    target = ref.model_forward(model, params, x_true[None, :])[0]
    res = ln.optimize_inputs(model, params, target, x0=np.zeros(model.d_in))
    assert res.success, res.message
    np.testing.assert_allclose(ref.model_forward(model, params, res.x[None, :])[0], target,
                               atol=1e-6)


# ---- bad input ----------------------------------------------------------------------------------


def test_bad_input_is_refused_before_work():
    mlp = ln.MLP((3, 4, 2))
    p = random_params(mlp, 0)
    X, Y = np.zeros((5, 3)), np.zeros((5, 2))
    with pytest.raises(ln.LiftnnError, match="features"):
        backprop(mlp, p, np.zeros((5, 4)), Y)
    with pytest.raises(ln.LiftnnError, match="samples"):
        backprop(mlp, p, X, np.zeros((4, 2)))
    with pytest.raises(ln.LiftnnError, match="unknown loss"):
        backprop(mlp, p, X, Y, loss="hinge")
    with pytest.raises(ln.LiftnnError, match="layer 1: W has shape"):
        backprop(mlp, [p[0], (p[1][0].T, p[1][1])], X, Y)
    with pytest.raises(ln.LiftnnError, match="layers"):
        backprop(mlp, p[:1], X, Y)
    with pytest.raises(ln.LiftnnError, match="NaN"):
        backprop(mlp, p, np.full((5, 3), np.nan), Y)
    with pytest.raises(ln.LiftnnError, match="supports"):
        backprop(object(), p, X, Y)
    with pytest.raises(ln.LiftnnError, match="edge weights"):
        backprop(GRAPHS["chain"], np.zeros(3), np.zeros((2, 2)), np.zeros((2, 1)))
    with pytest.raises(ln.LiftnnError, match="weight shapes"):
        backprop(ln.Moeller2Net(), p, np.zeros((2, 6)), np.zeros((2, 3)))
    with pytest.raises(ln.LiftnnError, match="features"):
        ln.input_gradient(mlp, p, np.zeros((5, 2)), Y)
    with pytest.raises(ln.LiftnnError, match="unknown method"):
        ln.optimize_inputs(mlp, p, np.zeros(2), np.zeros(3), method="nelder-mead")
    with pytest.raises(ln.LiftnnError, match="features"):
        ln.optimize_inputs(mlp, p, np.zeros(2), np.zeros(4))
    with pytest.raises(ln.LiftnnError, match="columns"):
        ln.optimize_inputs(mlp, p, np.zeros(3), np.zeros(3))
    with pytest.raises(ln.LiftnnError, match="max_iter"):
        ln.optimize_inputs(mlp, p, np.zeros(2), np.zeros(3), max_iter=0)
    with pytest.raises(ln.LiftnnError, match="tol"):
        ln.optimize_inputs(mlp, p, np.zeros(2), np.zeros(3), tol=-1.0)
    with pytest.raises(ln.LiftnnError, match="bounds"):
        ln.optimize_inputs(mlp, p, np.zeros(2), np.zeros(3), bounds=[(0, 1)] * 3)
    with pytest.raises(ln.LiftnnError, match="bounds"):
        ln.optimize_inputs(mlp, p, np.zeros(2), np.zeros(3), method="l-bfgs-b", bounds=[(0, 1)])
