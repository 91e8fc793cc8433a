"""Data sets: `load(name, seed=..., **kw) -> Dataset`.

Names: sine, sin2, moeller, moeller2, linear3, gauss-bump, teacher, santafe, laser, diabetes.
"""

from liftnn.datasets import extra, synthetic  # noqa: F401  (register the builders)
from liftnn.datasets.base import Dataset, load, names, register

__all__ = ["Dataset", "load", "names", "register"]
