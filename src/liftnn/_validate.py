"""Input checks shared by every front door.  Each raises LiftnnError naming the problem."""

from __future__ import annotations

from typing import Any

import numpy as np

from liftnn.errors import LiftnnError


def as_2d_finite(name: str, a: Any, allow_empty: bool = False) -> np.ndarray:
    """Return `a` as a float64 2-D array, or raise if it is empty, ragged or not finite.

    A 1-D array is read as one feature per sample (a column).
    """
    try:
        arr = np.asarray(a, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise LiftnnError(f"{name} is not a numeric array: {exc}") from None
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise LiftnnError(f"{name} must be 2-D (samples, features); got shape {arr.shape}")
    if arr.shape[0] == 0 and not allow_empty:
        raise LiftnnError(f"{name} is empty (0 samples)")
    if arr.shape[1] == 0:
        raise LiftnnError(f"{name} has 0 features (shape {arr.shape})")
    bad = ~np.isfinite(arr)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        kind = "NaN" if np.isnan(arr[i, j]) else "Inf"
        raise LiftnnError(
            f"{name} contains {int(bad.sum())} non-finite value(s); first is {kind} at row {i}, "
            f"column {j}"
        )
    return arr


def check_pair(x_name: str, x: Any, y_name: str, y: Any) -> tuple[np.ndarray, np.ndarray]:
    """Validate inputs and targets together: both finite, 2-D, the same number of rows."""
    X = as_2d_finite(x_name, x)
    Y = as_2d_finite(y_name, y)
    if X.shape[0] != Y.shape[0]:
        raise LiftnnError(
            f"{x_name} has {X.shape[0]} samples but {y_name} has {Y.shape[0]}: they must match"
        )
    return X, Y


def check_choice(kind: str, value: str, choices: Any) -> str:
    """Raise if `value` is not one of `choices`, listing the valid names."""
    if value not in choices:
        raise LiftnnError(f"unknown {kind} {value!r}; choose one of: {', '.join(sorted(choices))}")
    return value


def check_positive(name: str, value: float, strict: bool = True) -> float:
    """Raise unless value is a finite number > 0 (or >= 0 with strict=False)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise LiftnnError(f"{name} must be a number; got {value!r}") from None
    if not np.isfinite(v) or (v <= 0 if strict else v < 0):
        raise LiftnnError(f"{name} must be {'> 0' if strict else '>= 0'}; got {value!r}")
    return v
