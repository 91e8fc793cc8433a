"""Classification data sets (liftnn.datasets.classification).

Proves: every set is registered and deterministic per seed; labels are class indices (m, 1) or
one-hot (m, k) that agree; meta says task and n_classes; the generated sets follow their
formulas (moons' points lie near their half circles, spiral arms balanced); the bundled sets are
split stratified (class proportions kept) and standardised with training statistics only; bad
arguments raise LiftnnError; a network trains on them with the cross-entropy front door.
"""

from __future__ import annotations

import numpy as np
import pytest

import liftnn as ln
from liftnn.datasets import load, names
from liftnn.datasets.classification import stratified_split

GENERATED = ("moons", "spirals")
BUNDLED = {"iris": (150, 4, 3), "wine": (178, 13, 3), "breast_cancer": (569, 30, 2),
           "digits": (1797, 64, 10)}


def _idx(y):
    return y.reshape(-1).astype(int)


@pytest.mark.parametrize("name", GENERATED + tuple(BUNDLED))
def test_registered_deterministic_and_labelled(name):
    if name in BUNDLED:
        pytest.importorskip("sklearn")
    assert name in names()
    a, b, c = load(name, seed=0), load(name, seed=0), load(name, seed=1)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    np.testing.assert_array_equal(a.y_test, b.y_test)
    assert not np.array_equal(a.x_train, c.x_train)
    k = a.meta["n_classes"]
    assert a.meta["task"] == "classification" and a.meta["labels"] == "index"
    assert len(a.meta["class_names"]) == k
    for y in (a.y_train, a.y_test):
        assert y.shape[1] == 1 and np.all(y == np.round(y))
        assert set(np.unique(y)) <= set(range(k))
    assert set(_idx(a.y_train)) == set(range(k))  # every class is in the training set
    oh = load(name, seed=0, labels="onehot")
    assert oh.y_train.shape == (a.n, k) and np.all(oh.y_train.sum(1) == 1)
    np.testing.assert_array_equal(np.argmax(oh.y_train, 1), _idx(a.y_train))
    np.testing.assert_array_equal(oh.x_test, a.x_test)


def test_moons_follow_their_half_circles():
    d = load("moons", seed=3, n=400, noise=0.0)
    x, c = d.x_train, _idx(d.y_train)
    np.testing.assert_allclose(np.hypot(x[c == 0, 0], x[c == 0, 1]), 1.0, atol=1e-12)
    np.testing.assert_allclose(np.hypot(x[c == 1, 0] - 1.0, x[c == 1, 1] - 0.5), 1.0,
                               atol=1e-12)
    assert np.all(x[c == 0, 1] >= 0) and np.all(x[c == 1, 1] <= 0.5)
    assert np.bincount(c).tolist() == [200, 200]
    noisy = load("moons", seed=3, n=400, noise=0.2)
    assert noisy.meta["noise"] == 0.2 and not np.allclose(noisy.x_train, x)


def test_spirals_balanced_arms_in_the_unit_disc():
    d = load("spirals", seed=0, n=301, n_test=30, n_classes=3, noise=0.0)
    assert np.bincount(_idx(d.y_train)).tolist() == [101, 100, 100]
    assert d.x_train.shape == (301, 2) and d.x_test.shape == (30, 2)
    r = np.hypot(d.x_train[:, 0], d.x_train[:, 1])
    assert np.all(r <= 1.0)
    # arm c at radius r has angle 2 pi (turns r + c / k)
    ang = np.arctan2(d.x_train[:, 1], d.x_train[:, 0])
    want = 2 * np.pi * (1.0 * r + _idx(d.y_train) / 3)
    np.testing.assert_allclose(np.cos(ang - want), 1.0, atol=1e-9)


@pytest.mark.parametrize("name", tuple(BUNDLED))
def test_bundled_split_is_stratified_and_standardised_on_training_data(name):
    pytest.importorskip("sklearn")
    m, d_in, k = BUNDLED[name]
    d = load(name, seed=2, test_fraction=0.3)
    assert d.n + len(d.x_test) == m and d.d_in == d_in and d.meta["n_classes"] == k
    counts = np.bincount(_idx(d.y_train), minlength=k) + np.bincount(_idx(d.y_test), minlength=k)
    np.testing.assert_allclose(np.bincount(_idx(d.y_test), minlength=k), np.round(0.3 * counts))
    mean, std = d.x_train.mean(0), d.x_train.std(0)
    np.testing.assert_allclose(mean, 0.0, atol=1e-10)
    np.testing.assert_allclose(std[std > 0], 1.0, rtol=1e-10)
    # the test set uses the training statistics, so it is not exactly standardised itself
    assert np.abs(d.x_test.mean(0)).max() > 1e-6
    raw_mean = np.asarray(d.meta["x_mean"])
    assert raw_mean.shape == (d_in,) and d.meta["source"].startswith("sklearn.datasets.")


def test_stratified_split_on_made_up_labels():
    idx = np.array([0] * 10 + [1] * 4 + [2] * 1)
    tr, te = stratified_split(idx, 0.25, seed=0)
    assert sorted(np.concatenate([tr, te]).tolist()) == list(range(15))
    assert np.bincount(idx[te], minlength=3).tolist() == [2, 1, 0]  # round(2.5)=2, 1, none of 1
    np.testing.assert_array_equal(te, stratified_split(idx, 0.25, seed=0)[1])


@pytest.mark.parametrize("kw, match", [
    ({"name": "moons", "noise": -1.0}, "noise"),
    ({"name": "moons", "n": 1}, "n must be"),
    ({"name": "moons", "labels": "strings"}, "labels"),
    ({"name": "spirals", "n_classes": 1}, "n_classes"),
    ({"name": "spirals", "n": 2, "n_classes": 3}, "per class"),
    ({"name": "iris", "test_fraction": 1.0}, "test_fraction"),
    ({"name": "iris", "bogus": 1}, "bogus"),
])
def test_bad_arguments(kw, match):
    kw = dict(kw)
    with pytest.raises(ln.LiftnnError, match=match):
        load(kw.pop("name"), **kw)


def test_a_network_learns_the_moons_with_cross_entropy():
    d = load("moons", seed=0, n=100, n_test=100, noise=0.1, labels="onehot")
    res = ln.train(ln.MLP([2, 8, 2]), d, method="lbfgs", loss="cross_entropy", max_iter=300)
    assert res.train_accuracy > 0.95 and res.test_accuracy > 0.9
