"""The `liftnn bench`, `liftnn report` and `liftnn demo` commands (registered in liftnn.cli).

    liftnn bench SUITE [--seeds K] [--methods a,b,c] [--out DIR] [--jobs N] [--backend local|ray]
                       [--data DIR] [--quick] [--retry-errors]
    liftnn report DIR
    liftnn demo [--out DIR] [--seeds 10]

Bad input (unknown suite, method or peer, a suite file off its schema, an unwritable or foreign
output directory) exits with status 2 before any run; Ctrl-C exits with 130 keeping finished rows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

DEMO_METHODS = ("alm", "adam", "lm", "torch-adam")
SHIPPED = ", ".join(sorted(p.stem for p in (Path(__file__).parent / "suites").glob("*.toml")))


def _console():
    from rich.console import Console

    return Console(stderr=True)


def _split(methods: str | None) -> list[str] | None:
    if methods is None:
        return None
    names = [m.strip() for m in methods.split(",") if m.strip()]
    return names


def print_table(out: Path, title: str, full: bool = False) -> None:
    """Per cell and method: converged k/N, median time, median train MSE (rich, to stdout)."""
    from rich.console import Console
    from rich.table import Table

    from liftnn.bench import report

    rows = report.load_rows(out)
    meta = report.load_meta(out)
    stats, _, methods, ref = report.aggregate(rows, meta)
    table = Table(title=title)
    word = report.success_word(meta)
    for col in ("cell", "method", word, "median time (s)", "median train MSE"):
        table.add_column(col, justify="left" if col in ("cell", "method") else "right")
    if ref:
        table.add_column(f"time / {ref}", justify="right")
    if full:
        table.add_column("best train MSE", justify="right")
    prev = None
    for s in stats:
        conv = f"{s['converged']}/{s['runs']}" + (f" ({s['errors']} err)" if s["errors"] else "")
        cells = [s["cell"] if s["cell"] != prev else "", s["method"], conv,
                 report._fmt_num(s["median_time"]), report._fmt_num(s["median_mse"])]
        if ref:
            cells.append(report._fmt_num(s["time_ratio"]) + "x" if s["time_ratio"] == s["time_ratio"]
                         else "-")
        if full:
            cells.append(report._fmt_num(s["best_mse"]))
        table.add_row(*cells, end_section=False)
        prev = s["cell"]
    Console().print(table)
    totals = report.method_totals(stats, methods, None)
    for t in totals:
        Console().print(f"  {t['method']}: {word} {t['converged']}, median time {t['time']} s")


def _run(suite, out: Path, jobs, backend, retry_errors, console, title) -> None:
    from liftnn.bench.runner import BenchInterrupted, run_suite
    from liftnn.cli import fail
    from liftnn.errors import LiftnnError

    try:
        summary = run_suite(suite, out, jobs=jobs, backend=backend, retry_errors=retry_errors,
                            console=console)
    except BenchInterrupted as exc:
        s = exc.summary
        console.print(f"[yellow]interrupted[/]: {s.written} runs written this time; {out}/results.csv "
                      f"keeps every finished run; rerun the same command to resume")
        raise typer.Exit(130)
    except LiftnnError as exc:
        fail(str(exc))
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
):
    """Run a benchmark suite into DIR (results.csv, histories.jsonl, report.md/html, figures).

    Resumable: rerun the same command after an interruption and finished runs are skipped.
    """
    from liftnn.bench.suite import resolve
    from liftnn.cli import fail
    from liftnn.errors import LiftnnError

    console = _console()
    try:
        s = resolve(suite, seeds=seeds, methods=_split(methods), quick=quick, data_dir=data)
    except LiftnnError as exc:
        fail(str(exc))
    out = out if out is not None else Path(f"bench_{s.name}" + ("_quick" if quick else ""))
    _run(s, out, jobs, backend, retry_errors, console, f"{s.name}")


def report(
    out: Annotated[Path, typer.Argument(help="a bench output directory (with results.csv)")],
):
    """Rebuild DIR/report.md, DIR/report.html and the figures from DIR/results.csv."""
    from liftnn.bench.report import build_report
    from liftnn.cli import fail
    from liftnn.errors import LiftnnError

    console = _console()
    try:
        build_report(out, console=console)
    except LiftnnError as exc:
        fail(str(exc))


def demo(
    out: Annotated[Path, typer.Option(help="where the report goes")] = Path("demo_report"),
    seeds: Annotated[int, typer.Option(help="seeds per cell")] = 10,
    jobs: Annotated[int | None, typer.Option(help="worker processes (default min(2, cores))")] = None,
):
    """The thesis sin^2 ReLU comparison: lifted ALM vs Adam vs LM (plus torch Adam if installed).

    ReLU 1-16-16-1 on y = sin(x^2) + noise with n = 20 / 40 / 80, glorot_uniform weights, the
    same initial weights for every method; a run converges when its train MSE < 0.25.
    """
    from liftnn.bench.suite import resolve
    from liftnn.cli import fail
    from liftnn.errors import LiftnnError

    console = _console()
    try:
        s = resolve("thesis-sin2", seeds=seeds, methods=list(DEMO_METHODS), name="demo",
                    cell_filter=lambda c: c.activation == "relu")
    except LiftnnError as exc:
        fail(str(exc))
    _run(s, out, jobs, "local", False, console,
         "liftnn demo: thesis sin^2, ReLU 1-16-16-1 (train MSE < 0.25 = converged)")


def register(app: typer.Typer) -> None:
    """Add bench, report and demo to the liftnn command line."""
    app.command("bench")(bench)
    app.command("report")(report)
    app.command("demo")(demo)
