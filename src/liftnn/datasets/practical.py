"""Generated regression data sets of the kind a scikit-learn user brings (the `practical` bench
suite, docs/benchmarks.md): Friedman's #1 benchmark and a random linear-plus-noise regression,
drawn with scikit-learn's generators.

- friedman1: y = 10 sin(pi x1 x2) + 20 (x3 - 0.5)^2 + 10 x4 + 5 x5 + noise N(0, noise^2), x
  uniform on [0, 1]^d (d >= 5; features beyond the fifth do not enter y);
  sklearn.datasets.make_friedman1.
- regression: sklearn.datasets.make_regression (a random linear model on n_informative of d
  features, Gaussian noise of std `noise`).

Training and test sets are one draw (random_state = seed) split into the first n rows and the
last n_test rows; features and target are standardised with the training rows' mean and std
(applied to both; the values are in meta).  scikit-learn is imported only when one of them is
loaded.  Arguments are checked before any work (LiftnnError naming the bad one).
"""

from __future__ import annotations

import numpy as np

from liftnn.datasets.base import Dataset, register
from liftnn.errors import LiftnnError


def _count(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise LiftnnError(f"{name} must be an integer >= {minimum}; got {value!r}")
    return int(value)


def _noise(value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) \
            or value < 0:
        raise LiftnnError(f"noise must be a finite number >= 0; got {value!r}")
    return float(value)


def _sklearn_datasets(name: str):
    try:
        from sklearn import datasets as skd
    except ImportError:
        raise LiftnnError(f"the {name!r} data set needs scikit-learn (pip install scikit-learn, "
                          f"or the liftnn[dev] extra)") from None
    return skd


def _standardised(name: str, X, y, n: int, meta: dict) -> Dataset:
    """Split the first n rows off for training; standardise with their statistics."""
    X, y = np.asarray(X, np.float64), np.asarray(y, np.float64).reshape(-1, 1)
    xm, xs = X[:n].mean(0), X[:n].std(0)
    xs = np.where(xs > 0, xs, 1.0)
    ym, ys = y[:n].mean(0), y[:n].std(0)
    ys = np.where(ys > 0, ys, 1.0)
    meta = {"name": name, **meta, "n": n, "n_test": len(y) - n, "x_mean": xm, "x_std": xs,
            "y_mean": float(ym[0]), "y_std": float(ys[0])}
    return Dataset((X[:n] - xm) / xs, (y[:n] - ym) / ys, (X[n:] - xm) / xs, (y[n:] - ym) / ys,
                   meta)


@register("friedman1")
def friedman1(seed: int = 0, n: int = 400, n_test: int = 400, d: int = 10,
              noise: float = 1.0) -> Dataset:
    """Friedman #1 (module docstring): x_train (n, d), y_train (n, 1), test (n_test, ...)."""
    n, n_test, d = _count("n", n, 2), _count("n_test", n_test, 1), _count("d", d, 5)
    noise = _noise(noise)
    skd = _sklearn_datasets("friedman1")
    X, y = skd.make_friedman1(n_samples=n + n_test, n_features=d, noise=noise,
                              random_state=int(seed))
    return _standardised("friedman1", X, y, n, {"seed": int(seed), "d": d, "noise": noise})


@register("regression")
def regression(seed: int = 0, n: int = 400, n_test: int = 400, d: int = 20,
               n_informative: int = 10, noise: float = 10.0) -> Dataset:
    """make_regression (module docstring): x_train (n, d), y_train (n, 1), test (n_test, ...)."""
    n, n_test, d = _count("n", n, 2), _count("n_test", n_test, 1), _count("d", d, 1)
    k = _count("n_informative", n_informative, 1)
    if k > d:
        raise LiftnnError(f"n_informative must be <= d = {d}; got {k}")
    noise = _noise(noise)
    skd = _sklearn_datasets("regression")
    X, y = skd.make_regression(n_samples=n + n_test, n_features=d, n_informative=k, noise=noise,
                               random_state=int(seed))
    return _standardised("regression", X, y, n, {"seed": int(seed), "d": d, "n_informative": k,
                                                 "noise": noise})
