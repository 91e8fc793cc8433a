"""Reports from a bench directory: thesis-style tables and figures, rebuilt from the files alone.

Input: DIR/results.csv (one row per run), DIR/histories.jsonl (histories, fitted curves, free-run
predictions, cell data) and DIR/suite.json (configuration, skipped methods, notices).
Output: DIR/report.md, DIR/report.html (self-contained apart from the PNGs next to it) and PNGs:

- per cell and method: runs, converged "k/N" (metric below the suite's threshold), average and best
  train MSE (and test MSE, free-run MSE where measured), median time per run (batch wall time /
  runs, compilation included), median iterations, and the median-time ratio to the reference
  method (e.g. alm/adam);
- convergence histories (loss against wall time), train-MSE histograms per method on a log axis
  (good and bad minima show as two modes), best and worst fits of 1-D problems, free-run
  predictions against the truth (Santa Fe), scaling plots (log-log, fitted slopes), per-layer
  gradient norms at the initial weights, and a Jacobian spy plot when liftnn.lifted.jacobian is
  available.
"""

from __future__ import annotations

import html
import json
import math
import re
from collections import OrderedDict
from pathlib import Path

import numpy as np

from liftnn.errors import LiftnnError

FLOAT_COLS = ("train_mse", "test_mse", "time_s", "iterations", "loss", "batch_time_s",
              "time_per_iter", "iter_time_s", "freerun_mse", "peak_rss_mb", "base_rss_mb", "n", "n_params",
              "outer_iterations", "nfev", "time_budget_s")
PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf"]


# --- reading -----------------------------------------------------------------------------------
def _f(v) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def load_rows(out: Path) -> list[dict]:
    from liftnn.bench.runner import read_rows

    path = out / "results.csv"
    if not path.exists():
        raise LiftnnError(f"{out} has no results.csv; run `liftnn bench SUITE --out {out}` first")
    rows = read_rows(path)
    for r in rows:
        for c in FLOAT_COLS:
            if c in r:
                r[c] = _f(r[c])
        r["seed"] = int(r["seed"])
        r["success"] = str(r.get("success", "")).lower() == "true"
    return rows


def load_records(out: Path) -> tuple[dict, dict]:
    """(runs {(cell, method, seed): record}, cells {cell: record}); the last record of a key wins."""
    runs, cells = {}, {}
    path = out / "histories.jsonl"
    if not path.exists():
        return runs, cells
    with open(path) as fh:
        for line in fh:
            try:
                rec = json.loads(line)
            except ValueError:
                continue  # a partial line from an interrupted write
            if rec.get("type") == "cell":
                cells[rec["cell"]] = rec
            elif rec.get("type") == "run":
                runs[(rec["cell"], rec["method"], int(rec["seed"]))] = rec
    return runs, cells


def load_meta(out: Path) -> dict:
    path = out / "suite.json"
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except ValueError as exc:
        raise LiftnnError(f"{path} is not valid JSON: {exc}") from None


# --- statistics --------------------------------------------------------------------------------
def _finite(xs) -> np.ndarray:
    a = np.asarray([x for x in xs if x is not None], dtype=float)
    return a[np.isfinite(a)]


def _median(xs) -> float:
    a = _finite(xs)
    return float(np.median(a)) if a.size else math.nan


def _mean(xs) -> float:
    a = _finite(xs)
    return float(np.mean(a)) if a.size else math.nan


def _min(xs) -> float:
    a = _finite(xs)
    return float(np.min(a)) if a.size else math.nan


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
                "median_iter": _median(r["iterations"] for r in ok),
                "time_per_iter": _median(r.get("time_per_iter") for r in ok),
                "iter_time": _median(r.get("iter_time_s", math.nan) for r in ok),
                "init": ", ".join(sorted({r["init"] for r in rs})),
                "n": _median(r["n"] for r in rs),
            }
            s["time_ratio"] = s["median_time"] / ref_time if ref and ref_time > 0 else math.nan
            if "freerun_mse" in rs[0]:
                s["freerun_median"] = _median(r["freerun_mse"] for r in ok)
                s["freerun_best"] = _min(r["freerun_mse"] for r in ok)
            if "peak_rss_mb" in rs[0]:
                s["peak_rss_mb"] = _median(r["peak_rss_mb"] for r in ok)
                s["train_rss_mb"] = _median(r["peak_rss_mb"] - r["base_rss_mb"] for r in ok)
            stats.append(s)
    return stats, cells, methods, ref


def _reach_time(history, target: float) -> tuple[float, float]:
    """(time of the first history entry with loss <= target, time of the last entry), both on
    the run's own history clock; NaN when never reached."""
    t_reach, t_last = math.nan, math.nan
    for e in history or []:
        f, t = _f(e.get("loss", math.nan)), _f(e.get("time", math.nan))
        if math.isfinite(t):
            t_last = t
            if math.isnan(t_reach) and math.isfinite(f) and f <= target:
                t_reach = t
    return t_reach, t_last


def _cell_fwd_bwd(meta, label: str) -> float:
    """One full-batch forward + backward pass on a cell, measured now (for results whose cell
    records predate the measure); NaN when the cell cannot be rebuilt here."""
    try:
        from liftnn import datasets
        from liftnn.bench.runner import fwd_bwd_seconds
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
    Work = that time / one full-batch forward + backward pass on the cell's data (cell record
    `fwd_bwd_s`, else measured while the report is built).  Histories are thinned to at most
    400 entries, so long first-order runs may be found a little late (never early).
    """
    if not ref:
        return []
    by = {(r["cell"], r["method"], r["seed"]): r for r in rows if r["status"] != "error"}
    out = []
    for c in cells:
        fb = _f(cellrecs.get(c, {}).get("fwd_bwd_s", math.nan))
        if not math.isfinite(fb) and meta is not None:
            fb = _cell_fwd_bwd(meta, c)
        for m in methods:
            reached, k = [], 0
            for (cc, mm, seed), r in by.items():
                if cc != c or mm != m or (c, ref, seed) not in by:
                    continue
                k += 1
                target = _f(by[(c, ref, seed)].get("loss", math.nan))
                if m == ref:  # it ends at its own final loss
                    reached.append(_f(r["time_s"]))
                    continue
                hist = runs.get((c, m, seed), {}).get("history")
                t, t_last = (_reach_time(hist, target * (1.0 + 1e-9)) if math.isfinite(target)
                             else (math.nan, math.nan))
                bs = _f(r.get("batch_size", 1.0))
                bs = bs if math.isfinite(bs) and bs >= 1 else 1.0
                if math.isfinite(t):
                    reached.append(_f(r["time_s"]) - max(0.0, t_last - t) / bs)
            if k == 0:
                continue
            tm = _median(reached) if reached else math.nan
            out.append({"cell": c, "method": m, "reached": f"{len(reached)}/{k}",
                        "median_time": tm, "fwd_bwd_s": fb,
                        "work": tm / fb if math.isfinite(fb) and fb > 0 else math.nan})
    return out


def method_totals(stats, methods, cells) -> list[dict]:
    """Per method over all cells: "15+18+14 = 47/60" converged and the median-time range."""
    out = []
    for m in methods:
        ss = [s for s in stats if s["method"] == m]
        if not ss:
            continue
        ks = "+".join(str(s["converged"]) for s in ss)
        k, n = sum(s["converged"] for s in ss), sum(s["runs"] for s in ss)
        times = _finite([s["median_time"] for s in ss])
        out.append({
            "method": m, "converged": f"{ks} = {k}/{n}" if len(ss) > 1 else f"{k}/{n}",
            "errors": sum(s["errors"] for s in ss),
            "time": (f"{_fmt_num(times.min())} - {_fmt_num(times.max())}" if times.size > 1
                     else _fmt_num(times[0]) if times.size else "-"),
            "ratio": _fmt_num(_median([s["time_ratio"] for s in ss])) + "x"
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
def _fmt_num(v, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    v = float(v)
    if v == 0:
        return "0"
    if abs(v) >= 1e4 or abs(v) < 1e-3:
        return f"{v:.{digits - 1}e}"
    return f"{v:.{digits}g}"


def success_word(meta) -> str:
    """"converged" when the suite has a success threshold, else "finished" (without error)."""
    return "converged" if math.isfinite(_f(meta.get("success_below", math.inf))) else "finished"


def cell_table(stats, ref, meta) -> tuple[list[str], list[list[str]]]:
    extra_fr = any("freerun_median" in s for s in stats)
    extra_mem = any("peak_rss_mb" in s for s in stats)
    show_test = any(np.isfinite(s["avg_test"]) for s in stats)
    head = ["cell", "method", success_word(meta), "avg MSE", "best MSE"]
    if show_test:
        head += ["avg test MSE", "best test MSE"]
    if extra_fr:
        head += ["free-run MSE (median)", "free-run MSE (best)"]
    head += ["median time (s)", "median iterations", "time / iteration (s)",
             "s / iteration after the first"]
    if ref:
        head.append(f"time / {ref}")
    if extra_mem:
        head += ["peak RSS (MB)", "training RSS (MB)"]
    body = []
    for s in stats:
        conv = f"{s['converged']}/{s['runs']}" + (f" ({s['errors']} errors)" if s["errors"] else "")
        row = [s["cell"], s["method"], conv, _fmt_num(s["avg_mse"]), _fmt_num(s["best_mse"])]
        if show_test:
            row += [_fmt_num(s["avg_test"]), _fmt_num(s["best_test"])]
        if extra_fr:
            row += [_fmt_num(s.get("freerun_median")), _fmt_num(s.get("freerun_best"))]
        row += [_fmt_num(s["median_time"]), _fmt_num(s["median_iter"]),
                _fmt_num(s["time_per_iter"]), _fmt_num(s["iter_time"])]
        if ref:
            row.append(_fmt_num(s["time_ratio"]) + "x" if np.isfinite(s["time_ratio"]) else "-")
        if extra_mem:
            row += [_fmt_num(s.get("peak_rss_mb")), _fmt_num(s.get("train_rss_mb"))]
        body.append(row)
    return head, body


def _md_table(head, body) -> str:
    esc = [[str(c).replace("|", "\\|") for c in r] for r in [head] + body]
    lines = ["| " + " | ".join(esc[0]) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in esc[1:]]
    return "\n".join(lines)


def _html_table(head, body) -> str:
    th = "".join(f"<th>{html.escape(str(h))}</th>" for h in head)
    trs = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>"
                  for r in body)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{trs}</tbody></table>"


def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", s).strip("-").lower()[:60] or "cell"


# --- figures -----------------------------------------------------------------------------------
def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _colors(methods) -> dict:
    return {m: PALETTE[i % len(PALETTE)] for i, m in enumerate(methods)}


def fig_convergence(out, cells, methods, runs, per_fig=4) -> list[tuple[str, str]]:
    """Per cell: training loss against iterations (log axes) and against wall time (linear)."""
    plt = _plt()
    col = _colors(methods)
    figs = []
    have = [c for c in cells if any(k[0] == c and runs[k].get("history") for k in runs)]
    for start in range(0, len(have), per_fig):
        chunk = have[start:start + per_fig]
        fig, axes = plt.subplots(len(chunk), 2, figsize=(10, 3.1 * len(chunk)), squeeze=False)
        for (ax_i, ax_t), c in zip(axes, chunk):
            seen = set()
            for (cc, m, _s), rec in runs.items():
                h = rec.get("history") or []
                if cc != c or m not in col or not h:
                    continue
                key = "train_mse" if any("train_mse" in e for e in h) else "loss"
                y = np.array([_f(e.get(key)) for e in h])
                it = np.array([_f(e.get("iter")) for e in h])
                t = np.array([_f(e.get("time")) for e in h])
                lab = m if m not in seen else None
                ok = np.isfinite(it) & np.isfinite(y) & (y > 0)
                if ok.any():
                    ax_i.plot(np.maximum(it[ok], 0) + 1, y[ok], color=col[m], alpha=0.5, lw=1,
                              label=lab)
                ok = np.isfinite(t) & np.isfinite(y) & (y > 0)
                if ok.any():
                    ax_t.plot(t[ok], y[ok], color=col[m], alpha=0.5, lw=1, label=lab)
                seen.add(m)
            ax_i.set_xscale("log")
            ax_i.set_yscale("log")
            ax_t.set_yscale("log")
            ax_i.set_title(f"{c}: per iteration", fontsize=9)
            ax_t.set_title(f"{c}: per wall time", fontsize=9)
            ax_i.set_xlabel("iteration + 1 (epochs; alm: outer iterations)")
            ax_t.set_xlabel("wall time since the start of the batch (s, compilation included)")
            ax_i.set_ylabel("training loss")
            if seen:
                ax_i.legend(fontsize=7)
        fig.tight_layout()
        name = f"convergence_{start // per_fig + 1}.png"
        fig.savefig(out / name, dpi=100)
        plt.close(fig)
        figs.append((name, ("Convergence histories, one line per run: training loss against "
                            "iterations and against wall time (compilation included).")))
    return figs


def fig_histograms(out, rows, cells, methods, threshold, metric) -> list[tuple[str, str]]:
    plt = _plt()
    vals = [r["train_mse"] for r in rows if r["status"] != "error"]
    a = _finite(vals)
    a = a[a > 0]
    if not a.size:
        return []
    lo, hi = np.log10(a.min()), np.log10(a.max())
    if hi - lo < 1e-9:
        lo, hi = lo - 0.5, hi + 0.5
    bins = np.logspace(lo, hi, 31)
    fig, axes = plt.subplots(len(methods), 1, figsize=(7, 1.9 * len(methods) + 0.6), squeeze=False,
                             sharex=True)
    stacked = len(cells) <= 8
    for ax, m in zip(axes[:, 0], methods):
        per = [[r["train_mse"] for r in rows if r["method"] == m and r["cell"] == c
                and r["status"] != "error" and _f(r["train_mse"]) > 0] for c in cells]
        if stacked:
            ax.hist([p for p in per], bins=bins, stacked=True, label=cells,
                    color=[PALETTE[i % len(PALETTE)] for i in range(len(cells))])
        else:
            ax.hist([v for p in per for v in p], bins=bins, color=PALETTE[0])
        if metric == "train_mse" and np.isfinite(threshold):
            ax.axvline(threshold, color="k", ls="--", lw=1)
        ax.set_xscale("log")
        ax.set_ylabel(m)
    if stacked:
        axes[0, 0].legend(fontsize=7, ncol=min(3, len(cells)))
    axes[-1, 0].set_xlabel("final training MSE (log scale)")
    fig.tight_layout()
    fig.savefig(out / "mse_hist.png", dpi=110)
    plt.close(fig)
    cap = "Final training MSE per method (log axis), stacked by cell"
    if metric == "train_mse" and np.isfinite(threshold):
        cap += f"; dashed: the success threshold {threshold:g} (good and bad minima form two modes)"
    return [("mse_hist.png", cap + ".")]


def fig_fits(out, rows, cells, methods, runs, cellrecs, max_cells=24) -> list[tuple[str, str]]:
    plt = _plt()
    figs = []
    for c in [c for c in cells if "x_train" in cellrecs.get(c, {})][:max_cells]:
        cr = cellrecs[c]
        ms = [m for m in methods if any(r["cell"] == c and r["method"] == m for r in rows)]
        fig, axes = plt.subplots(1, len(ms), figsize=(3.6 * len(ms), 3.0), squeeze=False)
        for ax, m in zip(axes[0], ms):
            ok = [r for r in rows if r["cell"] == c and r["method"] == m and r["status"] != "error"
                  and np.isfinite(r["train_mse"]) and (c, m, r["seed"]) in runs
                  and "fit" in runs[(c, m, r["seed"])]]
            if cr.get("x_test"):
                ax.plot(cr["x_test"], cr["y_test"], color="0.6", lw=1, label="test data")
            ax.plot(cr["x_train"], cr["y_train"], "k.", ms=4, label="training data")
            if ok:
                best = min(ok, key=lambda r: r["train_mse"])
                worst = max(ok, key=lambda r: r["train_mse"])
                pick = [(best, "#2ca02c", "best")] + ([(worst, "#d62728", "worst")]
                                                      if worst is not best else [])
                for r, color, what in pick:
                    fit = runs[(c, m, r["seed"])]["fit"]
                    ax.plot(fit["x"], [_f(v) for v in fit["y"]], color=color, lw=1.4,
                            label=f"{what} (seed {r['seed']}, MSE {_fmt_num(r['train_mse'])})")
            ax.set_title(m, fontsize=9)
            ax.legend(fontsize=6)
        fig.suptitle(c, fontsize=10)
        fig.tight_layout()
        name = f"fits_{_slug(c)}.png"
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
        figs.append((name, f"Best and worst fits per method, cell {c}."))
    return figs


def fig_freerun(out, rows, cells, methods, runs, cellrecs) -> list[tuple[str, str]]:
    plt = _plt()
    figs = []
    for c in cells:
        cr = cellrecs.get(c, {})
        if "truth" not in cr:
            continue
        ms = [m for m in methods if any(k[0] == c and k[1] == m and "freerun" in v
                                        for k, v in runs.items())]
        if not ms:
            continue
        truth = np.array([_f(v) for v in cr["truth"]])
        tail = np.array([_f(v) for v in cr.get("series_tail", [])])[-100:]
        fig, axes = plt.subplots(len(ms), 1, figsize=(8, 2.4 * len(ms)), squeeze=False, sharex=True)
        for ax, m in zip(axes[:, 0], ms):
            ok = sorted([r for r in rows if r["cell"] == c and r["method"] == m
                         and np.isfinite(r.get("freerun_mse", math.nan))
                         and "freerun" in runs.get((c, m, r["seed"]), {})],
                        key=lambda r: r["freerun_mse"])
            t_hist = np.arange(-len(tail), 0)
            ax.plot(t_hist, tail, color="0.6", lw=1, label="training series (end)")
            ax.plot(np.arange(len(truth)), truth, "k", lw=1.4, label="continuation (truth)")
            if ok:
                pick = [(ok[0], "#2ca02c", "best")]
                if len(ok) > 2:
                    pick.append((ok[len(ok) // 2], "#1f77b4", "median"))
                for r, color, what in pick:
                    pred = [_f(v) for v in runs[(c, m, r["seed"])]["freerun"]]
                    ax.plot(np.arange(len(pred)), pred, color=color, lw=1.2,
                            label=f"{what} free run (seed {r['seed']}, MSE {_fmt_num(r['freerun_mse'])})")
            ax.set_ylabel(m)
            ax.legend(fontsize=7, loc="upper left")
        axes[-1, 0].set_xlabel("step after the training series")
        fig.suptitle(f"Free-run prediction, {c} (normalised)", fontsize=10)
        fig.tight_layout()
        name = f"freerun_{_slug(c)}.png"
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
        figs.append((name, (f"Free-run predictions against the continuation, {c}: the best and "
                            f"the median run per method.")))
    return figs


def fig_scaling(out, series, methods) -> list[tuple[str, str]]:
    if not series:
        return []
    plt = _plt()
    col = _colors(methods)
    figs = []
    for g in dict.fromkeys(s["group"] for s in series):
        ss = [s for s in series if s["group"] == g]
        has_mem = any((_finite(s["mem"]) > 0).any() for s in ss)
        ncol = 3 if has_mem else 2
        fig, axes = plt.subplots(1, ncol, figsize=(4.6 * ncol, 3.6), squeeze=False)
        xlabel = "training samples m" if ss[0]["x"] == "n" else "parameters"
        for s in ss:
            for ax, key, slope in ((axes[0, 0], "time_per_iter", s["slope_iter"]),
                                   (axes[0, 1], "time_s", s["slope_time"])):
                ax.loglog(s["xs"], s[key], "o-", color=col[s["method"]],
                          label=f"{s['method']} (slope {_fmt_num(slope)})")
            if has_mem:
                axes[0, 2].loglog(s["xs"], s["mem"], "o-", color=col[s["method"]],
                                  label=f"{s['method']} (slope {_fmt_num(s['slope_mem'])})")
        titles = ["time per iteration after the first (s)",
                  "time per run (s, compilation included)", "peak RSS added by training (MB)"]
        for ax, t in zip(axes[0], titles):
            ax.set_xlabel(xlabel)
            ax.set_title(t, fontsize=9)
            ax.legend(fontsize=7)
        fig.suptitle(f"scaling: {g}", fontsize=10)
        fig.tight_layout()
        name = f"scaling_{_slug(g)}.png"
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
        figs.append((name, f"Scaling ({g}): medians on log-log axes with least-squares slopes."))
    return figs


def fig_grad_norms(out, rows, cells) -> list[tuple[str, str]]:
    if not any(r.get("grad_norms_init") for r in rows):
        return []
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    drawn = 0
    for i, c in enumerate(cells):
        per_seed = {}
        for r in rows:
            if r["cell"] == c and r.get("grad_norms_init"):
                try:
                    per_seed[r["seed"]] = [_f(v) for v in json.loads(r["grad_norms_init"])]
                except ValueError:
                    pass
        if not per_seed:
            continue
        depth = max(len(v) for v in per_seed.values())
        arr = np.array([v + [math.nan] * (depth - len(v)) for v in per_seed.values()])
        with np.errstate(all="ignore"):
            med = np.nanmedian(arr, axis=0)
        ax.semilogy(np.arange(1, depth + 1), med, "o-", ms=3, color=PALETTE[i % len(PALETTE)],
                    label=c)
        drawn += 1
    if not drawn:
        plt.close(fig)
        return []
    ax.set_xlabel("weight layer j (1: input -> first hidden layer; last: output layer)")
    ax.set_ylabel("||dC/dW_j|| at initialisation (median over seeds)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "grad_norms.png", dpi=110)
    plt.close(fig)
    return [("grad_norms.png", ("Per-layer gradient norms of the training loss at the initial "
                                "weights (vanishing gradients show as a slope across layers)."))]


def fig_jacobian(out, meta, n: int = 7) -> tuple[list[tuple[str, str]], list[str]]:
    """Spy plots of the lifted Jacobian (natural and banded ordering) of the suite's smallest
    network on the first `n` training samples of its cell (liftnn.lifted.jacobian)."""
    try:
        from liftnn.lifted import jacobian as jm
        from liftnn.lifted.formulation import LiftedProblem
    except ImportError as exc:
        return [], [f"Jacobian spy plot skipped: liftnn.lifted.jacobian is not available ({exc})."]
    cells = [c for c in meta.get("config", {}).get("cells", []) if len(c["arch"].split("-")) > 2]
    if not cells:
        return [], ["Jacobian spy plot skipped: no cell with a hidden layer in suite.json."]
    from liftnn import datasets
    from liftnn.models import MLP

    c = min(cells, key=lambda c: sum(int(s) for s in c["arch"].split("-")))
    try:
        model = MLP(c["arch"], activation=c["activation"], bias=c.get("bias", True),
                    output_activation=c.get("output_activation", "identity"),
                    init=c.get("init", "glorot_uniform"))
        data = datasets.load(c["dataset"], seed=int(meta.get("config", {}).get("data_seed", 0)),
                             **c.get("data_kw", {}))
        X, Y = data.x_train[:n], data.y_train[:n]
        lp = LiftedProblem(model, X, Y)
        u = np.asarray(lp.feasible_start(model.init(0)))
        figs = []
        for ordering, fig_ref in (("natural", "fig. 3.2"), ("banded", "fig. 3.3")):
            bj = jm.jacobian(lp, u, ordering)
            name = f"jacobian_spy_{ordering}.png"
            jm.spy(bj.J, out / name, f"lifted Jacobian, {ordering} ordering ({fig_ref}): "
                   f"{model.arch} {c['activation']}, {len(X)} samples",
                   row_blocks=bj.row_blocks, col_blocks=bj.col_blocks)
            figs.append((name, (f"Sparsity of the lifted (multiple-shooting) Jacobian, {ordering} "
                                f"ordering (seed 000 Table 3.1, {fig_ref}), for the suite's "
                                f"smallest network ({model.arch}, cell {c['label']}) on {len(X)} "
                                f"samples.")))
    except Exception as exc:  # noqa: BLE001 - the figure is optional; say why it is missing
        return [], [f"Jacobian spy plot skipped: {type(exc).__name__}: {exc}"]
    return figs, []


# --- the report --------------------------------------------------------------------------------
_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;
max-width:1200px;color:#222;line-height:1.4;padding:0 1em}
h1{font-size:1.6em}h2{font-size:1.25em;margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.6em 0;font-size:.86em}
th,td{border:1px solid #ccc;padding:3px 7px;text-align:right}
th{background:#f2f2f2}td:first-child,td:nth-child(2){text-align:left}
tbody tr:nth-child(even){background:#fafafa}
.note{background:#fff8e1;border-left:4px solid #f0b400;padding:.4em .8em;margin:.4em 0}
figure{margin:1em 0}img{max-width:100%;border:1px solid #eee}figcaption{font-size:.85em;color:#555}
code{background:#f4f4f4;padding:0 3px}
"""


def build_report(out, console=None) -> dict:
    """Rebuild DIR/report.md, DIR/report.html and the figures from the files in DIR."""
    out = Path(out)
    if not out.is_dir():
        raise LiftnnError(f"{out} is not a directory")
    meta = load_meta(out)
    if meta.get("kind") == "lectures":
        try:
            from liftnn.bench import lectures
        except ImportError as exc:
            raise LiftnnError(f"{out} holds the seeds-lectures suite, whose report needs "
                              f"liftnn.bench.lectures ({exc})") from None
        if hasattr(lectures, "build_report"):
            return lectures.build_report(out)
        raise LiftnnError(f"{out} holds the seeds-lectures suite; its report is written by "
                          f"`liftnn bench seeds-lectures --out {out}`")
    rows = load_rows(out)
    if not rows:
        raise LiftnnError(f"{out}/results.csv has no rows yet")
    runs, cellrecs = load_records(out)
    stats, cells, methods, ref = aggregate(rows, meta)
    threshold = _f(meta.get("success_below", math.inf))
    metric = meta.get("success_metric", "train_mse")
    figures, notes = [], []
    for old in out.glob("*.png"):  # figures are rebuilt from scratch
        if re.match(r"(convergence_\d+|mse_hist|fits_.*|freerun_.*|scaling_.*|grad_norms|"
                    r"jacobian_spy_.*)\.png$", old.name):
            old.unlink()
    figures += fig_convergence(out, cells, methods, runs)
    figures += fig_histograms(out, rows, cells, methods, threshold, metric)
    figures += fig_fits(out, rows, cells, methods, runs, cellrecs)
    figures += fig_freerun(out, rows, cells, methods, runs, cellrecs)
    series = []
    if any(r.get("group") for r in rows) or "peak_rss_mb" in rows[0]:
        series = scaling_series(rows, methods)
        figures += fig_scaling(out, series, methods)
    figures += fig_grad_norms(out, rows, cells)
    jf, jn = fig_jacobian(out, meta)
    figures += jf
    notes += jn
    if not runs:
        notes.append("histories.jsonl is missing: no convergence, fit or free-run figures.")

    head, body = cell_table(stats, ref, meta)
    totals = method_totals(stats, methods, cells)
    t_head = ["method", f"{success_word(meta)} (per cell = total)",
              "median time per run (s), range over cells"]
    if ref:
        t_head.append(f"median time / {ref}")
    t_body = [[t["method"], t["converged"], t["time"]] + ([t["ratio"]] if ref else [])
              for t in totals]
    slope_head = ["group", "method", "x", "slope time/iteration (after the first)",
                  "slope time/run", "slope memory (peak RSS added)"]
    slope_body = [[s["group"], s["method"], "m" if s["x"] == "n" else "parameters",
                   _fmt_num(s["slope_iter"]), _fmt_num(s["slope_time"]), _fmt_num(s["slope_mem"])]
                  for s in series]
    work = work_stats(rows, runs, cellrecs, cells, methods, ref, meta)
    work_head = ["cell", "method", f"reached {ref}'s final loss", "median time to reach (s)",
                 "one forward + backward (s)", "work (forward + backward passes)"]
    work_body = [[w["cell"], w["method"], w["reached"], _fmt_num(w["median_time"]),
                  _fmt_num(w["fwd_bwd_s"]), _fmt_num(w["work"])] for w in work]
    work_intro = (f"Time for each run to reach the final training loss of {ref}'s run from the "
                  "same initial weights: its time per run (compilation included) less the part "
                  "of its history after the first entry at or below that loss; in seconds and in "
                  "multiples of one full-batch forward + backward pass on the cell's data. "
                  "Medians over the runs that reached it.")
    opt_body = [[m, json.dumps(o, sort_keys=True) if o else "(defaults)"]
                for m, o in meta.get("methods", {}).items() if m in methods]
    errors = [r for r in rows if r["status"] == "error"]
    err_body = [[r["cell"], r["method"], str(r["seed"]), r["message"][:200]] for r in errors[:30]]
    skipped = meta.get("skipped", {})

    name = meta.get("suite", rows[0]["suite"])
    inits = sorted({r["init"] for r in rows})
    crit = (f"a run converges when {metric} < {threshold:g}" if np.isfinite(threshold)
            else f"a run counts as converged when it finishes without error ({metric} finite)")
    intro = [
        f"Suite **{name}**" + (f" — {meta['description']}" if meta.get("description") else ""),
        (f"Source: `{meta.get('source', '?')}`; liftnn {meta.get('liftnn_version', '?')}; "
         f"updated {meta.get('updated', '?')}")
        + (" (quick / reduced size)" if meta.get("quick") else ""),
        (f"{len(rows)} runs: {len(cells)} cells x {len(methods)} methods, seeds "
         f"{_seed_span(sorted({r['seed'] for r in rows}))}; initialiser(s): {', '.join(inits)}; "
         f"{crit}."),
        ("Every method of a run starts from the same initial weights (`model.init(seed)`) on the "
         "same data. Time per run = wall time of its batch, compilation included, divided by the "
         "runs in the batch (liftnn methods train a cell's seeds in one call, vectorised where the "
         "method supports it; peers run one seed at a time)."
         + (f" XLA compilation cache: {meta['compile_cache']}." if meta.get("compile_cache") else "")),
    ]
    if meta.get("notes"):
        intro.append(meta["notes"])
    notices = list(meta.get("notices", []))
    notices += [f"skipped method {m}: {why}" for m, why in skipped.items()]
    notices += notes

    # markdown
    md = [f"# liftnn bench: {name}", ""] + [p + "\n" for p in intro]
    if notices:
        md += ["## Notes", ""] + [f"- {n}" for n in notices] + [""]
    md += ["## Summary per method", "", _md_table(t_head, t_body), "",
           "## Per cell and method", "", _md_table(head, body), ""]
    if work_body:
        md += [f"## Work to reach {ref}'s final loss", "", work_intro, "",
               _md_table(work_head, work_body), ""]
    if slope_body:
        md += ["## Scaling (log-log slopes)", "", _md_table(slope_head, slope_body), ""]
    if opt_body:
        md += ["## Method options", "", _md_table(["method", "options"], opt_body), ""]
    if err_body:
        md += [f"## Errors ({len(errors)} runs)", "",
               _md_table(["cell", "method", "seed", "message"], err_body), ""]
    if figures:
        md += ["## Figures", ""]
        for fname, cap in figures:
            md += [f"![{cap}]({fname})", "", f"*{cap}*", ""]
    (out / "report.md").write_text("\n".join(md))

    # html
    h = [(f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>liftnn bench: "
          f"{html.escape(name)}</title><style>{_CSS}</style></head><body>"),
         f"<h1>liftnn bench: {html.escape(name)}</h1>"]
    h += [f"<p>{_md_inline(p)}</p>" for p in intro]
    if notices:
        h += ["<h2>Notes</h2>"] + [f"<div class='note'>{html.escape(n)}</div>" for n in notices]
    h += ["<h2>Summary per method</h2>", _html_table(t_head, t_body),
          "<h2>Per cell and method</h2>", _html_table(head, body)]
    if work_body:
        h += [f"<h2>Work to reach {html.escape(ref)}'s final loss</h2>",
              f"<p>{html.escape(work_intro)}</p>", _html_table(work_head, work_body)]
    if slope_body:
        h += ["<h2>Scaling (log-log slopes)</h2>", _html_table(slope_head, slope_body)]
    if opt_body:
        h += ["<h2>Method options</h2>", _html_table(["method", "options"], opt_body)]
    if err_body:
        h += [f"<h2>Errors ({len(errors)} runs)</h2>",
              _html_table(["cell", "method", "seed", "message"], err_body)]
    if figures:
        h += ["<h2>Figures</h2>"]
        for fname, cap in figures:
            h.append(f"<figure><img src='{html.escape(fname)}' alt='{html.escape(cap)}'>"
                     f"<figcaption>{html.escape(cap)}</figcaption></figure>")
    h.append("</body></html>")
    (out / "report.html").write_text("\n".join(h))
    if console is not None:
        console.print(f"report: {out / 'report.html'} ({len(figures)} figures)")
    return {"md": out / "report.md", "html": out / "report.html",
            "figures": [out / f for f, _ in figures], "stats": stats, "totals": totals,
            "slopes": series, "work": work, "notes": notices}


def _md_inline(text: str) -> str:
    """Markdown **bold** and `code` in one paragraph -> HTML (everything else escaped)."""
    t = html.escape(text)
    t = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", t)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", t)


def _seed_span(seeds: list[int]) -> str:
    if seeds and seeds == list(range(seeds[0], seeds[-1] + 1)):
        return f"{seeds[0]}..{seeds[-1]}" if len(seeds) > 1 else str(seeds[0])
    return ", ".join(map(str, seeds))
