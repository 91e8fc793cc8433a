"""Small synthetic data sets from the seed documents."""

from __future__ import annotations

import numpy as np

from liftnn._validate import check_positive
from liftnn.datasets.base import Dataset, register
from liftnn.errors import LiftnnError


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(int(seed))


@register("sine")
def sine(seed: int = 0, n: int = 21) -> Dataset:
    """Seed 000 sec. 2.1: y = -sin(0.8 pi x), n = 21 points evenly on [0, 1]; test on a fine grid."""
    if int(n) < 1:
        raise LiftnnError(f"n must be >= 1; got {n}")
    x = np.linspace(0.0, 1.0, int(n))
    xt = np.linspace(0.0, 1.0, 201)
    return Dataset(x[:, None], -np.sin(0.8 * np.pi * x)[:, None], xt[:, None],
                   -np.sin(0.8 * np.pi * xt)[:, None], {"name": "sine", "seed": seed, "n": int(n)})


@register("sin2")
def sin2(seed: int = 0, n: int = 40, noise: float = 0.1, n_test: int = 200) -> Dataset:
    """Thesis sin^2 benchmark: y = sin(x^2) + N(0, noise^2), n points evenly on [0, pi].

    The test set is the noise-free function on n_test points of the same interval, so test MSE
    measures the distance to the truth.
    """
    n = int(n)
    if n < 1:
        raise LiftnnError(f"n must be >= 1; got {n}")
    check_positive("noise", noise, strict=False)
    x = np.linspace(0.0, np.pi, n)
    y = np.sin(x**2) + float(noise) * _rng(seed).standard_normal(n)
    xt = np.linspace(0.0, np.pi, int(n_test))
    return Dataset(x[:, None], y[:, None], xt[:, None], np.sin(xt**2)[:, None],
                   {"name": "sin2", "seed": seed, "n": n, "noise": float(noise)})


# Seed 001's data: inputs y_i in R^3, targets z_i in R^2 (one-hot-like), m = 6.
MOELLER_X = np.array([[1.2, 2.4, 1.7], [-1.3, 1.0, 0.0], [0.0, 1.3, 0.4],
                      [0.2, 0.5, 0.9], [-0.3, 1.1, -0.6], [-1.2, -0.7, -0.1]])
MOELLER_Y = np.array([[1, 0], [0, 1], [1, 0], [1, 0], [0, 1], [0, 1]], dtype=float)


@register("moeller")
def moeller(seed: int = 0) -> Dataset:
    """Seed 001's 6-point data set (3 inputs, 2 targets); no test set."""
    return Dataset(MOELLER_X.copy(), MOELLER_Y.copy(), np.zeros((0, 3)), np.zeros((0, 2)),
                   {"name": "moeller", "seed": seed, "n": 6})


@register("linear3")
def linear3(seed: int = 0) -> Dataset:
    """Seed 004's three points (0, 1), (1, 2.1), (2, 2.9); least-squares line a = 0.95, b = 1.05."""
    x = np.array([[0.0], [1.0], [2.0]])
    y = np.array([[1.0], [2.1], [2.9]])
    return Dataset(x, y, np.zeros((0, 1)), np.zeros((0, 1)), {"name": "linear3", "seed": seed, "n": 3})
