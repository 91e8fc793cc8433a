"""Data sets: `load(name, seed=..., **kw) -> Dataset`.

Names: sine, sin2, moeller, moeller2, linear3, gauss-bump, teacher, santafe, laser, diabetes,
friedman1, regression (regression; the last two in liftnn.datasets.practical); moons, spirals,
iris, wine, breast_cancer, digits (classification, see liftnn.datasets.classification).
"""

from liftnn.datasets import classification, extra, practical, synthetic  # noqa: F401  (register the builders)
from liftnn.datasets.base import Dataset, load, names, register

__all__ = ["Dataset", "load", "names", "register"]
