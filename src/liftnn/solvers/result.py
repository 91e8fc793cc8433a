"""The result every solver returns, with scipy.optimize's names.

Fields: x, fun, nit, nfev, njev, nhev, status, success, message, history, time_s; least-squares
solvers also `cost` (= 0.5 ||r||^2); network training adds params, train_mse, test_mse, method,
seed, init, and with validation data val_loss, n_val, val_mse (with weight_decay="auto" also
weight_decay and path).  docs/solvers.md lists them all.  `history` is a list with one dict per iteration: at least "iter", "loss",
"grad_norm", "step", "nfev", "njev", "nhev", "time".
"""

from __future__ import annotations

from scipy.optimize import OptimizeResult

CONVERGED = "converged"
MAX_ITER = "max_iter"
STALLED = "stalled"
DIVERGED = "diverged"
LINE_SEARCH_FAILED = "line_search_failed"
INTERRUPTED = "interrupted"

STATUSES = (CONVERGED, MAX_ITER, STALLED, DIVERGED, LINE_SEARCH_FAILED, INTERRUPTED)


class Result(OptimizeResult):
    """A dict with attribute access (scipy's OptimizeResult) plus a short summary()."""

    def summary(self) -> str:
        parts = [f"status={self.get('status')}", f"nit={self.get('nit')}"]
        for k in ("fun", "train_mse", "test_mse", "time_s"):
            if self.get(k) is not None:
                parts.append(f"{k}={self[k]:.4g}")
        return " ".join(parts) + (f" ({self['message']})" if self.get("message") else "")

    def history_array(self, key: str):
        """One history column as a NumPy array (NaN where an iteration lacks it)."""
        import numpy as np

        return np.array([h.get(key, np.nan) for h in self.get("history", [])], dtype=float)
