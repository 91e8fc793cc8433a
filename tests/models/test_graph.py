"""General feedforward graphs (seed 002) and seed 001's two-hidden-layer network.

Proved here: the graph's numbering rules and In/Out sets; its batched forward pass equals the
seed-002 definition evaluated unit by unit in NumPy (_numpy_ref.graph_forward); an MLP is one such
graph (same outputs, exact parameter mapping both ways, MLP-distributed initial weights);
Moeller2Net computes the report's formulas (with the documented reading h0 = sigmoid(h*_1),
H0 = H*_1) and has 62 parameters; bad graphs and bad params are refused with a named error.
"""

from __future__ import annotations

import _numpy_ref as ref
import numpy as np
import pytest

import liftnn as ln
from liftnn.problem import TrainingProblem

# units: 0 bias, 1-2 inputs, 3..7 computing; skip connections 1->5, 2->6, 3->6; outputs 6, 7
EDGES = [(0, 3), (1, 3), (2, 3), (0, 4), (1, 4), (3, 4), (1, 5), (4, 5), (2, 6), (3, 6), (5, 6),
         (4, 7), (6, 7)]
ACTS = {3: "relu", 4: "sigmoid", 5: "leaky_relu", 6: "softplus", 7: "identity"}


def small_graph(**kw):
    return ln.FeedforwardGraph(2, EDGES, outputs=[6, 7], activation=ACTS, **kw)


def test_numbering_and_in_out_sets():
    g = small_graph()
    assert g.d_in == 2 and g.d_out == 2 and g.n_units == 8 and g.n_params == len(EDGES)
    assert g.computing_units == (3, 4, 5, 6, 7)
    # stored sorted by (target, source): the weights into one unit are contiguous, bias first
    assert list(g.edges) == sorted(EDGES, key=lambda e: (e[1], e[0]))
    assert all(i < j for i, j in g.edges)
    assert g.In(6) == (2, 3, 5) and g.Out(3) == (4, 6) and g.Out(7) == () and g.In(3) == (0, 1, 2)
    for j in g.computing_units:
        assert g.In(j) == tuple(sorted(i for i, k in EDGES if k == j))
    assert [g.activation_of(j) for j in g.computing_units] == [ACTS[j] for j in range(3, 8)]


def test_forward_equals_the_unit_by_unit_definition():
    g = small_graph()
    rng = np.random.default_rng(0)
    w = rng.normal(size=g.n_params)
    X = rng.normal(size=(11, 2))
    Z, O = g.forward(w, X)
    Zr, Or = ref.graph_forward(g, w, X)
    np.testing.assert_allclose(np.asarray(Z), Zr, rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(np.asarray(O), Or, rtol=1e-13, atol=1e-14)
    assert np.all(np.asarray(O)[:, 0] == 1.0)                        # the bias unit
    np.testing.assert_array_equal(np.asarray(O)[:, 1:3], X)          # fake input units copy x
    np.testing.assert_allclose(np.asarray(g.apply(w, X)), Or[:, [6, 7]], rtol=1e-13, atol=1e-14)


def test_outputs_as_a_count_and_explicit_activation_sequence():
    g = ln.FeedforwardGraph(1, [(1, 2), (1, 3), (2, 4), (3, 4), (0, 4)], outputs=1,
                            activation=["tanh", "sigmoid", "identity"])
    assert g.outputs == (4,) and g.unit_activations == ("tanh", "sigmoid", "identity")
    g2 = ln.FeedforwardGraph(1, [(1, 2), (1, 3), (2, 4), (3, 4), (0, 4)], outputs=1,
                             activation="tansig", output_activation="logsig")
    assert g2.unit_activations == ("tanh", "tanh", "sigmoid")  # aliases resolved


def test_an_mlp_is_a_graph():
    mlp = ln.MLP((3, 5, 4, 2), activation=["tanh", "relu"], output_activation="sigmoid",
                 init="torch_default")
    g = ln.FeedforwardGraph.from_mlp(mlp)
    # bias, 3 inputs, 5 + 4 + 2 computing units numbered layer by layer
    assert g.n_units == 1 + 3 + 5 + 4 + 2 and g.n_params == mlp.n_params
    assert g.In(4) == (0, 1, 2, 3) and g.In(9) == (0, 4, 5, 6, 7, 8) and g.outputs == (13, 14)
    assert [g.activation_of(j) for j in (4, 9, 13)] == ["tanh", "relu", "sigmoid"]
    p = mlp.init(2)
    w = g.params_from_mlp(p)
    back = g.params_to_mlp(w)
    for (W, b), (W2, b2) in zip(p, back):
        np.testing.assert_array_equal(np.asarray(W), np.asarray(W2))
        np.testing.assert_array_equal(np.asarray(b), np.asarray(b2))
    X = np.random.default_rng(1).normal(size=(6, 3))
    np.testing.assert_allclose(np.asarray(g.apply(w, X)), ref.model_forward(mlp, p, X),
                               rtol=1e-13, atol=1e-14)


def test_from_mlp_without_bias_has_no_bias_edges():
    mlp = ln.MLP((2, 3, 1), activation="tanh", bias=False)
    g = ln.FeedforwardGraph.from_mlp(mlp)
    assert all(i != 0 for i, _ in g.edges) and g.n_params == mlp.n_params == 9
    assert all(b is None for _, b in g.params_to_mlp(np.arange(9.0)))


def test_init_is_deterministic_and_follows_the_initialiser():
    mlp = ln.MLP((30, 20, 10), activation="tanh", init="glorot_uniform")
    g = ln.FeedforwardGraph.from_mlp(mlp)
    w0, w0b, w1 = g.init(0), g.init(0), g.init(1)
    assert w0.dtype == np.float64 and w0.shape == (g.n_params,)
    np.testing.assert_array_equal(np.asarray(w0), np.asarray(w0b))
    assert not np.allclose(np.asarray(w0), np.asarray(w1))
    (W0, b0), (W1, b1) = g.params_to_mlp(w0)
    # glorot_uniform per layer: |W| <= sqrt(6 / (fan_in + fan_out)) and zero biases
    assert np.max(np.abs(W0)) <= np.sqrt(6 / 50) and np.max(np.abs(W1)) <= np.sqrt(6 / 30)
    assert np.max(np.abs(W0)) > 0.9 * np.sqrt(6 / 50)
    assert np.all(np.asarray(b0) == 0) and np.all(np.asarray(b1) == 0)
    # distinct units get distinct rows of the draw
    assert len({tuple(np.round(np.asarray(r), 12)) for r in np.asarray(W0)}) == 20


def test_init_torch_default_draws_bias_weights():
    g = small_graph(init="torch_default")
    w = np.asarray(g.init(3))
    bias_edges = [e for e, (i, _) in enumerate(g.edges) if i == 0]
    assert np.all(w[bias_edges] != 0.0)
    for e, (i, j) in enumerate(g.edges):  # |w| <= 1 / sqrt(fan_in of the unit)
        fan_in = sum(1 for s in g.In(j) if s != 0)
        assert abs(w[e]) <= 1 / np.sqrt(fan_in)


def test_graph_is_immutable_hashable_and_equal_by_structure():
    a, b = small_graph(), small_graph()
    assert a == b and hash(a) == hash(b)
    assert a != ln.FeedforwardGraph(2, EDGES, outputs=[6, 7], activation={**ACTS, 7: "tanh"})
    assert a != ln.FeedforwardGraph(2, EDGES, outputs=[7, 6], activation=ACTS)
    with pytest.raises(AttributeError):
        a.n_inputs = 3


def test_graph_works_in_a_training_problem():
    g = small_graph()
    rng = np.random.default_rng(4)
    X, Y = rng.normal(size=(9, 2)), rng.normal(size=(9, 2))
    prob = TrainingProblem(g, X, Y, loss="mse")
    w = rng.normal(size=g.n_params)
    expect = ref.loss("mse", ref.model_forward(g, w, X), Y)
    assert float(prob.fun(w)) == pytest.approx(expect, rel=1e-13)


@pytest.mark.parametrize("args, match", [
    ((0, [(0, 1)], [1]), "n_inputs must be >= 1"),
    ((2, [], [3]), "edges is empty"),
    ((2, [(4, 3)], [3]), "smaller to a larger"),
    ((2, [(1, 3), (1, 2)], [3]), "fake input unit"),
    ((2, [(1, 3), (3, 0)], [3]), "smaller to a larger"),
    ((2, [(1, 3), (1, 3)], [3]), "more than once"),
    ((2, [(1, 3), (3, 5)], [5]), r"unit\(s\) \[4\] have no incoming edge"),
    ((2, [(1, 3), (3, 4)], [2]), "not computing units"),
    ((2, [(1, 3), (3, 4)], [4, 4]), "repeat"),
    ((2, [(1, 3), (3, 4)], 3), "between 1 and"),
    ((2, [(1, 3, 4)], [3]), "pairs"),
    ((2, [(1.5, 3)], [3]), "integer"),
])
def test_bad_graphs_are_refused(args, match):
    with pytest.raises(ln.LiftnnError, match=match):
        ln.FeedforwardGraph(*args)


def test_bad_graph_options_are_refused():
    with pytest.raises(ln.LiftnnError, match="unknown activation"):
        ln.FeedforwardGraph(1, [(1, 2)], [2], activation="swish")
    with pytest.raises(ln.LiftnnError, match="2 activations given for 1"):
        ln.FeedforwardGraph(1, [(1, 2)], [2], activation=["tanh", "tanh"])
    with pytest.raises(ln.LiftnnError, match="not a computing unit"):
        ln.FeedforwardGraph(1, [(1, 2)], [2], activation={1: "tanh"})
    with pytest.raises(ln.LiftnnError, match="n_units"):
        ln.FeedforwardGraph(1, [(1, 2)], [2], n_units=2)
    with pytest.raises(ln.LiftnnError, match="unknown initialiser"):
        ln.FeedforwardGraph(1, [(1, 2)], [2], init="orthogonal")
    g = small_graph()
    with pytest.raises(ln.LiftnnError, match="13 edge weights"):
        g.apply(np.zeros(12), np.zeros((1, 2)))
    with pytest.raises(ln.LiftnnError, match="features"):
        g.check_data(np.zeros((3, 3)))
    with pytest.raises(ln.LiftnnError, match="not built with"):
        g.params_to_mlp(np.zeros(13))


# ---- seed 001's network -----------------------------------------------------------------------


def test_moeller2net_has_62_parameters_and_the_report_shapes():
    net = ln.Moeller2Net()
    p = net.init(0)
    p2 = net.init(0)
    assert [np.shape(W) for W, _ in p] == [(5, 6), (4, 5), (3, 4)]
    assert all(np.array_equal(np.asarray(W), np.asarray(W2)) for (W, _), (W2, _) in zip(p, p2))
    assert all(b is None for _, b in p)
    assert net.n_params == 62 == sum(np.size(W) for W, _ in p)
    theta = net.flatten(p)
    assert theta.shape == (62,)
    for (W, _), (W2, _) in zip(p, net.unflatten(theta)):
        np.testing.assert_array_equal(np.asarray(W), np.asarray(W2))


def test_moeller2net_computes_the_report_formulas():
    net = ln.Moeller2Net()
    rng = np.random.default_rng(5)
    Ws = [rng.normal(size=s) for s in net.shapes]
    params = [(W, None) for W in Ws]
    X = rng.normal(size=(8, 6))
    z = np.asarray(net.apply(params, X))
    np.testing.assert_allclose(z, ref.moeller_forward(Ws, X), rtol=1e-13, atol=1e-14)
    assert z.shape == (8, 3) and np.all(np.abs(z) < 1)
    f = {k: np.asarray(v) for k, v in net.forward(params, X).items()}
    np.testing.assert_allclose(f["h_star"], X @ Ws[0].T, rtol=1e-13)      # no activation
    np.testing.assert_allclose(f["h0"], 1 / (1 + np.exp(-f["h_star"][:, 0])), rtol=1e-13)
    np.testing.assert_allclose(f["H0"], f["H_star"][:, 0], rtol=1e-13)     # the reading H0 = H*_1


def test_moeller2net_refuses_bad_input():
    net = ln.Moeller2Net()
    p = [(np.zeros(s), None) for s in net.shapes]
    with pytest.raises(ln.LiftnnError, match="weight shapes"):
        net.apply([(np.zeros((5, 5)), None)] + p[1:], np.zeros((1, 6)))
    with pytest.raises(ln.LiftnnError, match="features"):
        net.check_data(np.zeros((2, 5)))
    with pytest.raises(ln.LiftnnError, match="62 parameters"):
        net.unflatten(np.zeros(61))
    with pytest.raises(ln.LiftnnError, match="unknown initialiser"):
        ln.Moeller2Net(init="zeros")
    assert ln.Moeller2Net() == ln.Moeller2Net() and ln.Moeller2Net() != ln.Moeller2Net("normal(0.01)")
