"""Reports from a bench directory: thesis-style tables and figures, rebuilt from the files alone.

Input: DIR/results.csv (one row per run), DIR/histories.jsonl (histories, fitted curves, free-run
predictions, cell data) and DIR/suite.json (configuration, skipped methods, notices).
Output: DIR/report.md, DIR/report.html (self-contained apart from the PNGs next to it) and PNGs:

- per cell and method: runs, converged "k/N" (metric below the suite's threshold), average and best
  train MSE (and test MSE, free-run MSE where measured), median time per run (batch wall time /
  runs, compilation included), median iterations, and the median-time ratio to the reference
  method (e.g. alm/adam);
- convergence histories (train MSE, or the cross-entropy objective for classification cells,
  against iterations and wall time), train-MSE histograms per method on a log axis
  (good and bad minima show as two modes), best and worst fits of 1-D problems, free-run
  predictions against the truth (Santa Fe), scaling plots (log-log, fitted slopes), per-layer
  gradient norms at the initial weights, and, for suites with suite.jacobian_figure = true
  (thesis-sin2), the lifted Jacobian's spy plots (liftnn.bench.figures).

The statistics live in liftnn.bench.stats; docs/benchmarks.md describes the files.
"""

from __future__ import annotations

import html
import json
import math
import re
from pathlib import Path

import numpy as np

from liftnn.bench import figures as fig
from liftnn.bench.stats import (
    aggregate,
    fmt_num,
    method_totals,
    scaling_series,
    success_word,
    work_stats,
)
from liftnn.bench.store import read_rows, to_float
from liftnn.errors import LiftnnError

FLOAT_COLS = ("train_mse", "test_mse", "time_s", "iterations", "loss", "batch_time_s",
              "time_per_iter", "iter_time_s", "freerun_mse", "peak_rss_mb", "base_rss_mb", "n", "n_params",
              "outer_iterations", "nfev", "time_budget_s", "compile_s", "loop_s",
              "train_accuracy", "test_accuracy")


# --- reading -----------------------------------------------------------------------------------
def load_rows(out: Path) -> list[dict]:
    """The rows of DIR/results.csv with numeric columns as floats, seed as int, success as bool."""
    path = out / "results.csv"
    if not path.exists():
        raise LiftnnError(f"{out} has no results.csv; run `liftnn bench SUITE --out {out}` first")
    rows = read_rows(path)
    for r in rows:
        for c in FLOAT_COLS:
            if c in r:
                r[c] = to_float(r[c])
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
    """DIR/suite.json ({} when absent)."""
    path = out / "suite.json"
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except ValueError as exc:
        raise LiftnnError(f"{path} is not valid JSON: {exc}") from None


# --- tables ------------------------------------------------------------------------------------
def cell_table(stats, ref, meta) -> tuple[list[str], list[list[str]]]:
    extra_fr = any("freerun_median" in s for s in stats)
    extra_mem = any("peak_rss_mb" in s for s in stats)
    show_acc = any("avg_test_acc" in s for s in stats)  # classification: loss + accuracy
    show_test = not show_acc and any(np.isfinite(s["avg_test"]) for s in stats)
    head = ["cell", "method", success_word(meta)]
    head += (["avg train loss", "avg train accuracy", "avg test accuracy", "best test accuracy"]
             if show_acc else ["avg MSE", "best MSE"])
    if show_test:
        head += ["avg test MSE", "best test MSE"]
    if extra_fr:
        head += ["free-run MSE (median)", "free-run MSE (best)"]
    show_compile = any(np.isfinite(s.get("median_compile", np.nan)) for s in stats)
    head += ["median time (s)"]
    if show_compile:  # liftnn.train's split of the time (liftnn.compile_clock)
        head += ["of it compiling (s)", "of it looping (s)"]
    head += ["median iterations", "time / iteration (s)", "s / iteration after the first"]
    if ref:
        head.append(f"time / {ref}")
    if extra_mem:
        head += ["peak RSS (MB)", "training RSS (MB)"]
    body = []
    for s in stats:
        conv = f"{s['converged']}/{s['runs']}" + (f" ({s['errors']} errors)" if s["errors"] else "")
        row = [s["cell"], s["method"], conv]
        row += ([fmt_num(s.get(k)) for k in ("avg_loss", "avg_train_acc", "avg_test_acc",
                                             "best_test_acc")]
                if show_acc else [fmt_num(s["avg_mse"]), fmt_num(s["best_mse"])])
        if show_test:
            row += [fmt_num(s["avg_test"]), fmt_num(s["best_test"])]
        if extra_fr:
            row += [fmt_num(s.get("freerun_median")), fmt_num(s.get("freerun_best"))]
        row += [fmt_num(s["median_time"])]
        if show_compile:
            row += [fmt_num(s.get("median_compile")), fmt_num(s.get("median_loop"))]
        row += [fmt_num(s["median_iter"]), fmt_num(s["time_per_iter"]), fmt_num(s["iter_time"])]
        if ref:
            row.append(fmt_num(s["time_ratio"]) + "x" if np.isfinite(s["time_ratio"]) else "-")
        if extra_mem:
            row += [fmt_num(s.get("peak_rss_mb")), fmt_num(s.get("train_rss_mb"))]
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


def build_report(out, log=None) -> dict:
    """Rebuild DIR/report.md, DIR/report.html and the figures from the files in DIR.

    `log`, if given, receives one line naming the report written (the CLI prints it).
    """
    out = Path(out)
    if not out.is_dir():
        raise LiftnnError(f"{out} is not a directory")
    meta = load_meta(out)
    if meta.get("kind") == "lectures":
        from liftnn.bench import lectures

        return lectures.build_report(out)
    rows = load_rows(out)
    if not rows:
        raise LiftnnError(f"{out}/results.csv has no rows yet")
    runs, cellrecs = load_records(out)
    stats, cells, methods, ref = aggregate(rows, meta)
    figures, notes, series = _draw_figures(out, meta, rows, cells, methods, runs, cellrecs)
    totals = method_totals(stats, methods, cells,
                           headline_test=meta.get("success_metric") == "test_mse")
    work = work_stats(rows, runs, cellrecs, cells, methods, ref, meta)
    sections = _sections(meta, rows, stats, totals, series, work, methods, ref)
    name = meta.get("suite", rows[0]["suite"])
    intro = _intro(meta, rows, name, cells, methods)
    notices = list(meta.get("notices", []))
    notices += [f"skipped method {m}: {why}" for m, why in meta.get("skipped", {}).items()]
    notices += notes
    (out / "report.md").write_text(_markdown(name, intro, notices, sections, figures))
    (out / "report.html").write_text(_html(name, intro, notices, sections, figures))
    if log is not None:
        log(f"report: {out / 'report.html'} ({len(figures)} figures)")
    return {"md": out / "report.md", "html": out / "report.html",
            "figures": [out / f for f, _ in figures], "stats": stats, "totals": totals,
            "slopes": series, "work": work, "notes": notices}


def _draw_figures(out: Path, meta, rows, cells, methods, runs, cellrecs):
    """Every figure of the report, drawn afresh: ([(file, caption)], notes, scaling series)."""
    threshold = to_float(meta.get("success_below", math.inf))
    metric = meta.get("success_metric", "train_mse")
    figures, notes = [], []
    for old in out.glob("*.png"):  # figures are rebuilt from scratch
        if re.match(r"(convergence_\d+|mse_hist|fits_.*|freerun_.*|scaling_.*|grad_norms|"
                    r"jacobian_spy_.*)\.png$", old.name):
            old.unlink()
    cellcfg = {c.get("label"): c for c in meta.get("config", {}).get("cells", [])}
    figures += fig.fig_convergence(out, cells, methods, runs, cellcfg=cellcfg)
    figures += fig.fig_histograms(out, rows, cells, methods, threshold, metric,
                                  col="loss" if "test_accuracy" in rows[0] else "train_mse")
    figures += fig.fig_fits(out, rows, cells, methods, runs, cellrecs)
    figures += fig.fig_freerun(out, rows, cells, methods, runs, cellrecs)
    series = []
    if any(r.get("group") for r in rows) or "peak_rss_mb" in rows[0]:
        series = scaling_series(rows, methods)
        figures += fig.fig_scaling(out, series, methods)
    figures += fig.fig_grad_norms(out, rows, cells)
    if meta.get("jacobian_figure"):  # only suites about the lifted Jacobian (suite.jacobian_figure)
        jf, jn = fig.fig_jacobian(out, meta)
        figures += jf
        notes += jn
    if not runs:
        notes.append("histories.jsonl is missing: no convergence, fit or free-run figures.")
    return figures, notes, series


def _sections(meta, rows, stats, totals, series, work, methods, ref) -> list[tuple]:
    """The report's tables in order: [(title, intro or None, head, body)]; empty ones left out."""
    head, body = cell_table(stats, ref, meta)
    t_head = ["method", f"{success_word(meta)} (per cell = total)",
              "median time per run (s), range over cells"]
    if ref:
        t_head.append(f"median time / {ref}")
    keys = [k for k in ("train_loss", "test_acc", "train_mse", "test_mse")
            if totals and k in totals[0]]
    t_head[2:2] = [{"train_loss": "mean train loss", "test_acc": "mean test accuracy",
                    "train_mse": "mean train MSE", "test_mse": "mean test MSE"}[k] for k in keys]
    t_body = [[t["method"], t["converged"]] + [fmt_num(t.get(k)) for k in keys] + [t["time"]]
              + ([t["ratio"]] if ref else []) for t in totals]
    slope_head = ["group", "method", "x", "slope time/iteration (after the first)",
                  "slope time/run", "slope memory (peak RSS added)"]
    slope_body = [[s["group"], s["method"], "m" if s["x"] == "n" else "parameters",
                   fmt_num(s["slope_iter"]), fmt_num(s["slope_time"]), fmt_num(s["slope_mem"])]
                  for s in series]
    work_head = ["cell", "method", f"reached {ref}'s final loss", "median time to reach (s)",
                 "one forward + backward (s)", "work (forward + backward passes)"]
    work_body = [[w["cell"], w["method"], w["reached"], fmt_num(w["median_time"]),
                  fmt_num(w["fwd_bwd_s"]), fmt_num(w["work"])] for w in work]
    work_intro = (f"Time for each run to reach the final training loss of {ref}'s run from the "
                  "same initial weights: its time per run (compilation included) less the part "
                  "of its history after the first entry at or below that loss; in seconds and in "
                  "multiples of one full-batch forward + backward pass on the cell's data "
                  "(a method whose history has no clock, such as lifted-gn's compiled loop: its "
                  "time per run times the share of its iterations done by then, an estimate). "
                  "Medians over the runs that reached it.")
    opt_body = [[m, json.dumps(o, sort_keys=True) if o else "(defaults)"]
                for m, o in meta.get("methods", {}).items() if m in methods]
    errors = [r for r in rows if r["status"] == "error"]
    err_body = [[r["cell"], r["method"], str(r["seed"]), r["message"][:200]] for r in errors[:30]]
    sections = [("Summary per method", None, t_head, t_body),
                ("Per cell and method", None, head, body)]
    if work_body:
        sections.append((f"Work to reach {ref}'s final loss", work_intro, work_head, work_body))
    if slope_body:
        sections.append(("Scaling (log-log slopes)", None, slope_head, slope_body))
    if opt_body:
        sections.append(("Method options", None, ["method", "options"], opt_body))
    if err_body:
        sections.append((f"Errors ({len(errors)} runs)", None, ["cell", "method", "seed", "message"],
                         err_body))
    return sections


def _intro(meta, rows, name, cells, methods) -> list[str]:
    """The report's opening paragraphs (markdown inline): suite, source, size, protocol."""
    threshold = to_float(meta.get("success_below", math.inf))
    above = to_float(meta.get("success_above", -math.inf))
    metric = meta.get("success_metric", "train_mse")
    inits = sorted({r["init"] for r in rows})
    crit = (f"a run is reliable when {metric} >= {above:g}" if np.isfinite(above)
            else f"a run converges when {metric} < {threshold:g}" if np.isfinite(threshold)
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
    return intro


def _markdown(name, intro, notices, sections, figures) -> str:
    md = [f"# liftnn bench: {name}", ""] + [p + "\n" for p in intro]
    if notices:
        md += ["## Notes", ""] + [f"- {n}" for n in notices] + [""]
    for title, text, head, body in sections:
        md += [f"## {title}", ""] + ([text, ""] if text else []) + [_md_table(head, body), ""]
    if figures:
        md += ["## Figures", ""]
        for fname, cap in figures:
            md += [f"![{cap}]({fname})", "", f"*{cap}*", ""]
    return "\n".join(md)


def _html(name, intro, notices, sections, figures) -> str:
    h = [(f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>liftnn bench: "
          f"{html.escape(name)}</title><style>{_CSS}</style></head><body>"),
         f"<h1>liftnn bench: {html.escape(name)}</h1>"]
    h += [f"<p>{_md_inline(p)}</p>" for p in intro]
    if notices:
        h += ["<h2>Notes</h2>"] + [f"<div class='note'>{html.escape(n)}</div>" for n in notices]
    for title, text, head, body in sections:
        h.append(f"<h2>{html.escape(title, quote=False)}</h2>")
        if text:
            h.append(f"<p>{html.escape(text)}</p>")
        h.append(_html_table(head, body))
    if figures:
        h += ["<h2>Figures</h2>"]
        for fname, cap in figures:
            h.append(f"<figure><img src='{html.escape(fname)}' alt='{html.escape(cap)}'>"
                     f"<figcaption>{html.escape(cap)}</figcaption></figure>")
    h.append("</body></html>")
    return "\n".join(h)


def _md_inline(text: str) -> str:
    """Markdown **bold** and `code` in one paragraph -> HTML (everything else escaped)."""
    t = html.escape(text)
    t = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", t)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", t)


def _seed_span(seeds: list[int]) -> str:
    if seeds and seeds == list(range(seeds[0], seeds[-1] + 1)):
        return f"{seeds[0]}..{seeds[-1]}" if len(seeds) > 1 else str(seeds[0])
    return ", ".join(map(str, seeds))
