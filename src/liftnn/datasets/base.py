"""The Dataset container and the registry behind `liftnn.datasets.load`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from liftnn._validate import as_2d_finite, check_choice
from liftnn.errors import LiftnnError


def _test_part(name: str, arr, width: int) -> np.ndarray:
    """Test inputs / targets: may be empty; otherwise 2-D (or 1-D when width is 1) of that width."""
    a = np.asarray(arr, dtype=np.float64) if not isinstance(arr, np.ndarray) else arr
    if a.size == 0:
        return np.zeros((0, width))
    if a.ndim == 1 and width == 1:
        a = a.reshape(-1, 1)
    out = as_2d_finite(name, a)
    if out.shape[1] != width:
        raise LiftnnError(f"{name} has {out.shape[1]} columns but the training data have {width}")
    return out


@dataclass(frozen=True, repr=False)
class Dataset:
    """Training and test data, samples as rows.

    x_train: (m, d_in), y_train: (m, d_out), x_test: (m_test, d_in), y_test: (m_test, d_out);
    meta: a dict describing how the data were made (name, seed, noise, ...).  Bring your own
    data as Dataset(x_train, y_train, x_test, y_test, meta={"name": ...}); the test arrays may
    be empty.  print(dataset) shows a one-line summary (name, shapes, meta keys), not the arrays.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        xt = as_2d_finite("x_train", self.x_train)
        yt = as_2d_finite("y_train", self.y_train)
        if xt.shape[0] != yt.shape[0]:
            raise LiftnnError(f"x_train has {xt.shape[0]} samples but y_train has {yt.shape[0]}")
        xs = _test_part("x_test", self.x_test, xt.shape[1])
        ys = _test_part("y_test", self.y_test, yt.shape[1])
        if xs.shape[0] != ys.shape[0]:
            raise LiftnnError(f"x_test has {xs.shape[0]} samples but y_test has {ys.shape[0]}")
        for name, arr in (("x_train", xt), ("y_train", yt), ("x_test", xs), ("y_test", ys)):
            object.__setattr__(self, name, arr)

    @property
    def n(self) -> int:
        """Number of training samples."""
        return int(self.x_train.shape[0])

    @property
    def d_in(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def d_out(self) -> int:
        return int(self.y_train.shape[1])

    @property
    def name(self) -> str:
        return str(self.meta.get("name", "custom"))

    def __repr__(self) -> str:
        """Dataset('sin2': n=20 train, 200 test; x (20, 1), y (20, 1); meta: name, noise, seed)."""
        keys = ", ".join(sorted(map(str, self.meta))) or "none"
        return (f"Dataset({self.name!r}: n={self.n} train, {len(self.x_test)} test; x_train "
                f"{self.x_train.shape}, y_train {self.y_train.shape}, x_test "
                f"{self.x_test.shape}, y_test {self.y_test.shape}; meta: {keys})")

    __str__ = __repr__

    @property
    def scaling(self):
        """The standardisation the arrays were made with (a liftnn.datasets.scaling.Standardizer
        built from meta), or None when the data are in their own units."""
        from liftnn.datasets.scaling import Standardizer

        return Standardizer.from_meta(self.meta)


_REGISTRY: dict[str, Callable[..., Dataset]] = {}


def register(name: str):
    """Decorator: register a data-set builder under `name` (builder(seed=..., **kw) -> Dataset)."""

    def deco(fn):
        _REGISTRY[name] = fn
        return fn

    return deco


def names() -> list[str]:
    """The registered data-set names."""
    return sorted(_REGISTRY)


def load(name: str, seed: int = 0, **kw) -> Dataset:
    """Build data set `name`, deterministically for `seed`.  Unknown names raise LiftnnError."""
    check_choice("data set", name, _REGISTRY)
    try:
        return _REGISTRY[name](seed=seed, **kw)
    except TypeError as exc:
        if "unexpected keyword" in str(exc):
            raise LiftnnError(f"data set {name!r}: {exc}") from None
        raise
