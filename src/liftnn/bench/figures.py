"""The figures of a bench report (PNG files next to DIR/report.html), drawn from the rows and
records alone: convergence histories, MSE histograms, fits, free runs, scaling plots, per-layer
gradient norms and the lifted-Jacobian spy plots.  Each `fig_*` returns [(file name, caption)].
"""

from __future__ import annotations

import json
import math
import re

import numpy as np

from liftnn.bench.stats import finite, fmt_num
from liftnn.bench.store import to_float

PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf"]


def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", s).strip("-").lower()[:60] or "cell"


# --- figures -----------------------------------------------------------------------------------
def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path, dpi: int = 110, title: str | None = None) -> None:
    """Lay `fig` out (under an optional suptitle), write it to `path` and release it."""
    if title is not None:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi, bbox_inches="tight")  # no axis label cut off at the edge
    _plt().close(fig)


def _colors(methods) -> dict:
    return {m: PALETTE[i % len(PALETTE)] for i, m in enumerate(methods)}


def convergence_lines(cells, methods, runs, cellcfg=None) -> tuple[dict, dict, list[str]]:
    """What the convergence figure draws: the same quantity for every method of a cell.

    Least-squares cells: the train MSE, from a history's "train_mse" (alm) or, where the cell's
    objective is the plain MSE (loss "mse", weight_decay 0), its "loss" (the same number); a
    run whose history has only an objective that differs from the MSE (weight decay, "sse") is
    left out and named.  Cross-entropy cells: the objective "loss" of every method (alm does not
    run there).  cellcfg: cell label -> its configuration (suite.json's config.cells; loss,
    weight_decay), absent: loss "mse", weight_decay 0.

    Returns (lines, ylabels, left_out): lines[cell] = [(method, seed, iterations, times, y)],
    ylabels[cell] = what y is, left_out = ["cell: method", ...].
    """
    cellcfg = cellcfg or {}
    lines: dict = {}
    ylabels: dict = {}
    left_out: list[str] = []
    for (c, m, seed), rec in runs.items():
        h = rec.get("history") or []
        if c not in cells or m not in methods or not h:
            continue
        cfg = cellcfg.get(c, {})
        loss, wd = cfg.get("loss", "mse"), to_float(cfg.get("weight_decay", 0.0))
        if loss == "cross_entropy":
            key, ylabels[c] = "loss", "training loss (cross-entropy objective)"
        else:
            ylabels[c] = "training MSE"
            if any("train_mse" in e for e in h):
                key = "train_mse"
            elif loss == "mse" and not wd:
                key = "loss"  # the objective is the train MSE itself
            else:
                if f"{c}: {m}" not in left_out:
                    left_out.append(f"{c}: {m}")
                continue
        y = np.array([to_float(e.get(key)) for e in h])
        it = np.array([to_float(e.get("iter")) for e in h])
        t = np.array([to_float(e.get("time")) for e in h])
        lines.setdefault(c, []).append((m, seed, it, t, y))
    return lines, ylabels, left_out


def _convergence_figure(chunk, lines, ylabels, col):
    """One figure of convergence panels (a row per cell: per iteration, per wall time)."""
    plt = _plt()
    fig, axes = plt.subplots(len(chunk), 2, figsize=(10, 3.1 * len(chunk)), squeeze=False)
    for (ax_i, ax_t), c in zip(axes, chunk):
        seen = set()
        for m, _seed, it, t, y in lines[c]:
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
        ax_i.set_xlabel("iteration + 1 (epochs; alm: outer iterations)", fontsize=8)
        ax_t.set_xlabel("wall time (s, compilation included)", fontsize=8)
        ax_i.set_ylabel(ylabels[c], fontsize=8)
        if seen:
            ax_i.legend(fontsize=7)
    return fig


def fig_convergence(out, cells, methods, runs, per_fig=4, cellcfg=None) -> list[tuple[str, str]]:
    """Per cell: the train MSE (cross-entropy cells: the objective) of every method against
    iterations (log axes) and against wall time (convergence_lines says what is drawn)."""
    col = _colors(methods)
    lines, ylabels, left_out = convergence_lines(cells, methods, runs, cellcfg)
    have = [c for c in cells if lines.get(c)]
    figs = []
    for start in range(0, len(have), per_fig):
        chunk = have[start:start + per_fig]
        fig = _convergence_figure(chunk, lines, ylabels, col)
        name = f"convergence_{start // per_fig + 1}.png"
        save_figure(fig, out / name, dpi=100)
        cap = ("Convergence histories, one line per run: the training MSE (classification "
               "cells: the cross-entropy objective) of every method against iterations and "
               "against wall time since the start of the batch (compilation included).")
        if left_out:
            cap += (" Not drawn (their histories record only an objective with weight decay, "
                    f"not the MSE): {', '.join(left_out)}.")
        figs.append((name, cap))
    return figs


def histogram_values(rows, cells, methods, col: str = "train_mse") -> dict:
    """What the histogram draws: method -> [the finite, positive final `col` of its runs, per
    cell]; methods with no such value (every run failed, or `col` missing) are left out."""
    out = {}
    for m in methods:
        per = [[to_float(r[col]) for r in rows if r["method"] == m and r["cell"] == c
                and r["status"] != "error" and to_float(r.get(col)) > 0
                and math.isfinite(to_float(r.get(col)))] for c in cells]
        if any(per):
            out[m] = per
    return out


def fig_histograms(out, rows, cells, methods, threshold, metric,
                   col: str = "train_mse") -> list[tuple[str, str]]:
    """Histogram of the final `col` per method (train_mse; the objective "loss" for
    classification suites, whose train_mse of logits against one-hot rows means little); a
    panel per method that has values (histogram_values), the others named in the caption."""
    plt = _plt()
    vals = histogram_values(rows, cells, methods, col)
    if not vals:
        return []
    a = np.array([v for per in vals.values() for p in per for v in p])
    lo, hi = np.log10(a.min()), np.log10(a.max())
    if hi - lo < 1e-9:
        lo, hi = lo - 0.5, hi + 0.5
    bins = np.logspace(lo, hi, 31)
    drawn = list(vals)
    fig, axes = plt.subplots(len(drawn), 1, figsize=(7, 1.9 * len(drawn) + 0.6), squeeze=False,
                             sharex=True)
    stacked = len(cells) <= 8
    for ax, m in zip(axes[:, 0], drawn):
        per = vals[m]
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
    what = "training MSE" if col == "train_mse" else "training loss"
    axes[-1, 0].set_xlabel(f"final {what} (log scale)")
    save_figure(fig, out / "mse_hist.png")
    cap = f"Final {what} per method (log axis), stacked by cell"
    if metric == "train_mse" and np.isfinite(threshold):
        cap += f"; dashed: the success threshold {threshold:g} (good and bad minima form two modes)"
    missing = [m for m in methods if m not in vals]
    if missing:
        cap += f"; no finished run with a finite {what} (not drawn): {', '.join(missing)}"
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
                    ax.plot(fit["x"], [to_float(v) for v in fit["y"]], color=color, lw=1.4,
                            label=f"{what} (seed {r['seed']}, MSE {fmt_num(r['train_mse'])})")
            ax.set_title(m, fontsize=9)
            ax.legend(fontsize=6)
        name = f"fits_{_slug(c)}.png"
        save_figure(fig, out / name, title=c)
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
        truth = np.array([to_float(v) for v in cr["truth"]])
        tail = np.array([to_float(v) for v in cr.get("series_tail", [])])[-100:]
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
                    pred = [to_float(v) for v in runs[(c, m, r["seed"])]["freerun"]]
                    ax.plot(np.arange(len(pred)), pred, color=color, lw=1.2,
                            label=f"{what} free run (seed {r['seed']}, MSE {fmt_num(r['freerun_mse'])})")
            ax.set_ylabel(m)
            ax.legend(fontsize=7, loc="upper left")
        axes[-1, 0].set_xlabel("step after the training series")
        name = f"freerun_{_slug(c)}.png"
        save_figure(fig, out / name, title=f"Free-run prediction, {c} (normalised)")
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
        has_mem = any((finite(s["mem"]) > 0).any() for s in ss)
        ncol = 3 if has_mem else 2
        fig, axes = plt.subplots(1, ncol, figsize=(4.6 * ncol, 3.6), squeeze=False)
        xlabel = "training samples m" if ss[0]["x"] == "n" else "parameters"
        for s in ss:
            for ax, key, slope in ((axes[0, 0], "time_per_iter", s["slope_iter"]),
                                   (axes[0, 1], "time_s", s["slope_time"])):
                ax.loglog(s["xs"], s[key], "o-", color=col[s["method"]],
                          label=f"{s['method']} (slope {fmt_num(slope)})")
            if has_mem:
                axes[0, 2].loglog(s["xs"], s["mem"], "o-", color=col[s["method"]],
                                  label=f"{s['method']} (slope {fmt_num(s['slope_mem'])})")
        titles = ["time per iteration after the first (s)",
                  "time per run (s, compilation included)", "peak RSS added by training (MB)"]
        for ax, t in zip(axes[0], titles):
            ax.set_xlabel(xlabel)
            ax.set_title(t, fontsize=9)
            ax.legend(fontsize=7)
        name = f"scaling_{_slug(g)}.png"
        save_figure(fig, out / name, title=f"scaling: {g}")
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
                    per_seed[r["seed"]] = [to_float(v) for v in json.loads(r["grad_norms_init"])]
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
    save_figure(fig, out / "grad_norms.png")
    return [("grad_norms.png", ("Per-layer gradient norms of the training loss at the initial "
                                "weights (vanishing gradients show as a slope across layers)."))]


def fig_jacobian(out, meta, n: int = 7) -> tuple[list[tuple[str, str]], list[str]]:
    """Spy plots of the lifted Jacobian (natural and banded ordering) of the suite's smallest
    network on the first `n` training samples of its cell (liftnn.lifted.thesis.jacobian)."""
    from liftnn.lifted.thesis import jacobian as jm
    from liftnn.lifted.thesis.residual import ThesisResidual

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
        lp = ThesisResidual(model, X, Y)
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

