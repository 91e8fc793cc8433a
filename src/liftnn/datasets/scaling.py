"""Standardisation of inputs and targets with training statistics, stored with a saved model.

A `Standardizer` holds the means and standard deviations of the features (d_in,) and of the
targets (d_out,), and the column names.  A network trained on standardised data maps
z_x = (x - x_mean) / x_std to z_y; predictions in the user's units are y = z_y * y_std + y_mean.
A constant column (std 0) keeps std 1, so it is only centred.  `to_dict` / `from_dict` give the
plain-JSON form kept in a saved model's PATH.json ("scaling", liftnn.models.io):

    {"x_mean": [...], "x_std": [...], "y_mean": [...], "y_std": [...],
     "features": ["a", "b", ...], "targets": ["y", ...]}

Either half may be absent from the dict (None here): then that side is used as is (e.g. a
classifier's labels, or `--no-scale`).  Names may be absent too (shipped data sets without them
get x0, x1, ... / y0, ...).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from liftnn.errors import LiftnnError


def _stats(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean, std = a.mean(0), a.std(0)
    return mean, np.where(std > 0, std, 1.0)


def _vector(name: str, v, width: int | None) -> np.ndarray:
    try:
        a = np.asarray(v, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise LiftnnError(f"scaling {name!r} must be a list of numbers; got {v!r}") from None
    if width is not None and a.shape != (width,):
        raise LiftnnError(f"scaling {name!r} has {a.size} entries; expected {width}")
    if not np.all(np.isfinite(a)):
        raise LiftnnError(f"scaling {name!r} contains NaN or Inf")
    return a


@dataclass(frozen=True)
class Standardizer:
    """Training statistics: x_mean, x_std (d_in,) and y_mean, y_std (d_out,), each pair or None.

    features: d_in names, targets: d_out names (or None).
    """

    x_mean: np.ndarray | None = None
    x_std: np.ndarray | None = None
    y_mean: np.ndarray | None = None
    y_std: np.ndarray | None = None
    features: tuple[str, ...] | None = None
    targets: tuple[str, ...] | None = None

    def __post_init__(self):
        for a, b in (("x_mean", "x_std"), ("y_mean", "y_std")):
            m, s = getattr(self, a), getattr(self, b)
            if (m is None) != (s is None):
                raise LiftnnError(f"scaling needs both {a} and {b}, or neither")
            if m is not None:
                m = _vector(a, m, None)
                s = _vector(b, s, m.size)
                if np.any(s <= 0):
                    raise LiftnnError(f"scaling {b!r} must be > 0")
                object.__setattr__(self, a, m)
                object.__setattr__(self, b, s)
        for key, width in (("features", self.d_in), ("targets", self.d_out)):
            names = getattr(self, key)
            if names is None:
                continue
            names = tuple(names)
            if not all(isinstance(n, str) for n in names):
                raise LiftnnError(f"scaling {key!r} must be a list of names; got {names!r}")
            if width is not None and len(names) != width:
                raise LiftnnError(f"scaling {key!r} has {len(names)} names; the statistics have "
                                  f"{width} columns")
            object.__setattr__(self, key, names)

    @classmethod
    def fit(cls, X=None, Y=None, features=None, targets=None) -> Standardizer:
        """Statistics of the training rows X (m, d_in) and Y (m, d_out); either may be None."""
        xm = xs = ym = ys = None
        if X is not None:
            xm, xs = _stats(np.asarray(X, np.float64))
        if Y is not None:
            ym, ys = _stats(np.asarray(Y, np.float64))
        return cls(xm, xs, ym, ys, features, targets)

    @property
    def d_in(self) -> int | None:
        return None if self.x_mean is None else int(self.x_mean.size)

    @property
    def d_out(self) -> int | None:
        return None if self.y_mean is None else int(self.y_mean.size)

    @property
    def identity(self) -> bool:
        """True when neither side is scaled (only names, if any, are kept)."""
        return self.x_mean is None and self.y_mean is None

    def transform_x(self, X) -> np.ndarray:
        """User-unit inputs (m, d_in) -> the network's inputs (m, d_in)."""
        X = np.asarray(X, np.float64)
        return X if self.x_mean is None else (X - self.x_mean) / self.x_std

    def transform_y(self, Y) -> np.ndarray:
        """User-unit targets (m, d_out) -> the network's targets (m, d_out)."""
        Y = np.asarray(Y, np.float64)
        return Y if self.y_mean is None else (Y - self.y_mean) / self.y_std

    def inverse_y(self, Z) -> np.ndarray:
        """The network's outputs (m, d_out) -> predictions in the user's units (m, d_out)."""
        Z = np.asarray(Z, np.float64)
        return Z if self.y_mean is None else Z * self.y_std + self.y_mean

    def inverse_std(self, S) -> np.ndarray:
        """A predictive standard deviation (m, d_out) of the network -> the user's units."""
        S = np.asarray(S, np.float64)
        return S if self.y_std is None else S * self.y_std

    def to_dict(self) -> dict:
        """Plain JSON (lists, strings); the halves and names that are None are left out."""
        out = {}
        for key in ("x_mean", "x_std", "y_mean", "y_std"):
            v = getattr(self, key)
            if v is not None:
                out[key] = [float(t) for t in v]
        for key in ("features", "targets"):
            v = getattr(self, key)
            if v is not None:
                out[key] = list(v)
        return out

    @classmethod
    def from_dict(cls, d) -> Standardizer:
        """The inverse of `to_dict`; unknown keys or bad values raise LiftnnError naming them."""
        if not isinstance(d, dict):
            raise LiftnnError(f"scaling must be a JSON object; got {type(d).__name__}")
        keys = {"x_mean", "x_std", "y_mean", "y_std", "features", "targets"}
        unknown = sorted(set(d) - keys)
        if unknown:
            raise LiftnnError(f"scaling has unknown key(s) {', '.join(map(repr, unknown))}")
        return cls(**{k: d.get(k) for k in keys})

    @classmethod
    def from_meta(cls, meta: dict) -> Standardizer | None:
        """The standardisation a data set records in its meta: a Standardizer under "scaling"
        (file data), x_mean / x_std, y_mean / y_std, feature_names (friedman1, regression,
        diabetes, the classification sets' features) or a NARX series' mean / std and lags
        (santafe, laser); None when it records none."""
        if isinstance(meta.get("scaling"), Standardizer):
            return meta["scaling"]
        if {"lags", "mean", "std"} <= set(meta):  # a NARX series (santafe, laser): one mean/std
            lags, mean, std = int(meta["lags"]), float(meta["mean"]), float(meta["std"])
            return cls([mean] * lags, [std] * lags, [mean], [std])
        has_x = "x_mean" in meta and "x_std" in meta
        has_y = "y_mean" in meta and "y_std" in meta
        if not (has_x or has_y):
            return None
        names = meta.get("feature_names")
        return cls(meta["x_mean"] if has_x else None, meta["x_std"] if has_x else None,
                   meta["y_mean"] if has_y else None, meta["y_std"] if has_y else None,
                   features=names if has_x and names is not None else None)
