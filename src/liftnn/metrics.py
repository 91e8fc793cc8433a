"""Fit measures in the user's units: MSE and R² per target, accuracy for class labels.

Y, P: (m, d_out) targets and predictions (1-D is one target).  R² = 1 - SS_res / SS_tot per
column, with SS_tot about that column's own mean (scikit-learn's r2_score); a constant column
gives nan.
"""

from __future__ import annotations

import numpy as np

from liftnn.errors import LiftnnError


def _pair(Y, P) -> tuple[np.ndarray, np.ndarray]:
    Y = np.asarray(Y, np.float64)
    P = np.asarray(P, np.float64)
    Y = Y[:, None] if Y.ndim == 1 else Y
    P = P[:, None] if P.ndim == 1 else P
    if Y.shape != P.shape:
        raise LiftnnError(f"targets have shape {Y.shape} but predictions {P.shape}")
    return Y, P


def regression_metrics(Y, P) -> dict:
    """{"mse": overall MSE, "mse_per_target": (d_out,), "r2": (d_out,)} as floats / lists;
    an empty Y gives nan everywhere."""
    Y, P = _pair(Y, P)
    if Y.shape[0] == 0:
        nan = [float("nan")] * Y.shape[1]
        return {"mse": float("nan"), "mse_per_target": nan, "r2": nan}
    err = ((Y - P) ** 2).mean(0)
    ss_tot = ((Y - Y.mean(0)) ** 2).mean(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = np.where(ss_tot > 0, 1.0 - err / np.where(ss_tot > 0, ss_tot, 1.0), np.nan)
    return {"mse": float(err.mean()), "mse_per_target": [float(e) for e in err],
            "r2": [float(r) for r in r2]}


def accuracy(labels, predicted) -> float:
    """Fraction of equal entries of two (m,) label arrays (nan when empty)."""
    a, b = np.asarray(labels).ravel(), np.asarray(predicted).ravel()
    if a.shape != b.shape:
        raise LiftnnError(f"{a.size} labels but {b.size} predictions")
    return float("nan") if a.size == 0 else float(np.mean(a == b))
