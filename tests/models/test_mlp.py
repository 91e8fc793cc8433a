"""The MLP (seed 000 eq. 1.5): shapes, initialiser statistics, dropout and input checks.

Proved here: params have the documented shapes and the forward pass equals a NumPy reference;
every initialiser draws from its documented distribution (bounds and standard deviations checked
on large layers, with tolerances of several standard errors); dropout applies a Bernoulli mask
with inverted scaling per hidden layer in training and is the identity at inference; bad sizes,
names and data are refused with a named LiftnnError.
"""

from __future__ import annotations

import _numpy_ref as ref
import jax
import numpy as np
import pytest

import liftnn as ln
from liftnn.models import parse_arch


def test_shapes_params_and_forward():
    mlp = ln.MLP("3-7-5-2", activation="tanh")
    assert mlp.sizes == (3, 7, 5, 2) and mlp.arch == "3-7-5-2" and mlp.n_layers == 3
    assert mlp.d_in == 3 and mlp.d_out == 2 and mlp.hidden_sizes == (7, 5)
    p = mlp.init(0)
    assert [(np.shape(W), np.shape(b)) for W, b in p] == [((7, 3), (7,)), ((5, 7), (5,)),
                                                          ((2, 5), (2,))]
    assert all(W.dtype == np.float64 for W, _ in p)
    assert mlp.n_params == 7 * 3 + 7 + 5 * 7 + 5 + 2 * 5 + 2 == mlp.flatten(p).size
    X = np.random.default_rng(0).normal(size=(4, 3))
    out = np.asarray(mlp.apply(p, X))
    assert out.shape == (4, 2)
    np.testing.assert_allclose(out, ref.model_forward(mlp, p, X), rtol=1e-13, atol=1e-14)
    pre, outs = mlp.forward(p, X)
    assert len(pre) == 3 and len(outs) == 4
    np.testing.assert_allclose(np.asarray(outs[-1]), out, rtol=1e-15)
    back = mlp.unflatten(mlp.flatten(p))
    for (W, b), (W2, b2) in zip(p, back):
        np.testing.assert_array_equal(np.asarray(W), np.asarray(W2))
        np.testing.assert_array_equal(np.asarray(b), np.asarray(b2))


def test_no_bias_and_aliases():
    mlp = ln.MLP((2, 4, 1), activation="tansig", output_activation="purelin", bias=False)
    assert mlp.activations == ("tanh", "identity") and mlp.n_params == 12
    assert all(b is None for _, b in mlp.init(0))
    assert parse_arch("1-16-16-1") == (1, 16, 16, 1)


def test_init_is_deterministic_per_seed():
    mlp = ln.MLP((3, 7, 5, 2), activation="tanh")
    a, b, c = (mlp.flatten(mlp.init(s)) for s in (0, 0, 1))
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert not np.allclose(np.asarray(a), np.asarray(c))


# ---- initialiser statistics on a 300 -> 200 layer (60 000 weights) -----------------------------
FAN_IN, FAN_OUT = 300, 200


def first_layer(init):
    W, b = ln.MLP((FAN_IN, FAN_OUT, 1), init=init).init(3)[0]
    return np.asarray(W), np.asarray(b)


def test_glorot_uniform_bound_variance_and_zero_bias():
    W, b = first_layer("glorot_uniform")
    lim = np.sqrt(6 / (FAN_IN + FAN_OUT))
    assert np.max(np.abs(W)) <= lim and np.max(np.abs(W)) > 0.999 * lim
    assert np.var(W) == pytest.approx(lim ** 2 / 3, rel=0.03)  # U(-l, l) has variance l^2 / 3
    assert np.all(b == 0)


@pytest.mark.parametrize("init, std", [
    ("normal(0.01)", 0.01),
    pytest.param("glorot_normal", np.sqrt(2 / (FAN_IN + FAN_OUT)), marks=pytest.mark.slow),
    pytest.param("kaiming_normal", np.sqrt(2 / FAN_IN), marks=pytest.mark.slow),
    pytest.param(("normal", 100.0), 100.0, marks=pytest.mark.slow),
])
def test_normal_initialisers_have_the_documented_scale(init, std):
    W, b = first_layer(init)
    assert np.std(W) == pytest.approx(std, rel=0.03)   # standard error ~ 0.3 %
    assert abs(np.mean(W)) < 5 * std / np.sqrt(W.size)
    assert np.all(b == 0)


@pytest.mark.slow
def test_kaiming_uniform_bound():
    W, b = first_layer("kaiming_uniform")
    lim = np.sqrt(6 / FAN_IN)
    assert np.max(np.abs(W)) <= lim and np.max(np.abs(W)) > 0.999 * lim and np.all(b == 0)


def test_torch_default_weights_and_biases_in_range():
    W, b = first_layer("torch_default")
    lim = 1 / np.sqrt(FAN_IN)
    assert np.max(np.abs(W)) <= lim and np.max(np.abs(W)) > 0.999 * lim
    assert np.max(np.abs(b)) <= lim and np.max(np.abs(b)) > 0.9 * lim   # biases drawn too
    assert np.var(b) == pytest.approx(lim ** 2 / 3, rel=0.35)            # only 200 draws


# ---- dropout (seed 003) -----------------------------------------------------------------------


def probe(rates, width=2000):
    """An identity network 1 -> width -> ... -> width whose output shows the dropped hidden
    units directly: the first layer copies x = 1 into every unit, later layers are identities."""
    n_hidden = len(rates)
    mlp = ln.MLP((1,) + (width,) * (n_hidden + 1), activation="identity", dropout=rates)
    eye = np.eye(width)
    params = [(np.ones((width, 1)), np.zeros(width))] + [(eye, np.zeros(width))] * n_hidden
    return mlp, params


def test_dropout_mask_and_inverted_scaling_in_training():
    mlp, params = probe((0.3,))
    out = np.asarray(mlp.apply(params, np.ones((1, 1)), key=jax.random.PRNGKey(0), train=True))[0]
    kept = out != 0
    np.testing.assert_allclose(out[kept], 1 / 0.7, rtol=1e-14)   # survivors scaled by 1/(1-p)
    assert np.mean(~kept) == pytest.approx(0.3, abs=0.04)         # ~ 4 standard errors
    assert np.mean(out) == pytest.approx(1.0, abs=0.06)           # expectation preserved
    again = np.asarray(mlp.apply(params, np.ones((1, 1)), key=jax.random.PRNGKey(0), train=True))
    other = np.asarray(mlp.apply(params, np.ones((1, 1)), key=jax.random.PRNGKey(1), train=True))
    np.testing.assert_array_equal(again[0], out)
    assert np.any(other[0] != out)


def test_dropout_rate_is_per_layer():
    mlp, params = probe((0.5, 0.0), width=1000)
    out = np.asarray(mlp.apply(params, np.ones((1, 1)), key=jax.random.PRNGKey(2), train=True))[0]
    assert set(np.unique(out)) <= {0.0, 2.0}
    assert np.mean(out == 0) == pytest.approx(0.5, abs=0.06)


def test_dropout_is_identity_at_inference():
    mlp, params = probe((0.3,))
    np.testing.assert_array_equal(np.asarray(mlp.apply(params, np.ones((1, 1))))[0], 1.0)
    inf = mlp.apply(params, np.ones((1, 1)), key=jax.random.PRNGKey(0), train=False)
    np.testing.assert_array_equal(np.asarray(inf)[0], 1.0)


# ---- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize("kw, match", [
    ({"sizes": (3, 0, 1)}, "positive"),
    ({"sizes": (3, -2, 1)}, "positive"),
    ({"sizes": (3,)}, "at least an input and an output"),
    ({"sizes": "1-x-1"}, "not of the form"),
    ({"sizes": (1, 4, 1), "activation": "swish"}, "unknown activation"),
    ({"sizes": (1, 4, 1), "output_activation": "softmax2"}, "unknown activation"),
    ({"sizes": (1, 4, 4, 1), "activation": ["tanh"]}, "1 activations given for 2"),
    ({"sizes": (1, 4, 1), "init": "orthogonal"}, "unknown initialiser"),
    ({"sizes": (1, 4, 1), "dropout": 1.0}, "dropout"),
    ({"sizes": (1, 4, 1), "dropout": -0.1}, "dropout"),
    ({"sizes": (1, 4, 4, 1), "dropout": (0.1,)}, "dropout"),
])
def test_bad_construction_is_refused(kw, match):
    with pytest.raises(ln.LiftnnError, match=match):
        ln.MLP(**kw)


def test_bad_data_is_refused():
    mlp = ln.MLP((3, 4, 2))
    with pytest.raises(ln.LiftnnError, match="3"):
        mlp.check_data(np.zeros((5, 4)))
    with pytest.raises(ln.LiftnnError, match="NaN"):
        mlp.check_data(np.array([[0.0, np.nan, 1.0]]))
    with pytest.raises(ln.LiftnnError, match="Inf"):
        mlp.check_data(np.zeros((2, 3)), np.array([[0.0, np.inf], [0.0, 0.0]]))
    with pytest.raises(ln.LiftnnError, match="columns"):
        mlp.check_data(np.zeros((2, 3)), np.zeros((2, 3)))
    with pytest.raises(ln.LiftnnError, match="samples"):
        mlp.check_data(np.zeros((2, 3)), np.zeros((3, 2)))
    with pytest.raises(ln.LiftnnError, match="empty"):
        mlp.check_data(np.zeros((0, 3)))


def test_model_is_immutable_and_hashable():
    a, b = ln.MLP((2, 3, 1)), ln.MLP((2, 3, 1))
    assert a == b and hash(a) == hash(b) and a != ln.MLP((2, 3, 1), activation="relu")
    with pytest.raises(AttributeError):
        a.sizes = (1, 1)


def test_dropout_in_training_without_a_key_is_refused():
    mlp = ln.MLP((1, 4, 1), dropout=0.5)
    with pytest.raises(ln.LiftnnError, match="needs a random key"):
        mlp.apply(mlp.init(0), np.ones((2, 1)), train=True)
    plain = ln.MLP((1, 4, 1))  # no dropout: train=True without a key is just the forward pass
    p = plain.init(0)
    np.testing.assert_array_equal(plain.apply(p, np.ones((2, 1)), train=True),
                                  plain.apply(p, np.ones((2, 1))))
