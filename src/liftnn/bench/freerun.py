"""Free-run (closed-loop) prediction with a NARX network: the Santa Fe scoring protocol.

A NARX model predicts the next value of a series from its last `lags` values,
y_hat(t) = f(y(t - lags), ..., y(t - 1)).  In free run the network is fed its own predictions:
starting from the last `lags` points of the (normalised) training series, each prediction is
appended to the window and the oldest value dropped, for `steps` steps (seed 000, Santa Fe
experiment; docs/benchmarks.md: 100 steps of the continuation).  The free-run MSE is measured on the
normalised scale (training mean and std), as the thesis reports it.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from liftnn.errors import LiftnnError

_SERIES_KEYS = ("series", "train_series", "series_train", "train", "normalised_series",
                "normalized_series", "history")
_CONT_KEYS = ("continuation", "test_series", "series_test", "future", "normalised_continuation",
              "normalized_continuation", "target_series")


def _find(meta: dict, keys: tuple[str, ...], what: str) -> np.ndarray:
    for k in keys:
        if k in meta and meta[k] is not None:
            return np.asarray(meta[k], dtype=float).reshape(-1)
    raise LiftnnError(f"the data set's meta has no {what} (looked for: {', '.join(keys)}); "
                      f"free-run prediction needs a NARX data set such as 'santafe' or 'laser'")


def narx_series(meta: dict) -> tuple[np.ndarray, np.ndarray, int]:
    """(normalised training series, normalised continuation, lags) from a NARX data set's meta."""
    series = _find(meta, _SERIES_KEYS, "normalised training series")
    cont = _find(meta, _CONT_KEYS, "normalised continuation")
    lags = int(meta.get("lags", 0))
    if lags < 1 or lags > len(series):
        raise LiftnnError(f"NARX meta: lags = {lags} does not fit a series of {len(series)} points")
    return series, cont, lags


def window_order(x_train: np.ndarray, series: np.ndarray, lags: int) -> str:
    """Whether the data set's input rows hold the window oldest value first or newest first.

    Decided by matching the first training row against every window of the series; raises when
    neither order matches (the meta and the pairs disagree).
    """
    x0 = np.asarray(x_train[0], dtype=float)
    if x0.shape[0] != lags:
        raise LiftnnError(f"NARX inputs have {x0.shape[0]} columns but lags = {lags}")
    wins = np.lib.stride_tricks.sliding_window_view(series, lags)
    if np.any(np.all(np.isclose(wins, x0, atol=1e-9), axis=1)):
        return "oldest_first"
    if np.any(np.all(np.isclose(wins, x0[::-1], atol=1e-9), axis=1)):
        return "newest_first"
    raise LiftnnError("NARX inputs do not match any window of the training series in meta")


@functools.lru_cache(maxsize=32)
def _runner(model, steps: int, order: str):
    def run(params, window):
        def step(win, _):
            y = model.apply(params, win[None, :])[0, 0]
            if order == "oldest_first":
                win = jnp.concatenate([win[1:], y[None]])
            else:
                win = jnp.concatenate([y[None], win[:-1]])
            return win, y

        _, ys = jax.lax.scan(step, window, None, length=steps)
        return ys

    return jax.jit(run)


def free_run(model, params, series: np.ndarray, lags: int, steps: int,
             order: str = "oldest_first") -> np.ndarray:
    """Closed-loop prediction of `steps` values after `series`, shape (steps,).

    The start window is series[-lags:] (in the network's input order); every later input window
    contains the network's own predictions.
    """
    if model.d_in != lags or model.d_out != 1:
        raise LiftnnError(f"free run needs a {lags}-input, 1-output network; got {model.arch}")
    win = np.asarray(series[-lags:], dtype=float)
    if order == "newest_first":
        win = win[::-1]
    ys = _runner(model, int(steps), order)(params, jnp.asarray(win))
    return np.asarray(ys, dtype=float)


def free_run_mse(model, params, dataset, steps: int = 100) -> tuple[float, np.ndarray, np.ndarray]:
    """Free-run `steps` predictions after the training series; returns (MSE, prediction, truth).

    Both on the normalised scale; the truth is the first `steps` points of the continuation.
    """
    series, cont, lags = narx_series(dataset.meta)
    if len(cont) < steps:
        raise LiftnnError(f"the continuation has {len(cont)} points; free run asked for {steps}")
    order = window_order(dataset.x_train, series, lags)
    pred = free_run(model, params, series, lags, steps, order)
    truth = cont[:steps]
    mse = float(np.mean((pred - truth) ** 2)) if np.all(np.isfinite(pred)) else float("inf")
    return mse, pred, truth
