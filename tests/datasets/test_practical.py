"""The generated regression data sets of liftnn.datasets.practical: the scikit-learn draw,
split and standardised with the training rows' statistics; deterministic; bad arguments named."""

from __future__ import annotations

import numpy as np
import pytest

from liftnn import datasets
from liftnn.errors import LiftnnError

sk = pytest.importorskip("sklearn.datasets")


@pytest.mark.parametrize("name, gen, kw", [
    ("friedman1", lambda n, s: sk.make_friedman1(n_samples=n, n_features=10, noise=1.0,
                                                 random_state=s), {}),
    ("regression", lambda n, s: sk.make_regression(n_samples=n, n_features=20, n_informative=10,
                                                   noise=10.0, random_state=s), {}),
])
def test_draw_split_and_standardisation(name, gen, kw):
    d = datasets.load(name, seed=3, n=50, n_test=30, **kw)
    X, y = gen(80, 3)
    y = y.reshape(-1, 1)
    xm, xs, ym, ys = X[:50].mean(0), X[:50].std(0), y[:50].mean(0), y[:50].std(0)
    np.testing.assert_allclose(d.x_train, (X[:50] - xm) / xs, rtol=0, atol=1e-12)
    np.testing.assert_allclose(d.x_test, (X[50:] - xm) / xs, rtol=0, atol=1e-12)
    np.testing.assert_allclose(d.y_train, (y[:50] - ym) / ys, rtol=0, atol=1e-12)
    np.testing.assert_allclose(d.y_test, (y[50:] - ym) / ys, rtol=0, atol=1e-12)
    np.testing.assert_allclose(d.x_train.mean(0), 0, atol=1e-12)
    np.testing.assert_allclose(d.y_train.std(), 1, atol=1e-12)
    assert d.meta["y_std"] == pytest.approx(float(ys[0])) and d.meta["n_test"] == 30


def test_deterministic_and_seeded():
    a, b = datasets.load("friedman1", seed=1), datasets.load("friedman1", seed=1)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    assert not np.array_equal(a.x_train, datasets.load("friedman1", seed=2).x_train)
    assert a.x_train.shape == (400, 10) and a.y_test.shape == (400, 1)
    assert "friedman1" in datasets.names() and "regression" in datasets.names()


@pytest.mark.parametrize("name, kw, match", [
    ("friedman1", {"d": 4}, "d must be an integer >= 5"),
    ("friedman1", {"n": 1}, "n must be an integer >= 2"),
    ("friedman1", {"noise": -1.0}, "noise must be a finite number >= 0"),
    ("regression", {"n_informative": 30, "d": 20}, "n_informative must be <= d"),
    ("regression", {"n_test": 0}, "n_test must be an integer >= 1"),
])
def test_bad_arguments(name, kw, match):
    with pytest.raises(LiftnnError, match=match):
        datasets.load(name, **kw)
