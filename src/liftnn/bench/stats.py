"""Statistics of a bench directory's rows: per (cell, method) aggregates, per-method totals,
work to reach the reference method's loss, scaling slopes, and the number format of the tables.

Pure functions of the rows of results.csv (as read by liftnn.bench.report.load_rows) and the
records of histories.jsonl; see docs/benchmarks.md for the columns.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np

from liftnn.bench.store import to_float


# --- statistics --------------------------------------------------------------------------------
def finite(xs) -> np.ndarray:
    a = np.asarray([x for x in xs if x is not None], dtype=float)
    return a[np.isfinite(a)]


def _summary(reduce):
    """xs -> reduce over the finite values of xs, NaN when there are none."""
    def summarise(xs) -> float:
        a = finite(xs)
        return float(reduce(a)) if a.size else math.nan
    return summarise


_median, _mean, _min, _max = (_summary(f) for f in (np.median, np.mean, np.min, np.max))


def order_of(rows, meta) -> tuple[list[str], list[str]]:
    """Cells in suite order, methods in suite order (then any others as they appear)."""
    cells = [c["label"] for c in meta.get("config", {}).get("cells", [])]
    methods = list(meta.get("methods", {}))
    for r in rows:
        if r["cell"] not in cells:
            cells.append(r["cell"])
        if r["method"] not in methods:
            methods.append(r["method"])
    present_c = {r["cell"] for r in rows}
    present_m = {r["method"] for r in rows}
    return [c for c in cells if c in present_c], [m for m in methods if m in present_m]


def reference_method(meta, methods) -> str | None:
    ref = meta.get("reference")
    if ref in methods:
        return ref
    return "adam" if "adam" in methods and len(methods) > 1 else None


def aggregate(rows, meta) -> tuple[list[dict], list[str], list[str], str | None]:
    """One stats dict per (cell, method) present, in suite order."""
    cells, methods = order_of(rows, meta)
    ref = reference_method(meta, methods)
    by = OrderedDict()
    for r in rows:
        by.setdefault((r["cell"], r["method"]), []).append(r)
    stats = []
    for c in cells:
        ref_time = _median([r["time_s"] for r in by.get((c, ref), []) if r["status"] != "error"]) \
            if ref else math.nan
        for m in methods:
            rs = by.get((c, m))
            if not rs:
                continue
            ok = [r for r in rs if r["status"] != "error"]
            s = {
                "cell": c, "method": m, "runs": len(rs), "errors": len(rs) - len(ok),
                "converged": sum(r["success"] for r in rs),
                "avg_mse": _mean(r["train_mse"] for r in ok),
                "best_mse": _min(r["train_mse"] for r in ok),
                "median_mse": _median(r["train_mse"] for r in ok),
                "avg_test": _mean(r["test_mse"] for r in ok),
                "best_test": _min(r["test_mse"] for r in ok),
                "median_time": _median(r["time_s"] for r in ok),
                "median_compile": _median(r.get("compile_s", math.nan) for r in ok),
                "median_loop": _median(r.get("loop_s", math.nan) for r in ok),
                "median_iter": _median(r["iterations"] for r in ok),
                "time_per_iter": _median(r.get("time_per_iter") for r in ok),
                "iter_time": _median(r.get("iter_time_s", math.nan) for r in ok),
                "init": ", ".join(sorted({r["init"] for r in rs})),
                "n": _median(r["n"] for r in rs),
            }
            s["time_ratio"] = s["median_time"] / ref_time if ref and ref_time > 0 else math.nan
            if "test_accuracy" in rs[0]:  # classification cells (loss cross_entropy)
                s["avg_loss"] = _mean(r["loss"] for r in ok)
                s["avg_train_acc"] = _mean(r["train_accuracy"] for r in ok)
                s["avg_test_acc"] = _mean(r["test_accuracy"] for r in ok)
                s["best_test_acc"] = _max(r["test_accuracy"] for r in ok)
            if "freerun_mse" in rs[0]:
                s["freerun_median"] = _median(r["freerun_mse"] for r in ok)
                s["freerun_best"] = _min(r["freerun_mse"] for r in ok)
            if "peak_rss_mb" in rs[0]:
                s["peak_rss_mb"] = _median(r["peak_rss_mb"] for r in ok)
                s["train_rss_mb"] = _median(r["peak_rss_mb"] - r["base_rss_mb"] for r in ok)
            stats.append(s)
    return stats, cells, methods, ref


def _reach_time(history, target: float) -> tuple[float, float, str]:
    """(time of the first history entry with loss <= target, time of the last entry, the clock:
    "time" or "iter"), both on the run's own history clock; NaN when never reached.  Histories
    without a clock (a fully compiled loop such as lifted-gn's records no per-iteration time)
    use the iteration count instead: the caller then scales by the run's time per iteration."""
    entries = history or []
    clock = "time" if any(math.isfinite(to_float(e.get("time", math.nan))) for e in entries) \
        else "iter"
    t_reach, t_last = math.nan, math.nan
    for e in entries:
        f, t = to_float(e.get("loss", math.nan)), to_float(e.get(clock, math.nan))
        if math.isfinite(t):
            t_last = t
            if math.isnan(t_reach) and math.isfinite(f) and f <= target:
                t_reach = t
    return t_reach, t_last, clock


def _reached_at(r, history, target: float) -> float:
    """Time per run at which run row `r` first reached `target` (work_stats); NaN if never."""
    if not math.isfinite(target):
        return math.nan
    t, t_last, clock = _reach_time(history, target * (1.0 + 1e-9))
    if not math.isfinite(t):
        return math.nan
    time_s = to_float(r["time_s"])
    if clock == "iter":
        # iteration clock, an estimate: the run's time scaled by the share of its iterations
        # done when it reached the target (compilation spread over the iterations alike)
        return time_s * t / t_last if t_last > 0 else time_s
    bs = to_float(r.get("batch_size", 1.0))
    bs = bs if math.isfinite(bs) and bs >= 1 else 1.0
    return time_s - max(0.0, t_last - t) / bs


def _cell_fwd_bwd(meta, label: str) -> float:
    """One full-batch forward + backward pass on a cell, measured now (for results whose cell
    records predate the measure); NaN when the cell cannot be rebuilt here."""
    try:
        from liftnn import datasets
        from liftnn.bench.measure import fwd_bwd_seconds
        from liftnn.models import MLP

        c = next(c for c in meta.get("config", {}).get("cells", []) if c["label"] == label)
        model = MLP(c["arch"], activation=c["activation"], bias=c.get("bias", True),
                    output_activation=c.get("output_activation", "identity"))
        data = datasets.load(c["dataset"], seed=int(meta.get("config", {}).get("data_seed", 0)),
                             **c.get("data_kw", {}))
        return fwd_bwd_seconds(model, data, c.get("loss", "mse"))
    except Exception:  # noqa: BLE001 - optional measure
        return math.nan


def work_stats(rows, runs, cellrecs, cells, methods, ref, meta=None) -> list[dict]:
    """Work to reach the reference method's final loss, per (cell, method).

    For each seed the target is the final training objective of the reference run from the same
    initial weights (the `loss` column: the objective of the network it returned).  A run's time
    to reach it is its time per run (time_s: compilation included, a batch's wall time divided
    by its runs) minus the part of its history after the first entry at or below the target
    (history clocks are batch clocks, so that part is divided by the runs in the batch too).
    A history with no clock (lifted-gn's compiled loop) is read by iteration instead:
    time_s * (reaching iteration / last iteration), an estimate.
    Work = that time / one full-batch forward + backward pass on the cell's data (cell record
    `fwd_bwd_s`, else measured while the report is built).  Histories are thinned to at most
    400 entries, so long first-order runs may be found a little late (never early).
    """
    if not ref:
        return []
    by = {(r["cell"], r["method"], r["seed"]): r for r in rows if r["status"] != "error"}
    out = []
    for c in cells:
        fb = to_float(cellrecs.get(c, {}).get("fwd_bwd_s", math.nan))
        if not math.isfinite(fb) and meta is not None:
            fb = _cell_fwd_bwd(meta, c)
        for m in methods:
            reached, k = [], 0
            for (cc, mm, seed), r in by.items():
                if cc != c or mm != m or (c, ref, seed) not in by:
                    continue
                k += 1
                target = to_float(by[(c, ref, seed)].get("loss", math.nan))
                if m == ref:  # it ends at its own final loss
                    reached.append(to_float(r["time_s"]))
                    continue
                t = _reached_at(r, runs.get((c, m, seed), {}).get("history"), target)
                if math.isfinite(t):
                    reached.append(t)
            if k == 0:
                continue
            tm = _median(reached) if reached else math.nan
            out.append({"cell": c, "method": m, "reached": f"{len(reached)}/{k}",
                        "median_time": tm, "fwd_bwd_s": fb,
                        "work": tm / fb if math.isfinite(fb) and fb > 0 else math.nan})
    return out


def method_totals(stats, methods, cells, headline_test: bool = False) -> list[dict]:
    """Per method over all cells: "15+18+14 = 47/60" converged and the median-time range; for
    classification cells also the mean train loss and test accuracy, and with `headline_test`
    (a suite judged on test MSE) the mean train and test MSE (means over cells of the per-cell
    means)."""
    out = []
    for m in methods:
        ss = [s for s in stats if s["method"] == m]
        if not ss:
            continue
        ks = "+".join(str(s["converged"]) for s in ss)
        k, n = sum(s["converged"] for s in ss), sum(s["runs"] for s in ss)
        times = finite([s["median_time"] for s in ss])
        extra = {}
        if any("avg_test_acc" in s for s in ss):  # mean over the cells of the per-cell means
            extra = {"train_loss": _mean(s.get("avg_loss") for s in ss),
                     "test_acc": _mean(s.get("avg_test_acc") for s in ss)}
        elif headline_test:
            extra = {"train_mse": _mean(s["avg_mse"] for s in ss),
                     "test_mse": _mean(s["avg_test"] for s in ss)}
        out.append({**extra,
            "method": m, "converged": f"{ks} = {k}/{n}" if len(ss) > 1 else f"{k}/{n}",
            "errors": sum(s["errors"] for s in ss),
            "time": (f"{fmt_num(times.min())} - {fmt_num(times.max())}" if times.size > 1
                     else fmt_num(times[0]) if times.size else "-"),
            "ratio": fmt_num(_median([s["time_ratio"] for s in ss])) + "x"
            if np.isfinite(_median([s["time_ratio"] for s in ss])) else "-",
        })
    return out


def fit_slope(x, y) -> float:
    """Least-squares slope of log y against log x (NaN with fewer than 2 distinct points)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    if len(np.unique(x[ok])) < 2:
        return math.nan
    return float(np.polyfit(np.log(x[ok]), np.log(y[ok]), 1)[0])


def _steady(r) -> float:
    """Steady-state seconds per iteration, else time_s / iterations (compilation included)."""
    v = r.get("iter_time_s", math.nan)
    return v if math.isfinite(v) and v > 0 else r.get("time_per_iter", math.nan)


def scaling_series(rows, methods) -> list[dict]:
    """Per group and method: medians of time/iteration and memory against m (or parameters)."""
    groups = OrderedDict()
    for r in rows:
        if r["status"] != "error":
            groups.setdefault(r.get("group", "") or "all", []).append(r)
    out = []
    for g, rs in groups.items():
        xkey = "n" if len({r["n"] for r in rs}) > 1 else "n_params"
        if len({r[xkey] for r in rs}) < 2:
            continue
        for m in methods:
            mr = [r for r in rs if r["method"] == m]
            xs = sorted({r[xkey] for r in mr})
            if len(xs) < 2:
                continue
            t = [_median(_steady(r) for r in mr if r[xkey] == x) for x in xs]
            tt = [_median(r["time_s"] for r in mr if r[xkey] == x) for x in xs]
            mem = [_median(r.get("peak_rss_mb", math.nan) - r.get("base_rss_mb", math.nan)
                           for r in mr if r[xkey] == x) for x in xs]
            out.append({"group": g, "method": m, "x": xkey, "xs": xs, "time_per_iter": t,
                        "time_s": tt, "mem": mem, "slope_iter": fit_slope(xs, t),
                        "slope_time": fit_slope(xs, tt), "slope_mem": fit_slope(xs, mem)})
    return out


# --- formatting --------------------------------------------------------------------------------
def fmt_num(v, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    v = float(v)
    if v == 0:
        return "0"
    if abs(v) >= 1e4 or abs(v) < 1e-3:
        return f"{v:.{digits - 1}e}"
    return f"{v:.{digits}g}"


def success_word(meta) -> str:
    """"reliable" for an accuracy threshold (success_above), "converged" when the suite has a
    success threshold, else "finished" (without error)."""
    if math.isfinite(to_float(meta.get("success_above", -math.inf))):
        return "reliable"
    return "converged" if math.isfinite(to_float(meta.get("success_below", math.inf))) else "finished"

