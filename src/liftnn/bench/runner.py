"""Running a resolved suite: plan the work units, execute them, append their rows to the store.

Work unit = (cell, method, group of seeds).  liftnn methods train a cell's seeds in one
`ln.train(..., seeds=[...])` call (one compiled program for all of them where the method has
`fit_many`: alm, lifted-gn, lm, gn and the first-order methods; a loop otherwise); the per-run
time is the call's wall time, compilation included, divided by the runs in it, and its split
into compile_s and loop_s (liftnn.compile_clock) goes into results.csv.  Peers (liftnn.bench.peers, `fit_peer`) run one
seed per unit; their per-run time is that run's wall time.  Compilation is paid once per (cell,
method) and worker: JAX's caches are cleared when a worker starts a (cell, method) it has not run
before, so a batch never profits from code compiled for an earlier one, and a JAX-based peer
(scipy-lm, scipy-trf) compiles in its first run of a cell on each worker.
Every run of a cell starts from `model.init(seed)` on the same data (data_seed).

Units run in this process (`jobs=1`), in a pool of spawned processes (`jobs>1`; JAX is unsafe after
fork) or as Ray tasks (`backend="ray"`): liftnn.bench.executors.  Only the parent writes: each
finished run is appended to DIR/results.csv at once by liftnn.bench.store, so an interrupted
bench rerun with the same arguments skips finished (cell, method, seed) keys.  A method that raises
is recorded as a row with status "error"; the suite goes on.  Progress and notes go to the
caller's `Hooks` (the command line draws them with rich).  See docs/benchmarks.md.

Peak memory (extras.memory) is the worker process's resident-set peak from
resource.getrusage(RUSAGE_SELF).ru_maxrss, measured in a fresh process per unit (tracemalloc does
not see XLA's buffers); `base_rss_mb` is the same peak just before training (Python, JAX and the
data), so `peak_rss_mb - base_rss_mb` is what the training itself added.
"""

from __future__ import annotations

import itertools
import json
import math
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from liftnn.bench import executors
from liftnn.bench.measure import cell_record, maxrss_mb, measure_run, one_line
from liftnn.bench.methods import base_method, is_peer
from liftnn.bench.store import ERROR, ResultStore, jsonable, prepare_dir, to_float
from liftnn.bench.suite import Cell, Suite
from liftnn.errors import LiftnnError
from liftnn.problem import accuracy

#: clear JAX's compilation caches at the start of every liftnn unit, so each unit's time includes
#: its own compilation (False lets units share compiled code: faster, but not the protocol)
CLEAR_CACHES = True
_COMPILED: set = set()  # (cell, method) pairs this process has run since its caches were cleared


@dataclass(frozen=True)
class Unit:
    """One work unit: a cell, a method with its options and a group of seeds (picklable)."""

    suite: str
    cell: Cell
    method: str
    options: dict
    seeds: tuple
    data_seed: int
    peer: bool
    extras: dict = field(default_factory=dict)
    success_metric: str = "train_mse"
    success_below: float = float("inf")
    success_above: float = float("-inf")
    time_budget: float | None = None
    want_cell_record: bool = False

    @property
    def key(self) -> tuple:
        return (self.cell.label, self.method, self.seeds)

    @property
    def base(self) -> str:
        """The method this unit runs ("alm" for the variant "alm@gd"; see methods.base_method)."""
        return base_method(self.method)



def _error_result(seed: int, exc: BaseException, wall: float) -> dict:
    return {"status": ERROR, "message": one_line(exc), "time_s": wall, "seed": int(seed),
            "traceback": traceback.format_exc(limit=8)}


def _run_liftnn(unit: Unit, model, data) -> list[tuple[int, dict, float, int]]:
    """(seed, result, batch wall, batch size) per seed; a failed batch is rerun seed by seed."""
    import liftnn as ln

    opts = dict(unit.options)
    seeds = list(unit.seeds)
    if unit.time_budget is not None:
        opts["time_budget"] = unit.time_budget * len(seeds)  # per-run budget x runs in the batch
    kw = {"loss": unit.cell.loss, "weight_decay": opts.pop("weight_decay", unit.cell.weight_decay)}
    t0 = time.perf_counter()
    try:
        results = ln.train(model, data, method=unit.base, seeds=seeds, **kw, **opts)
        wall = time.perf_counter() - t0
        return [(s, r, wall, len(seeds)) for s, r in zip(seeds, results)]
    except Exception as exc:  # noqa: BLE001 - recorded, then retried one seed at a time
        if len(seeds) == 1:
            return [(seeds[0], _error_result(seeds[0], exc, time.perf_counter() - t0),
                     time.perf_counter() - t0, 1)]
        batch_msg = one_line(exc)
    out = []
    if unit.time_budget is not None:
        opts["time_budget"] = unit.time_budget
    for s in seeds:
        t1 = time.perf_counter()
        try:
            r = ln.train(model, data, method=unit.base, seeds=[s], **kw, **opts)[0]
            r["message"] = (str(r.get("message", "")) + f" [batch failed ({batch_msg}); rerun "
                            f"alone]").strip()
            out.append((s, r, time.perf_counter() - t1, 1))
        except Exception as exc:  # noqa: BLE001
            out.append((s, _error_result(s, exc, time.perf_counter() - t1),
                        time.perf_counter() - t1, 1))
    return out


def _run_peer(unit: Unit, model, data) -> list[tuple[int, dict, float, int]]:
    from liftnn.bench import peers

    opts = dict(unit.options)
    if unit.time_budget is not None:
        opts["time_budget"] = unit.time_budget
    out = []
    for s in unit.seeds:
        p0 = model.init(int(s))
        t0 = time.perf_counter()
        try:
            r = peers.fit_peer(unit.base, model, data, p0, loss=unit.cell.loss,
                               weight_decay=unit.cell.weight_decay, **opts)
            wall = time.perf_counter() - t0
            r["time_s"] = wall  # wall time of the whole fit, setup included, as for liftnn
            if unit.cell.loss == "cross_entropy":  # as ln.train reports them (liftnn.train)
                r["train_accuracy"] = accuracy(model, r["params"], data.x_train, data.y_train)
                r["test_accuracy"] = (accuracy(model, r["params"], data.x_test, data.y_test)
                                      if len(data.x_test) else math.nan)
            out.append((s, r, wall, 1))
        except Exception as exc:  # noqa: BLE001
            out.append((s, _error_result(s, exc, time.perf_counter() - t0),
                        time.perf_counter() - t0, 1))
    return out



def execute_unit(unit: Unit) -> dict:
    """Run one unit; returns {"rows", "records", "cell_record", "interrupted"} (plain data).

    Exceptions inside a method become "error" rows; KeyboardInterrupt propagates.
    """
    import jax

    import liftnn  # noqa: F401  (float64 on in spawned workers)
    from liftnn.compile_cache import enable_compile_cache

    enable_compile_cache()  # same setting as the parent (LIFTNN_COMPILE_CACHE)

    cell = unit.cell
    if CLEAR_CACHES and (cell.label, unit.method) not in _COMPILED:
        jax.clear_caches()  # each (cell, method) pays its own compilation on this worker
        _COMPILED.add((cell.label, unit.method))
    try:
        data = cell.load_data(unit.data_seed)
        model = cell.model()
    except Exception as exc:  # noqa: BLE001 - a cell that cannot be built: error rows
        results = [(s, _error_result(s, exc, 0.0), 0.0, len(unit.seeds)) for s in unit.seeds]
        return {"rows": [_row(unit, s, r, w, b, None, None) for s, r, w, b in results],
                "records": [], "cell_record": None, "interrupted": False}
    base_rss = maxrss_mb()
    runs = _run_peer(unit, model, data) if unit.peer else _run_liftnn(unit, model, data)
    peak_rss = maxrss_mb()
    rows, records, interrupted = [], [], False
    from liftnn.solvers.result import INTERRUPTED

    for seed, res, wall, bsize in runs:
        if res.get("status") == INTERRUPTED:
            interrupted = True  # the method caught Ctrl-C: not a finished run, not recorded
            continue
        extra, record = {}, {"type": "run", "cell": cell.label, "method": unit.method,
                             "seed": int(seed)}
        if res.get("status") != ERROR:
            try:
                measure_run(unit, model, data, seed, res, extra, record)
            except Exception as exc:  # noqa: BLE001 - the run finished; keep it, say what failed
                record["measure_error"] = one_line(exc)
        else:
            record["traceback"] = res.get("traceback", "")
        if "memory" in unit.extras:
            extra.update(peak_rss_mb=peak_rss, base_rss_mb=base_rss)
        rows.append(_row(unit, seed, res, wall, bsize, model, data, extra))
        records.append(jsonable(record))
    crec = cell_record(unit, data, model) if unit.want_cell_record else None
    return {"rows": rows, "records": records, "cell_record": crec, "interrupted": interrupted}



def _row(unit: Unit, seed, res, wall, bsize, model, data, extra=None) -> dict:
    status = str(res.get("status", ""))
    train = to_float(res.get("train_mse"))
    test = to_float(res.get("test_mse"))
    t = to_float(res.get("time_s", wall))
    nit = res.get("nit")
    nit = int(nit) if nit is not None and status != ERROR else None
    row = {
        "suite": unit.suite, "problem": unit.cell.dataset, "cell": unit.cell.label,
        "method": unit.method, "init": model.init_name if model is not None else unit.cell.init,
        "seed": int(seed), "n": data.n if data is not None else "",
        "arch": unit.cell.arch, "activation": unit.cell.activation,
        "train_mse": train, "test_mse": test, "time_s": t, "iterations": nit,
        "status": status, "message": str(res.get("message", "")).replace("\n", " ")[:400],
        "data_seed": unit.data_seed, "group": unit.cell.group,
        "n_params": model.n_params if model is not None else "",
        "loss": to_float(res.get("fun")), "batch_size": bsize,
        "batch_time_s": to_float(res.get("batch_time_s", wall)),
        "time_per_iter": t / nit if nit else math.nan,
        "outer_iterations": res.get("outer_iterations", ""),
        "nfev": res.get("nfev", ""),
        # liftnn.train's split of time_s (liftnn.compile_clock); peers: not measured (nan)
        "compile_s": to_float(res.get("compile_s")), "loop_s": to_float(res.get("loop_s")),
        "time_budget_s": unit.time_budget if unit.time_budget is not None else "",
    }
    if unit.cell.loss == "cross_entropy":
        row["train_accuracy"] = to_float(res.get("train_accuracy"))
        row["test_accuracy"] = to_float(res.get("test_accuracy"))
    row.update(extra or {})
    metric = to_float(row.get(unit.success_metric, res.get(unit.success_metric)))
    row["success"] = bool(status != ERROR and math.isfinite(metric) and metric < unit.success_below
                          and metric >= unit.success_above)
    return row


# --- planning and running ----------------------------------------------------------------------
def plan_units(suite: Suite, done: set, cells_with_record: set = frozenset()) -> list[Unit]:
    """The units still to run: for each cell and method, the seeds without a row yet.

    liftnn methods: one unit per cell with all its pending seeds (or groups of suite.seed_batch);
    peers: one unit per seed.
    """
    units, have = [], set(cells_with_record)
    for cell in suite.cells:
        for method, opts in suite.methods.items():
            pending = [s for s in suite.seeds if (cell.label, method, int(s)) not in done]
            if not pending or (cell.label, method) in suite.skipped_cells:
                continue
            peer = is_peer(method)
            size = 1 if peer else (suite.seed_batch or len(pending))
            for i in range(0, len(pending), size):
                units.append(Unit(
                    suite=suite.name, cell=cell, method=method, options=dict(opts),
                    seeds=tuple(int(s) for s in pending[i:i + size]), data_seed=suite.data_seed,
                    peer=peer, extras=dict(suite.extras), success_metric=suite.success_metric,
                    success_below=suite.success_below, success_above=suite.success_above,
                    time_budget=suite.time_budget,
                    want_cell_record=cell.label not in have,  # the store keeps the first
                ))
    return units


def _cost(unit: Unit) -> float:
    """A rough size of a unit (runs x samples x weights), to start the biggest units first."""
    kw = unit.cell.data_kw
    m = kw.get("n") or kw.get("m") or 100
    sizes = [int(x) for x in unit.cell.arch.split("-")]
    weights = sum(a * b for a, b in itertools.pairwise(sizes))
    return float(len(unit.seeds)) * float(m) * weights


@dataclass
class RunSummary:
    out: Path
    planned_runs: int
    written: int
    skipped_done: int
    errors: int
    elapsed_s: float
    interrupted: bool = False


class BenchInterrupted(KeyboardInterrupt):
    """Ctrl-C during a bench: finished rows are kept; rerun the same command to resume."""

    def __init__(self, summary: RunSummary):
        super().__init__("interrupted")
        self.summary = summary


def _print_note(kind: str, text: str) -> None:
    print(text if kind in ("plan", "report") else f"{kind}: {text}", file=sys.stderr)


@dataclass
class Hooks:
    """What a running suite tells its caller (the command line draws its progress bar from these).

    note(kind, text): a line of information; kind is "note" (a notice), "skipped" (a method that
        cannot run here: text = "method: why"), "plan" (what will run) or "report" (written).
    start(title, runs): the runs still to do, before the first unit.
    advance(runs, text): `runs` more finished; text = "suite: cell / method".
    Without hooks, notes go to stderr and there is no progress display.
    """

    note: Callable[[str, str], None] = _print_note
    start: Callable[[str, int], None] | None = None
    advance: Callable[[int, str], None] | None = None


def run_suite(suite: Suite, out, *, jobs: int | None = None, backend: str = "local",
              retry_errors: bool = False, hooks: Hooks | None = None,
              report: bool = True) -> RunSummary:
    """Run every pending (cell, method, seed) of `suite` into DIR `out`; returns a summary.

    Checks the output directory and its earlier results before any run; raises LiftnnError on
    bad input and BenchInterrupted (a KeyboardInterrupt) on Ctrl-C, after keeping finished rows.
    """
    hooks = hooks or Hooks()
    if backend not in ("local", "ray"):
        raise LiftnnError(f"unknown backend {backend!r}; choose local or ray")
    if suite.kind == "lectures":
        return _run_lectures(suite, Path(out))
    jobs = executors.default_jobs() if jobs is None else int(jobs)
    if jobs < 1:
        raise LiftnnError(f"--jobs must be >= 1; got {jobs}")
    if suite.max_jobs is not None and jobs > suite.max_jobs:
        hooks.note("note", f"suite {suite.name!r} caps --jobs at {suite.max_jobs} (its timings "
                           f"must not share the CPU)")
        jobs = suite.max_jobs
    if backend == "ray":
        executors.require_ray()
    store = ResultStore(Path(out), suite)
    store.open(retry_errors=retry_errors)
    try:
        return _run(suite, store, jobs, backend, hooks, report)
    finally:
        store.close()


def _units_in_flight(units: list[Unit], jobs: int, backend: str, fresh: bool):
    """The executor for these units: (unit, result or exception) as they finish."""
    if jobs > 1 or backend == "ray":  # biggest first, so no worker idles at the end
        units = sorted(units, key=_cost, reverse=True)
    if backend == "ray":
        return executors.iter_ray(execute_unit, units, jobs, fresh)
    if jobs == 1 and not fresh:
        return executors.iter_inprocess(execute_unit, units)
    return executors.iter_pool(execute_unit, units, jobs, fresh)


def _run(suite, store, jobs, backend, hooks: Hooks, report) -> RunSummary:
    for note in suite.notices:
        hooks.note("note", note)
    for m, why in suite.skipped.items():
        hooks.note("skipped", f"{m}: {why}")
    total = (len(suite.cells) * len(suite.methods) - len(suite.skipped_cells)) * len(suite.seeds)
    units = plan_units(suite, store.done, store.cells_with_record)
    pending = sum(len(u.seeds) for u in units)
    already = total - pending
    fresh = suite.fresh_process or "memory" in suite.extras
    it = _units_in_flight(units, jobs, backend, fresh)
    hooks.note("plan", f"{suite.name}: {len(suite.cells)} cells x {len(suite.methods)} methods x "
                       f"{len(suite.seeds)} seeds = {total} runs; {already} already in "
                       f"{store.csv_path}; {pending} to run in {len(units)} units ({backend}, "
                       f"jobs={jobs})")
    t0 = time.perf_counter()
    written = errors = 0
    interrupted = False
    if hooks.start is not None:
        hooks.start(suite.name, pending)
    try:
        for unit, res in it:
            if isinstance(res, BaseException):
                res = _failed_unit(unit, res)
            written += store.append(res)
            errors += sum(1 for r in res["rows"] if r["status"] == ERROR)
            if hooks.advance is not None:
                hooks.advance(len(unit.seeds), f"{suite.name}: {unit.cell.label} / {unit.method}")
            if res.get("interrupted"):
                raise KeyboardInterrupt
    except KeyboardInterrupt:
        interrupted = True
    finally:
        it.close()
    summary = RunSummary(out=store.out, planned_runs=total, written=written, skipped_done=already,
                         errors=errors, elapsed_s=time.perf_counter() - t0, interrupted=interrupted)
    if interrupted:
        raise BenchInterrupted(summary)
    if report:
        from liftnn.bench.report import build_report

        build_report(store.out, log=lambda text: hooks.note("report", text))
    return summary


def _failed_unit(unit: Unit, exc: BaseException) -> dict:
    """The result of a unit whose worker raised or died: one error row per seed."""
    rows = [_row(unit, s, _error_result(s, exc, 0.0), 0.0, len(unit.seeds), None, None)
            for s in unit.seeds]
    return {"rows": rows, "records": [], "cell_record": None, "interrupted": False}


def _run_lectures(suite: Suite, out: Path) -> RunSummary:
    """kind = "lectures": delegate to liftnn.bench.lectures.run_lectures(out_dir, quick)."""
    from liftnn.bench import lectures

    prepare_dir(out)
    meta_path = out / "suite.json"
    if meta_path.exists():
        try:
            old = json.loads(meta_path.read_text()).get("suite")
        except ValueError:
            old = None
        if old != suite.name:
            raise LiftnnError(f"{out} holds results of suite {old!r}, not {suite.name!r}; choose "
                              f"another --out directory")
    elif (out / "results.csv").exists():
        raise LiftnnError(f"{out} holds a results.csv of another suite; choose another --out")
    meta_path.write_text(json.dumps({"suite": suite.name, "kind": "lectures", "source": suite.source,
                                     "description": suite.description, "quick": suite.quick},
                                    indent=2))
    t0 = time.perf_counter()
    lectures.run_lectures(out, quick=suite.quick)
    return RunSummary(out=out, planned_runs=0, written=0, skipped_done=0, errors=0,
                      elapsed_s=time.perf_counter() - t0)
