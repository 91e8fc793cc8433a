"""Explicit backpropagation (seed 002's delta recursion) against autodiff and finite differences.

What is proved here:
- `backprop` equals jax.grad of the same loss to 1e-10 (relative, in the 2-norm of the whole
  gradient) and central finite differences to 1e-7 (relative; step 1e-5, whose truncation error
  h^2 f''' / 6 ~ 1e-11 and rounding error eps |f| / h ~ 1e-11 are far below the tolerance) on
  random MLPs of depth 1-4 with every activation, on random feedforward graphs with skip
  connections, and on seed 001's network;
- `input_gradient` equals jax.grad with respect to X;
- `optimize_inputs` finds an input that a briefly trained network maps to a chosen target.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree
from scipy.optimize import minimize

import liftnn as ln
from liftnn.models.backprop import value_and_backprop
from liftnn.models.losses import get_loss

AUTODIFF_RTOL = 1e-10
FD_RTOL = 1e-7
FD_STEP = 1e-5

backprop = ln.backprop


def rel_err(a, b) -> float:
    a, b = np.asarray(a, dtype=float).ravel(), np.asarray(b, dtype=float).ravel()
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))


def loss_of(model, X, Y, loss):
    lf = get_loss(loss)
    return lambda p: lf(model.apply(p, X), Y)


def references(f, params, h=FD_STEP):
    """(jax.grad of f, central differences of f) at params as flat vectors, in one compiled
    call; the differences perturb every coordinate by +-h (vmapped over coordinates)."""
    theta, unravel = ravel_pytree(params)

    @jax.jit
    def both(theta):
        E = h * jnp.eye(theta.size)
        fp = jax.vmap(lambda d: f(unravel(theta + d)))(E)
        fm = jax.vmap(lambda d: f(unravel(theta - d)))(E)
        return jax.grad(lambda t: f(unravel(t)))(theta), (fp - fm) / (2 * h)

    return both(theta)


def check_gradient(model, params, X, Y, loss="mse"):
    g = backprop(model, params, X, Y, loss=loss)
    # same structure as params
    assert jax.tree_util.tree_structure(g) == jax.tree_util.tree_structure(params)
    g_vec = ravel_pytree(g)[0]
    assert g_vec.dtype == jnp.float64
    auto, fd = references(loss_of(model, jnp.asarray(X), jnp.asarray(Y), loss), params)
    assert rel_err(g_vec, auto) < AUTODIFF_RTOL
    assert rel_err(g_vec, fd) < FD_RTOL


ACTS = ["identity", "relu", "leaky_relu", "tanh", "sigmoid", "softplus"]


def assert_away_from_kinks(mlp, params, X):
    """Piecewise-linear units must sit well away from their kink (where they are not
    differentiable), or neither autodiff nor finite differences define the reference."""
    pre, _ = mlp.forward(params, X)
    for a, act in zip(pre, mlp.activations):
        if act in ("relu", "leaky_relu"):
            assert float(jnp.min(jnp.abs(a))) > 100 * FD_STEP


@pytest.mark.parametrize("act", ACTS)
def test_mlp_backprop_matches_autodiff_and_finite_differences(act):
    """Two hidden layers of one activation, torch_default init (random biases)."""
    mlp = ln.MLP((3, 6, 5, 2), activation=act,
                 output_activation="tanh" if act == "relu" else "identity", init="torch_default")
    params = mlp.init(1)
    rng = np.random.default_rng(7)
    X, Y = rng.normal(size=(9, 3)), rng.normal(size=(9, 2))
    assert_away_from_kinks(mlp, params, X)
    check_gradient(mlp, params, X, Y, loss="mse")


@pytest.mark.parametrize("sizes", [(3, 2), (3, 6, 2), (4, 6, 5, 4, 2), (2, 5, 5, 4, 4, 3)],
                         ids=lambda s: "-".join(map(str, s)))
def test_mlp_backprop_at_several_depths_with_mixed_activations(sizes):
    """Depths 1 to 5 weight layers; hidden activations cycle through all six."""
    n_hidden = len(sizes) - 2
    acts = [ACTS[(k + 1) % len(ACTS)] for k in range(n_hidden)]
    mlp = ln.MLP(sizes, activation=acts, output_activation="sigmoid", init="glorot_normal")
    params = mlp.init(len(sizes))
    rng = np.random.default_rng(len(sizes))
    X, Y = rng.normal(size=(8, sizes[0])), rng.uniform(size=(8, sizes[-1]))
    assert_away_from_kinks(mlp, params, X)
    check_gradient(mlp, params, X, Y, loss="mse")


@pytest.mark.parametrize("loss", ["sse", "cross_entropy"])
def test_mlp_backprop_other_losses(loss):
    mlp = ln.MLP((3, 7, 4), activation="tanh", init="glorot_normal")
    params = mlp.init(3)
    rng = np.random.default_rng(1)
    X = rng.normal(size=(8, 3))
    Y = np.eye(4)[rng.integers(0, 4, size=8)] if loss == "cross_entropy" else rng.normal(size=(8, 4))
    check_gradient(mlp, params, X, Y, loss=loss)


def test_cross_entropy_accepts_class_indices():
    mlp = ln.MLP((3, 5, 4), activation="sigmoid")
    params = mlp.init(0)
    rng = np.random.default_rng(2)
    X = rng.normal(size=(6, 3))
    idx = rng.integers(0, 4, size=6)
    g_idx = ravel_pytree(backprop(mlp, params, X, idx, loss="cross_entropy"))[0]
    g_hot = ravel_pytree(backprop(mlp, params, X, np.eye(4)[idx], loss="cross_entropy"))[0]
    assert rel_err(g_idx, g_hot) < 1e-14
    with pytest.raises(ln.LiftnnError, match="class indices"):
        backprop(mlp, params, X, idx + 4, loss="cross_entropy")


def test_mlp_without_bias_returns_none_bias_gradients():
    mlp = ln.MLP((2, 4, 1), activation="softplus", bias=False, init="kaiming_normal")
    params = mlp.init(0)
    rng = np.random.default_rng(3)
    X, Y = rng.normal(size=(5, 2)), rng.normal(size=(5, 1))
    g = backprop(mlp, params, X, Y)
    assert all(b is None for _, b in g)
    check_gradient(mlp, params, X, Y)


def test_value_and_backprop_returns_the_loss():
    mlp = ln.MLP((2, 3, 2), activation="tanh")
    params = mlp.init(0)
    rng = np.random.default_rng(4)
    X, Y = rng.normal(size=(5, 2)), rng.normal(size=(5, 2))
    val, g = value_and_backprop(mlp, params, X, Y, loss="sse")
    assert float(val) == pytest.approx(0.5 * float(jnp.sum((mlp.apply(params, X) - Y) ** 2)), rel=1e-14)
    assert rel_err(ravel_pytree(g)[0], ravel_pytree(backprop(mlp, params, X, Y, loss="sse"))[0]) == 0


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


def _named_graphs():
    chain = ln.FeedforwardGraph(2, [(0, 3), (1, 3), (2, 3), (3, 4), (0, 4), (4, 5), (5, 6)],
                                outputs=[6], activation="tanh", output_activation="sigmoid")
    # an output unit that also feeds another output, plus a unit (7) that reaches no output
    out_feeds_out = ln.FeedforwardGraph(
        2, [(1, 3), (2, 3), (0, 4), (3, 4), (1, 4), (4, 5), (3, 5), (2, 5), (5, 6), (3, 7)],
        outputs=[4, 6], activation={3: "softplus", 5: "sigmoid", 7: "tanh"},
        output_activation="tanh")
    mlp_graph = ln.FeedforwardGraph.from_mlp(ln.MLP((3, 4, 3, 2), activation="tanh"))
    return {"chain": chain, "output_feeds_output": out_feeds_out, "from_mlp": mlp_graph,
            "random_a": random_graph(0), "random_b": random_graph(1, n_inputs=4, n_computing=12,
                                                                 n_outputs=3),
            "random_dense": random_graph(2, p=0.9)}


GRAPHS = _named_graphs()


@pytest.mark.parametrize("name", list(GRAPHS))
@pytest.mark.parametrize("loss", ["mse", "sse"])
def test_graph_backprop_matches_autodiff_and_finite_differences(name, loss):
    g = GRAPHS[name]
    w = g.init(5)
    rng = np.random.default_rng(11)
    X = rng.normal(size=(7, g.d_in))
    Y = rng.normal(size=(7, g.d_out))
    check_gradient(g, w, X, Y, loss=loss)


def test_graph_dead_end_unit_gets_zero_gradient():
    g = GRAPHS["output_feeds_output"]
    w = g.init(0)
    rng = np.random.default_rng(0)
    grad = backprop(g, w, rng.normal(size=(4, 2)), rng.normal(size=(4, 2)))
    dead = [e for e, (_, j) in enumerate(g.edges) if j == 7]
    assert dead and np.all(np.asarray(grad)[dead] == 0.0)


def test_graph_gradient_equals_mlp_gradient_on_the_same_network():
    mlp = ln.MLP((3, 5, 4, 2), activation="sigmoid", init="torch_default")
    g = ln.FeedforwardGraph.from_mlp(mlp)
    p = mlp.init(1)
    rng = np.random.default_rng(5)
    X, Y = rng.normal(size=(6, 3)), rng.normal(size=(6, 2))
    gm = backprop(mlp, p, X, Y)
    gg = g.params_to_mlp(backprop(g, g.params_from_mlp(p), X, Y))
    assert rel_err(ravel_pytree(gg)[0], ravel_pytree(gm)[0]) < 1e-13


# ---- seed 001's network -----------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_moeller2net_backprop_matches_autodiff_and_finite_differences(seed):
    net = ln.Moeller2Net(init="normal(1.0)")
    params = net.init(seed)
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(6, 6))
    Y = rng.uniform(-1, 1, size=(6, 3))
    check_gradient(net, params, X, Y, loss="mse")
    check_gradient(net, params, X, Y, loss="sse")


def test_moeller2net_w3_gradient_matches_the_report_formula():
    """Seed 001: df/dW3 = 1/m sum_i (2 (z_hat_i - z_i) * (1 - z_hat_i^2)) H*_i^T for
    f = 1/m sum_i ||z_i - z_hat_i||^2, which is 3 * mse (3 outputs)."""
    net = ln.Moeller2Net()
    params = net.init(4)
    data = ln.datasets.load("moeller2", seed=0)
    X, Y = data.x_train, data.y_train
    f = net.forward(params, X)
    zh = f["z"]
    report = (2 * (zh - Y) * (1 - zh ** 2)).T @ f["H_star"] / X.shape[0]
    ours = 3 * backprop(net, params, X, Y, loss="mse")[2][0]
    assert rel_err(ours, report) < 1e-13


# ---- gradients with respect to the inputs -----------------------------------------------------


@pytest.mark.parametrize("model", [ln.MLP((3, 6, 4, 2), activation="tanh"),
                                   ln.MLP((2, 5, 1), activation="softplus", bias=False),
                                   GRAPHS["random_a"], GRAPHS["output_feeds_output"],
                                   ln.Moeller2Net("normal(1.0)")],
                         ids=["mlp", "mlp_nobias", "graph", "graph_out_out", "moeller2"])
@pytest.mark.parametrize("loss", ["mse", "sse"])
def test_input_gradient_matches_autodiff(model, loss):
    params = model.init(2)
    rng = np.random.default_rng(3)
    X = rng.normal(size=(5, model.d_in))
    Y = rng.normal(size=(5, model.d_out))
    gx = ln.input_gradient(model, params, X, Y, loss=loss)
    assert gx.shape == X.shape
    lf = get_loss(loss)
    ref = jax.grad(lambda x: lf(model.apply(params, x), Y))(jnp.asarray(X))
    assert rel_err(gx, ref) < AUTODIFF_RTOL


# ---- inputs as controls -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained_net():
    """A 2-10-2 tanh network fitted (scipy BFGS with backprop as jac, 300 iterations) to
    y = (sin(x1) + 0.5 x2, x1 x2 / 2) on 40 random points of [-1.5, 1.5]^2."""
    mlp = ln.MLP((2, 10, 2), activation="tanh")
    rng = np.random.default_rng(0)
    X = rng.uniform(-1.5, 1.5, size=(40, 2))
    Y = np.c_[np.sin(X[:, 0]) + 0.5 * X[:, 1], 0.5 * X[:, 0] * X[:, 1]]
    p0 = mlp.init(0)
    theta0, unravel = ravel_pytree(p0)

    def fun(th):
        val, g = value_and_backprop(mlp, unravel(jnp.asarray(th)), X, Y)
        return float(val), np.asarray(ravel_pytree(g)[0])

    res = minimize(fun, np.asarray(theta0), jac=True, method="BFGS", options={"maxiter": 300})
    params = unravel(jnp.asarray(res.x))
    assert res.fun < 0.1 * fun(np.asarray(theta0))[0]  # it did learn something
    return mlp, params


@pytest.mark.parametrize("method", ["bfgs", "l-bfgs-b", "cg"])
def test_optimize_inputs_recovers_an_input_for_a_target(trained_net, method):
    mlp, params = trained_net
    x_true = np.array([0.7, -0.4])
    target = np.asarray(mlp.apply(params, x_true[None, :]))[0]
    res = ln.optimize_inputs(mlp, params, target, x0=np.zeros(2), method=method, max_iter=500)
    assert res.success, res.message
    assert res.residual_norm < 1e-6
    out = np.asarray(mlp.apply(params, res.x[None, :]))[0]
    np.testing.assert_allclose(out, target, atol=1e-6)
    assert res.nit > 0 and res.fun < 1e-12


def test_optimize_inputs_respects_bounds(trained_net):
    mlp, params = trained_net
    target = np.asarray(mlp.apply(params, np.array([[1.0, 1.0]])))[0]
    res = ln.optimize_inputs(mlp, params, target, x0=np.zeros(2), method="l-bfgs-b",
                             bounds=[(-0.5, 0.5), (-0.5, 0.5)])
    assert np.all(np.abs(res.x) <= 0.5 + 1e-12)
    assert res.residual_norm > 1e-3  # the exact preimage lies outside the box


def test_optimize_inputs_on_a_graph_and_moeller2net():
    for model in (GRAPHS["random_a"], ln.Moeller2Net("normal(0.5)")):
        params = model.init(1)
        x_true = np.linspace(-0.5, 0.5, model.d_in)
        target = np.asarray(model.apply(params, x_true[None, :]))[0]
        res = ln.optimize_inputs(model, params, target, x0=np.zeros(model.d_in))
        assert res.residual_norm < 1e-6


# ---- bad input ----------------------------------------------------------------------------------


def test_bad_input_is_refused_before_work():
    mlp = ln.MLP((3, 4, 2))
    p = mlp.init(0)
    X, Y = np.zeros((5, 3)), np.zeros((5, 2))
    with pytest.raises(ln.LiftnnError, match="features"):
        backprop(mlp, p, np.zeros((5, 4)), Y)
    with pytest.raises(ln.LiftnnError, match="samples"):
        backprop(mlp, p, X, np.zeros((4, 2)))
    with pytest.raises(ln.LiftnnError, match="unknown loss"):
        backprop(mlp, p, X, Y, loss="hinge")
    with pytest.raises(ln.LiftnnError, match="layer 1: W has shape"):
        backprop(mlp, [p[0], (p[1][0].T, p[1][1])], X, Y)
    with pytest.raises(ln.LiftnnError, match="NaN"):
        backprop(mlp, p, np.full((5, 3), np.nan), Y)
    with pytest.raises(ln.LiftnnError, match="supports"):
        backprop(object(), p, X, Y)
    with pytest.raises(ln.LiftnnError, match="edge weights"):
        backprop(GRAPHS["chain"], np.zeros(3), np.zeros((2, 2)), np.zeros((2, 1)))
    with pytest.raises(ln.LiftnnError, match="unknown method"):
        ln.optimize_inputs(mlp, p, np.zeros(2), np.zeros(3), method="nelder-mead")
    with pytest.raises(ln.LiftnnError, match="features"):
        ln.optimize_inputs(mlp, p, np.zeros(2), np.zeros(4))
    with pytest.raises(ln.LiftnnError, match="columns"):
        ln.optimize_inputs(mlp, p, np.zeros(3), np.zeros(3))
    with pytest.raises(ln.LiftnnError, match="max_iter"):
        ln.optimize_inputs(mlp, p, np.zeros(2), np.zeros(3), max_iter=0)
    with pytest.raises(ln.LiftnnError, match="bounds"):
        ln.optimize_inputs(mlp, p, np.zeros(2), np.zeros(3), bounds=[(0, 1)] * 3)
