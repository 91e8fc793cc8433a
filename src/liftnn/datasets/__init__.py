"""Data sets: `load(name, seed=..., **kw) -> Dataset`.

Names: sine, sin2, moeller, linear3, gauss-bump, teacher, santafe, laser, diabetes.
"""

from liftnn.datasets import synthetic  # noqa: F401  (registers)
from liftnn.datasets.base import Dataset, load, names, register

try:  # the remaining builders live in their own modules
    from liftnn.datasets import extra  # noqa: F401
except ImportError:  # pragma: no cover - while being written
    pass

__all__ = ["Dataset", "load", "names", "register"]
