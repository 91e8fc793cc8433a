"""Measurements of a finished bench run beyond its Result: a thinned history, the steady time
per iteration, per-layer gradient norms, the free-run error (NARX suites), the fitted curve of 1-D
problems, peak memory, and the cost of one forward + backward pass (the report's work unit).

Functions of plain data (model, params, data set, the unit's extras); they run in the worker.
"""

from __future__ import annotations

import json
import math
import sys
import time

import numpy as np

from liftnn.bench.store import jsonable, to_float
from liftnn.errors import LiftnnError

HISTORY_KEYS = ("iter", "loss", "train_mse", "grad_norm", "time", "h_inf", "beta")
MAX_HISTORY = 400


def maxrss_mb() -> float:
    """This process's resident-set peak in MB (resource.getrusage; NaN where unavailable)."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not on Windows
        return float("nan")
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / 2**20 if sys.platform == "darwin" else r / 2**10



def thin_history(history) -> list[dict]:
    """At most MAX_HISTORY entries (the first 50, then evenly spaced, always the last)."""
    h = list(history or [])
    if len(h) > MAX_HISTORY:
        idx = np.unique(np.concatenate([np.arange(50), np.linspace(50, len(h) - 1,
                                                                    MAX_HISTORY - 50).astype(int)]))
        h = [h[i] for i in idx]
    out = []
    for e in h:
        if isinstance(e, dict):
            out.append({k: jsonable(e[k]) for k in HISTORY_KEYS if k in e})
    return out


def steady_iter_time(history) -> float:
    """Seconds per iteration after the first one (compilation excluded), from a history.

    (time of the last entry - time of entry 1) / (iterations between them), counting
    iterations by the cumulative "njev" (Jacobian / gradient evaluations: Gauss-Newton
    iterations for alm, epochs for first-order methods) where every entry has it, else "iter".
    NaN with fewer than three timed entries.
    """
    h = [e for e in (history or []) if isinstance(e, dict) and math.isfinite(to_float(e.get("time")))]
    if len(h) < 3:
        return math.nan
    key = "njev" if all("njev" in e for e in h) else "iter"
    dk = to_float(h[-1].get(key)) - to_float(h[1].get(key))
    dt = to_float(h[-1]["time"]) - to_float(h[1]["time"])
    return dt / dk if dk > 0 and dt >= 0 else math.nan


def _grad_norms(model, params, data, cell) -> list[float]:
    """Per-layer ||dC/d(W_j, b_j)|| of the training loss at `params` (vanishing gradients)."""
    import jax

    from liftnn.problem import TrainingProblem

    prob = TrainingProblem(model, data.x_train, data.y_train, loss=cell.loss)
    grads = jax.grad(prob.data_loss)(params)
    out = []
    for gW, gb in grads:
        s = float((gW**2).sum()) + (float((gb**2).sum()) if gb is not None else 0.0)
        out.append(math.sqrt(s))
    return out



def one_line(exc: BaseException) -> str:
    """An exception as one line of at most 400 characters (for rows and records)."""
    msg = f"{type(exc).__name__}: {exc}".replace("\n", " ").strip()
    return msg[:400]




def fwd_bwd_seconds(model, data, loss: str = "mse", reps: int = 5, calls: int = 20) -> float:
    """Seconds of one full-batch forward + backward pass (jitted value_and_grad of the loss at
    model.init(0) on all training samples; compiled and warmed first, median of `reps` blocks of
    `calls` calls): the unit of the bench's work measure."""
    import jax

    from liftnn.models.losses import get_loss

    lossf = get_loss(loss)
    X, Y = jax.numpy.asarray(data.x_train), jax.numpy.asarray(data.y_train)
    vg = jax.jit(jax.value_and_grad(lambda p: lossf(model.apply(p, X), Y)))
    p = model.init(0)
    jax.block_until_ready(vg(p))
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        for _ in range(calls):
            out = vg(p)
        jax.block_until_ready(out)
        times.append((time.perf_counter() - t0) / calls)
    return float(np.median(times))


def cell_record(unit, data, model=None) -> dict | None:
    """Data needed to redraw fit / free-run figures without rerunning (1-D or NARX cells), and
    the time of one full-batch forward + backward pass (the work unit of the report)."""
    rec = {"type": "cell", "cell": unit.cell.label, "dataset": unit.cell.dataset}
    if model is not None:
        try:
            rec["fwd_bwd_s"] = fwd_bwd_seconds(model, data, unit.cell.loss)
        except Exception as exc:  # noqa: BLE001 - the measure is optional; say why it is missing
            rec["fwd_bwd_error"] = one_line(exc)
    if data.d_in == 1 and data.d_out == 1 and data.n <= 5000:
        rec.update(x_train=data.x_train[:, 0], y_train=data.y_train[:, 0],
                   x_test=data.x_test[:, 0], y_test=data.y_test[:, 0])
    if "freerun" in unit.extras:
        from liftnn.bench.freerun import narx_series

        try:
            series, cont, lags = narx_series(data.meta)
            steps = int(unit.extras["freerun"].get("steps", 100))
            rec.update(series_tail=series[-200:], truth=cont[:steps], lags=lags)
        except LiftnnError as exc:
            rec["note"] = str(exc)
    if len(rec) == 3:
        return None
    return jsonable(rec)



def measure_run(unit, model, data, seed, res, extra: dict, record: dict) -> None:
    """Suite-specific measurements of one finished run (free run, gradient norms, fits)."""
    params = res.get("params")
    record["history"] = thin_history(res.get("history"))
    extra["iter_time_s"] = steady_iter_time(res.get("history"))
    if "train_mse" not in res or res.get("train_mse") is None:
        from liftnn.problem import TrainingProblem

        prob = TrainingProblem(model, data.x_train, data.y_train)
        res["train_mse"] = prob.mse(params)
        res["test_mse"] = prob.mse(params, data.x_test, data.y_test) if len(data.x_test) else math.nan
    if "freerun" in unit.extras:
        from liftnn.bench.freerun import free_run_mse

        try:
            mse, pred, _ = free_run_mse(model, params, data, int(unit.extras["freerun"].get("steps", 100)))
            extra["freerun_mse"] = mse
            record["freerun"] = pred
        except Exception as exc:  # noqa: BLE001 - the run itself finished; say why no free run
            extra["freerun_mse"] = math.nan
            record["freerun_error"] = one_line(exc)
    if "grad_norms" in unit.extras:
        try:
            extra["grad_norms_init"] = json.dumps(jsonable(_grad_norms(model, model.init(int(seed)),
                                                                       data, unit.cell), 4))
        except Exception as exc:  # noqa: BLE001
            extra["grad_norms_init"] = ""
            record["grad_norms_error"] = one_line(exc)
    if data.d_in == 1 and data.d_out == 1 and params is not None:
        try:
            xs = data.x_test if len(data.x_test) else data.x_train
            order = np.argsort(xs[:, 0])
            xs = xs[order]
            record["fit"] = {"x": xs[:, 0], "y": np.asarray(model.apply(params, xs))[:, 0]}
        except Exception as exc:  # noqa: BLE001
            record["fit_error"] = one_line(exc)


