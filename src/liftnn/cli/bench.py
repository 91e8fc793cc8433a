"""The `liftnn bench`, `liftnn report` and `liftnn demo` commands (registered in liftnn.cli).

    liftnn bench SUITE [--seeds K] [--methods a,b,c] [--out DIR] [--jobs N] [--backend local|ray]
                       [--data DIR] [--quick] [--retry-errors]
    liftnn bench cv [--seeds K] [--methods a,b,c] [--datasets d,e] [--out DIR] [--retry-errors]
    liftnn bench coverage [--seeds K] [--methods a,b,c] [--datasets d,e] [--out DIR]
    liftnn report DIR
    liftnn demo [--out DIR] [--seeds 10]

Bad input (unknown suite, method or peer, a suite file off its schema, an unwritable or foreign
output directory) exits with status 2 before any run; Ctrl-C exits with 130 keeping finished rows.
The suites, the results.csv columns and resuming are described in docs/benchmarks.md; the work is
done in liftnn.bench (this module only draws the notes, the progress bar and the summary table).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from liftnn.bench import coverage as bench_coverage
from liftnn.bench import cv as bench_cv
from liftnn.bench import report as bench_report
from liftnn.bench import stats
from liftnn.bench.runner import BenchInterrupted, Hooks, run_suite
from liftnn.bench.suite import resolve, suite_names
from liftnn.cli.common import console, split_names
from liftnn.errors import LiftnnError

# the peers a user would pick appear when their extras are installed (skipped with a notice otherwise)
DEMO_METHODS = ("alm", "adam", "lm", "torch-adam", "torch-lm", "sklearn-lbfgs", "sklearn-adam")
SHIPPED = ", ".join(suite_names()) + ", cv, coverage"


def print_table(out: Path, title: str, full: bool = False) -> None:
    """Per cell and method: converged k/N, median time, median train MSE and mean test MSE
    (classification cells: mean test accuracy) (rich, to stdout)."""
    rows = bench_report.load_rows(out)
    meta = bench_report.load_meta(out)
    per_cell, _, methods, ref = stats.aggregate(rows, meta)
    table = Table(title=title)
    word = stats.success_word(meta)
    classify = any("avg_test_acc" in s for s in per_cell)
    for col in ("cell", "method", word, "median time (s)", "median train MSE",
                "mean test accuracy" if classify else "mean test MSE"):
        table.add_column(col, justify="left" if col in ("cell", "method") else "right")
    if ref:
        table.add_column(f"time / {ref}", justify="right")
    if full:
        table.add_column("best train MSE", justify="right")
    prev = None
    for s in per_cell:
        conv = f"{s['converged']}/{s['runs']}" + (f" ({s['errors']} err)" if s["errors"] else "")
        cells = [s["cell"] if s["cell"] != prev else "", s["method"], conv,
                 stats.fmt_num(s["median_time"]), stats.fmt_num(s["median_mse"]),
                 stats.fmt_num(s.get("avg_test_acc", float("nan")) if classify else s["avg_test"])]
        if ref:
            cells.append(stats.fmt_num(s["time_ratio"]) + "x" if s["time_ratio"] == s["time_ratio"]
                         else "-")
        if full:
            cells.append(stats.fmt_num(s["best_mse"]))
        table.add_row(*cells, end_section=False)
        prev = s["cell"]
    Console().print(table)
    totals = stats.method_totals(per_cell, methods, None)
    for t in totals:
        Console().print(f"  {t['method']}: {word} {t['converged']}, median time {t['time']} s")


class _RichHooks(Hooks):
    """The runner's hooks drawn with rich: yellow notes and one progress bar."""

    def __init__(self, console: Console):
        self.console = console
        self.progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                                 MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("eta"),
                                 TimeRemainingColumn(), console=console, transient=False)
        self.task = None
        super().__init__(note=self.print_note, start=self.start_bar, advance=self.advance_bar)

    def print_note(self, kind: str, text: str) -> None:
        if kind == "note":
            self.console.print(f"[yellow]note:[/] {escape(text)}")
        elif kind == "skipped":
            self.console.print(f"[yellow]skipped[/] {escape(text)}")
        else:
            self.console.print(escape(text))

    def start_bar(self, title: str, runs: int) -> None:
        self.task = self.progress.add_task(title, total=runs)

    def advance_bar(self, runs: int, text: str) -> None:
        self.progress.update(self.task, advance=runs, description=escape(text))


def _run(suite, out: Path, jobs, backend, retry_errors, title) -> None:
    hooks = _RichHooks(console)
    try:
        with hooks.progress:
            summary = run_suite(suite, out, jobs=jobs, backend=backend,
                                retry_errors=retry_errors, hooks=hooks)
    except BenchInterrupted as exc:
        s = exc.summary
        console.print(f"[yellow]interrupted[/]: {s.written} runs written this time; {out}/results.csv "
                      f"keeps every finished run; rerun the same command to resume")
        raise typer.Exit(130) from None
    if suite.kind == "lectures":
        console.print(f"seeds-lectures written to {out} in {summary.elapsed_s:.1f} s")
        return
    console.print(f"{summary.written} runs written ({summary.skipped_done} already there, "
                  f"{summary.errors} errors) in {summary.elapsed_s:.1f} s -> {out}/results.csv, "
                  f"{out}/report.html")
    for m, why in suite.skipped.items():
        console.print(f"[yellow]skipped[/] {m}: {why}")
    print_table(out, title)


def bench(
    suite: Annotated[str, typer.Argument(help=f"a shipped suite ({SHIPPED}) or the path of a "
                                              f"suite .toml file")],
    seeds: Annotated[int | None, typer.Option(help="run seeds 0..K-1 instead of the suite's")] = None,
    methods: Annotated[str | None, typer.Option(help="comma-separated methods / peers to run "
                                                     "instead of the suite's")] = None,
    out: Annotated[Path | None, typer.Option(help="output directory (default bench_<suite>)")] = None,
    jobs: Annotated[int | None, typer.Option(help="worker processes (default min(2, cores)); "
                                                  "1 runs in this process")] = None,
    backend: Annotated[str, typer.Option(help="local (processes) or ray")] = "local",
    data: Annotated[Path | None, typer.Option(help="directory with real data (e.g. the Santa Fe "
                                                   "series; else LIFTNN_SANTAFE_DIR)")] = None,
    quick: Annotated[bool, typer.Option("--quick", help="reduced cells and seeds (CI smoke run)")] = False,
    retry_errors: Annotated[bool, typer.Option("--retry-errors",
                                               help="rerun the runs recorded with status error")] = False,
    datasets: Annotated[str | None, typer.Option(help="cv and coverage only: comma-separated "
                                                      f"data sets (cv: {', '.join(bench_cv.DATA)}"
                                                      f"; coverage: "
                                                      f"{', '.join(bench_coverage.PROBLEMS)})")] = None,
):
    """Run a benchmark suite into DIR (results.csv, histories.jsonl, report.md/html, figures).

    Resumable: rerun the same command after an interruption and finished runs are skipped.
    `liftnn bench cv` is a user's scikit-learn cross-validation instead (liftnn.bench.cv):
    --methods are estimators (liftnn, alm, lm, adam, ridge, bayesian-ridge, gp, logreg,
    sklearn-lbfgs, sklearn-adam), --seeds the split seeds 0..K-1 (default 1), --datasets the
    data sets (regression and classification; docs/benchmarks.md "Cross-validation").
    `liftnn bench coverage` scores the regressors' predictive intervals (liftnn.bench.coverage):
    --methods are liftnn, liftnn-16-16, bayesian-ridge, gp, --seeds the data draws 0..K-1
    (default 10), --datasets the problems (sin2, friedman1, diabetes; docs/benchmarks.md
    "Predictive intervals").
    """
    if suite == "cv":
        _cv(out, seeds, methods, datasets, retry_errors)
        return
    if suite == "coverage":
        _coverage(out, seeds, methods, datasets)
        return
    if datasets is not None:
        raise LiftnnError("--datasets is an option of `liftnn bench cv` and `liftnn bench "
                          "coverage`; a suite names its data in its .toml file")
    s = resolve(suite, seeds=seeds, methods=split_names(methods), quick=quick, data_dir=data)
    out = out if out is not None else Path(f"bench_{s.name}" + ("_quick" if quick else ""))
    _run(s, out, jobs, backend, retry_errors, f"{s.name}")


def _with_progress(title: str, keeps: str, describe, run):
    """run(on_row) under a progress bar whose text is describe(row) of the latest row (errors
    printed in red); Ctrl-C exits 130 saying that `keeps` holds the finished rows."""
    progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                        MofNCompleteColumn(), TimeElapsedColumn(), console=console)
    with progress:
        task = progress.add_task(title, total=None)

        def on_row(row, done, total):
            progress.update(task, completed=done, total=total, description=escape(describe(row)))
            if row.get("status") != "ok":
                console.print(f"[red]error[/] {escape(str(row.get('error')))}")

        try:
            return run(on_row)
        except KeyboardInterrupt:
            console.print(f"[yellow]interrupted[/]: {keeps}; rerun the same command to resume")
            raise typer.Exit(130) from None


def _cv(out, seeds, methods, datasets, retry_errors) -> None:
    """`liftnn bench cv`: the cells with a progress bar, then the summary table and report.md."""
    estimators = split_names(methods) or list(bench_cv.DEFAULT_ESTIMATORS)
    data = split_names(datasets) or list(bench_cv.DEFAULT_DATA)
    splits = list(range(1 if seeds is None else seeds))
    bench_cv.check(estimators, data, splits)
    out = out if out is not None else Path("bench_cv")
    rows = _with_progress(
        "bench cv", f"{out}/cv.jsonl keeps every finished cell",
        lambda row: f"{row['data']} split {row['split']} {row['estimator']}: "
                    f"{row.get('score', 'error')}",
        lambda on_row: bench_cv.run(out, estimators, data, splits, on_row, retry_errors))
    path = bench_cv.write_report(out, rows)
    table = Table(title=f"liftnn bench cv: {bench_cv.FOLDS}-fold cross_val_score, cold")
    for col in ("data", "estimator", "metric", "train", "mean", "margin vs linear", "wins",
                "median wall (s)", f"time / {bench_cv.TIME_REFERENCE}", "linear kept"):
        table.add_column(col, justify="left" if col in ("data", "estimator") else "right")
    for s in bench_cv.summarise([r for r in rows if r["estimator"] in estimators
                                 and r["data"] in data and r["split"] in splits]):
        table.add_row(s["data"], s["estimator"], s["metric"], f"{s['train_score']:.4f}",
                      f"{s['score']:.4f}",
                      f"{s['margin']:+.4f}",
                      "" if s["wins"] is None else f"{s['wins']}/{s['splits']}",
                      f"{s['wall_s']:.2f}", f"{s['time_ratio']:.1f}x", s["linear_kept"])
    Console().print(table)
    console.print(f"-> {out}/cv.jsonl, {path}, {out}/cv.png")


def _coverage(out, seeds, methods, datasets) -> None:
    """`liftnn bench coverage`: the fits with a progress bar, then the summary table and
    report.md."""
    estimators = split_names(methods) or list(bench_coverage.ESTIMATORS)
    problems = split_names(datasets) or list(bench_coverage.PROBLEMS)
    draws = list(range(bench_coverage.DEFAULT_DRAWS if seeds is None else seeds))
    bench_coverage.check(estimators, problems, draws)
    out = out if out is not None else Path("bench_coverage")
    rows = _with_progress(
        "bench coverage", f"{out}/coverage.jsonl keeps every finished fit",
        lambda row: f"{row['problem']} draw {row['draw']} {row['estimator']}: "
                    + (f"coverage {row['coverage']:.3f}" if row.get("status") == "ok"
                       else "error"),
        lambda on_row: bench_coverage.run(out, estimators, problems, draws, on_row))
    path = bench_coverage.write_report(out, rows)
    lo, hi = bench_coverage.BAND
    table = Table(title=f"liftnn bench coverage: mean ± 1.96 std over {len(draws)} data draws "
                        f"(nominal 0.95, band {lo}-{hi})")
    for col in ("problem", "estimator", "coverage", "range", "in band", "±1 std", "std",
                "noise", "RMSE", "NLPD"):
        table.add_column(col, justify="left" if col in ("problem", "estimator") else "right")
    for s in bench_coverage.summarise([r for r in rows if r["estimator"] in estimators
                                       and r["problem"] in problems and r["draw"] in draws]):
        table.add_row(s["problem"], s["estimator"], f"{s['coverage']:.3f}",
                      f"{s['coverage_min']:.2f}-{s['coverage_max']:.2f}",
                      f"{s['in_band']}/{s['draws']}", f"{s['coverage_1sd']:.3f}",
                      f"{s['mean_std']:.3f}",
                      "" if s["noise_rms"] != s["noise_rms"] else f"{s['noise_rms']:.3f}",
                      f"{s['rmse']:.3f}", f"{s['nlpd']:.3f}")
    Console().print(table)
    console.print(f"-> {out}/coverage.jsonl, {path}, {out}/coverage.png")


def report(
    out: Annotated[Path, typer.Argument(help="a bench output directory (with results.csv)")],
):
    """Rebuild DIR/report.md, DIR/report.html and the figures from DIR/results.csv."""
    bench_report.build_report(out, log=console.print)


def demo(
    out: Annotated[Path, typer.Option(help="where the report goes")] = Path("demo_report"),
    seeds: Annotated[int, typer.Option(help="seeds per cell")] = 10,
    jobs: Annotated[int | None, typer.Option(help="worker processes (default min(2, cores))")] = None,
):
    """The thesis sin^2 ReLU comparison: lifted ALM vs Adam vs LM, plus the installed peers
    (torch Adam, torch-lm, scikit-learn lbfgs / adam).

    ReLU 1-16-16-1 on y = sin(x^2) + noise with n = 20 / 40 / 80, glorot_uniform weights, the
    same initial weights for every method; a run converges when its train MSE < 0.25.
    """
    s = resolve("thesis-sin2", seeds=seeds, methods=list(DEMO_METHODS), name="demo",
                cell_filter=lambda c: c.activation == "relu")
    _run(s, out, jobs, "local", False,
         "liftnn demo: thesis sin^2, ReLU 1-16-16-1 (train MSE < 0.25 = converged)")
