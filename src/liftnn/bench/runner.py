"""Running a resolved suite: work units, local processes or Ray, and a crash-safe results store.

Work unit = (cell, method, group of seeds).  liftnn methods train a cell's seeds in one
`ln.train(..., seeds=[...])` call (vectorised with jax.vmap where the method has `fit_many`: alm
and the first-order methods; a loop otherwise); the per-run time is the call's wall time,
compilation included, divided by the runs in it.  Peers (liftnn.bench.peers, `fit_peer`) run one
seed per unit; their per-run time is that run's wall time.  Compilation is paid once per (cell,
method) and worker: JAX's caches are cleared when a worker starts a (cell, method) it has not run
before, so a batch never profits from code compiled for an earlier one, and a JAX-based peer
(scipy-lm, scipy-trf) compiles in its first run of a cell on each worker.
Every run of a cell starts from `model.init(seed)` on the same data (data_seed).

Units run in this process (`jobs=1`), in a pool of spawned processes (`jobs>1`; JAX is unsafe after
fork) or as Ray tasks (`backend="ray"`).  Only the parent writes: each finished run is appended to
DIR/results.csv at once (flush + fsync), its history to DIR/histories.jsonl, so an interrupted
bench rerun with the same arguments skips finished (cell, method, seed) keys.  A method that raises
is recorded as a row with status "error"; the suite goes on.

Peak memory (extras.memory) is the worker process's resident-set peak from
resource.getrusage(RUSAGE_SELF).ru_maxrss, measured in a fresh process per unit (tracemalloc does
not see XLA's buffers); `base_rss_mb` is the same peak just before training (Python, JAX and the
data), so `peak_rss_mb - base_rss_mb` is what the training itself added.
"""

from __future__ import annotations

import contextlib
import csv
import itertools
import json
import math
import multiprocessing as mp
import os
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from liftnn.bench.suite import Cell, Suite, base_method, known_methods
from liftnn.errors import LiftnnError

ERROR = "error"
BASE_COLUMNS = ["suite", "problem", "cell", "method", "init", "seed", "n", "arch", "activation",
                "train_mse", "test_mse", "time_s", "iterations", "success", "status", "message"]
COMMON_COLUMNS = ["data_seed", "group", "n_params", "loss", "batch_size", "batch_time_s",
                  "time_per_iter", "iter_time_s", "outer_iterations", "nfev"]
EXTRA_COLUMNS = {
    "freerun": ["freerun_mse"],
    "memory": ["peak_rss_mb", "base_rss_mb"],
    "grad_norms": ["grad_norms_init"],
    "time_budget": ["time_budget_s"],
}
HISTORY_KEYS = ("iter", "loss", "train_mse", "grad_norm", "time", "h_inf", "beta")
MAX_HISTORY = 400
#: clear JAX's compilation caches at the start of every liftnn unit, so each unit's time includes
#: its own compilation (False lets units share compiled code: faster, but not the protocol)
CLEAR_CACHES = True
_COMPILED: set = set()  # (cell, method) pairs this process has run since its caches were cleared


def columns_for(suite: Suite) -> list[str]:
    """results.csv columns of a suite: the base ones, common ones, then its extras."""
    cols = BASE_COLUMNS + COMMON_COLUMNS
    for key, extra in EXTRA_COLUMNS.items():
        if key in suite.extras or (key == "time_budget" and suite.time_budget is not None):
            cols = cols + extra
    return cols


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
    time_budget: float | None = None
    want_cell_record: bool = False

    @property
    def key(self) -> tuple:
        return (self.cell.label, self.method, self.seeds)


# --- executing one unit (in a worker) ---------------------------------------------------------
def _cache_state() -> str:
    """How compilation was paid for: recorded so warm-cache timings are never read as cold ones."""
    from liftnn.compile_cache import active_dir

    d = active_dir()
    if d is None:
        return "off (every process compiles)"
    n = sum(1 for _ in Path(d).glob("*")) if Path(d).is_dir() else 0
    return f"on: {d} ({n} entries when this run started)"


def _maxrss_mb() -> float:
    try:
        import resource
    except ImportError:  # pragma: no cover - not on Windows
        return float("nan")
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / 2**20 if sys.platform == "darwin" else r / 2**10


def _num(v) -> float:
    try:
        v = float(v)
    except (TypeError, ValueError):
        return float("nan")
    return v


def _jsonable(v, sig: int = 7):
    """Floats (also inside lists / arrays) rounded to `sig` digits, NaN/inf -> None."""
    if isinstance(v, np.ndarray):
        v = v.tolist()
    if isinstance(v, (list, tuple)):
        return [_jsonable(x, sig) for x in v]
    if isinstance(v, dict):
        return {k: _jsonable(x, sig) for k, x in v.items()}
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        f = float(v)
        return float(f"{f:.{sig}g}") if math.isfinite(f) else None
    return v if isinstance(v, str) or v is None else str(v)


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
            out.append({k: _jsonable(e[k]) for k in HISTORY_KEYS if k in e})
    return out


def steady_iter_time(history) -> float:
    """Seconds per iteration after the first one (compilation excluded), from a history.

    (time of the last entry - time of entry 1) / (iterations between them), counting
    iterations by the cumulative "njev" (Jacobian / gradient evaluations: Gauss-Newton
    iterations for alm, epochs for first-order methods) where every entry has it, else "iter".
    NaN with fewer than three timed entries.
    """
    h = [e for e in (history or []) if isinstance(e, dict) and math.isfinite(_num(e.get("time")))]
    if len(h) < 3:
        return math.nan
    key = "njev" if all("njev" in e for e in h) else "iter"
    dk = _num(h[-1].get(key)) - _num(h[1].get(key))
    dt = _num(h[-1]["time"]) - _num(h[1]["time"])
    return dt / dk if dk > 0 and dt >= 0 else math.nan


def _grad_norms(model, params, data, cell: Cell) -> list[float]:
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


def _one_line(exc: BaseException) -> str:
    msg = f"{type(exc).__name__}: {exc}".replace("\n", " ").strip()
    return msg[:400]


def _error_result(seed: int, exc: BaseException, wall: float) -> dict:
    return {"status": ERROR, "message": _one_line(exc), "time_s": wall, "seed": int(seed),
            "traceback": traceback.format_exc(limit=8)}


def _run_liftnn(unit: Unit, model, data) -> list[tuple[int, dict, float, int]]:
    """(seed, result, batch wall, batch size) per seed; a failed batch is rerun seed by seed."""
    import liftnn as ln

    opts = dict(unit.options)
    seeds = list(unit.seeds)
    if unit.time_budget is not None:
        opts["time_budget"] = unit.time_budget * len(seeds)  # per-run budget x runs in the batch
    kw = {"loss": unit.cell.loss, "weight_decay": unit.cell.weight_decay}
    t0 = time.perf_counter()
    try:
        results = ln.train(model, data, method=base_method(unit.method), seeds=seeds, **kw, **opts)
        wall = time.perf_counter() - t0
        return [(s, r, wall, len(seeds)) for s, r in zip(seeds, results)]
    except Exception as exc:  # noqa: BLE001 - recorded, then retried one seed at a time
        if len(seeds) == 1:
            return [(seeds[0], _error_result(seeds[0], exc, time.perf_counter() - t0),
                     time.perf_counter() - t0, 1)]
        batch_msg = _one_line(exc)
    out = []
    if unit.time_budget is not None:
        opts["time_budget"] = unit.time_budget
    for s in seeds:
        t1 = time.perf_counter()
        try:
            r = ln.train(model, data, method=base_method(unit.method), seeds=[s], **kw, **opts)[0]
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
            r = peers.fit_peer(base_method(unit.method), model, data, p0, loss=unit.cell.loss,
                               weight_decay=unit.cell.weight_decay, **opts)
            wall = time.perf_counter() - t0
            r["time_s"] = wall  # wall time of the whole fit, setup included, as for liftnn
            out.append((s, r, wall, 1))
        except Exception as exc:  # noqa: BLE001
            out.append((s, _error_result(s, exc, time.perf_counter() - t0),
                        time.perf_counter() - t0, 1))
    return out


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


def _cell_record(unit: Unit, data, model=None) -> dict | None:
    """Data needed to redraw fit / free-run figures without rerunning (1-D or NARX cells), and
    the time of one full-batch forward + backward pass (the work unit of the report)."""
    rec = {"type": "cell", "cell": unit.cell.label, "dataset": unit.cell.dataset}
    if model is not None:
        try:
            rec["fwd_bwd_s"] = fwd_bwd_seconds(model, data, unit.cell.loss)
        except Exception as exc:  # noqa: BLE001 - the measure is optional; say why it is missing
            rec["fwd_bwd_error"] = _one_line(exc)
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
    return _jsonable(rec)


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
    base_rss = _maxrss_mb()
    runs = _run_peer(unit, model, data) if unit.peer else _run_liftnn(unit, model, data)
    peak_rss = _maxrss_mb()
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
                _measure(unit, model, data, seed, res, extra, record)
            except Exception as exc:  # noqa: BLE001 - the run finished; keep it, say what failed
                record["measure_error"] = _one_line(exc)
        else:
            record["traceback"] = res.get("traceback", "")
        if "memory" in unit.extras:
            extra.update(peak_rss_mb=peak_rss, base_rss_mb=base_rss)
        rows.append(_row(unit, seed, res, wall, bsize, model, data, extra))
        records.append(_jsonable(record))
    cell_record = _cell_record(unit, data, model) if unit.want_cell_record else None
    return {"rows": rows, "records": records, "cell_record": cell_record, "interrupted": interrupted}


def _measure(unit: Unit, model, data, seed, res, extra: dict, record: dict) -> None:
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
            record["freerun_error"] = _one_line(exc)
    if "grad_norms" in unit.extras:
        try:
            extra["grad_norms_init"] = json.dumps(_jsonable(_grad_norms(model, model.init(int(seed)),
                                                                       data, unit.cell), 4))
        except Exception as exc:  # noqa: BLE001
            extra["grad_norms_init"] = ""
            record["grad_norms_error"] = _one_line(exc)
    if data.d_in == 1 and data.d_out == 1 and params is not None:
        try:
            xs = data.x_test if len(data.x_test) else data.x_train
            order = np.argsort(xs[:, 0])
            xs = xs[order]
            record["fit"] = {"x": xs[:, 0], "y": np.asarray(model.apply(params, xs))[:, 0]}
        except Exception as exc:  # noqa: BLE001
            record["fit_error"] = _one_line(exc)


def _row(unit: Unit, seed, res, wall, bsize, model, data, extra=None) -> dict:
    status = str(res.get("status", ""))
    train = _num(res.get("train_mse"))
    test = _num(res.get("test_mse"))
    t = _num(res.get("time_s", wall))
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
        "loss": _num(res.get("fun")), "batch_size": bsize,
        "batch_time_s": _num(res.get("batch_time_s", wall)),
        "time_per_iter": t / nit if nit else math.nan,
        "outer_iterations": res.get("outer_iterations", ""),
        "nfev": res.get("nfev", ""),
        "time_budget_s": unit.time_budget if unit.time_budget is not None else "",
    }
    row.update(extra or {})
    metric = _num(row.get(unit.success_metric, res.get(unit.success_metric)))
    row["success"] = bool(status != ERROR and math.isfinite(metric) and metric < unit.success_below)
    return row


# --- the results store (parent only) -----------------------------------------------------------
def _fmt(v) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return "nan" if math.isnan(v) else repr(v)
    return str(v)


def check_writable(out: Path) -> None:
    """Create `out` (and parents) and prove a file can be written there, or raise LiftnnError."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise LiftnnError(f"output directory {out} exists and is not a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{os.getpid()}"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise LiftnnError(f"output directory {out} is not writable: {exc.strerror or exc}") from None


def read_rows(path: Path) -> list[dict]:
    """The rows of a results.csv (strings)."""
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


class ResultStore:
    """DIR/results.csv + DIR/histories.jsonl + DIR/suite.json, written by the parent only."""

    def __init__(self, out: Path, suite: Suite):
        self.out = Path(out)
        self.suite = suite
        self.columns = columns_for(suite)
        self.csv_path = self.out / "results.csv"
        self.hist_path = self.out / "histories.jsonl"
        self.meta_path = self.out / "suite.json"
        self.done: set[tuple[str, str, int]] = set()
        self.cells_with_record: set[str] = set()
        self._lock = None

    # -- opening: all checks happen here, before any run
    def open(self, retry_errors: bool = False) -> None:
        check_writable(self.out)
        self._acquire_lock()
        meta = self._read_meta()
        if self.csv_path.exists():
            self._repair_tail(self.csv_path)
            rows = read_rows(self.csv_path)
            with open(self.csv_path, newline="") as fh:
                header = next(csv.reader(fh), [])
            other = {r.get("suite") for r in rows} - {self.suite.name}
            if other:
                raise LiftnnError(f"{self.csv_path} holds results of suite {min(other)!r}, not "
                                  f"{self.suite.name!r}; choose another --out directory")
            if meta is None and rows:
                raise LiftnnError(f"{self.csv_path} exists without {self.meta_path.name}; cannot tell "
                                  f"which configuration made it; choose another --out directory")
            if header and header != self.columns:
                raise LiftnnError(f"{self.csv_path} has different columns than suite "
                                  f"{self.suite.name!r} writes; choose another --out directory")
            if retry_errors:
                kept = [r for r in rows if r.get("status") != ERROR]
                if len(kept) != len(rows):
                    self._rewrite(kept)
                rows = kept
            for r in rows:
                self.done.add((r["cell"], r["method"], int(r["seed"])))
        if self.hist_path.exists():
            self._repair_tail(self.hist_path)
            with open(self.hist_path) as fh:
                for line in fh:
                    if line.startswith('{"type": "cell"'):
                        try:
                            self.cells_with_record.add(json.loads(line)["cell"])
                        except (ValueError, KeyError):
                            pass
        self._write_meta(meta)

    def _acquire_lock(self) -> None:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: no lock
            return
        fh = open(self.out / ".bench.lock", "w")  # noqa: SIM115 - held open for the whole run
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.close()
            raise LiftnnError(f"another liftnn bench is writing to {self.out}; wait for it or "
                              f"choose another --out directory") from None
        self._lock = fh

    def close(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def _read_meta(self) -> dict | None:
        if not self.meta_path.exists():
            return None
        try:
            meta = json.loads(self.meta_path.read_text())
        except (OSError, ValueError) as exc:
            raise LiftnnError(f"{self.meta_path} is unreadable ({exc}); choose another --out") from None
        s = self.suite
        if meta.get("suite") != s.name:
            raise LiftnnError(f"{self.out} holds results of suite {meta.get('suite')!r}, not "
                              f"{s.name!r}; choose another --out directory")
        if meta.get("kind", "train") != s.kind:
            raise LiftnnError(f"{self.out} holds a {meta.get('kind')!r} suite; choose another --out")
        if s.kind == "train" and meta.get("hash") != s.config_hash():
            old = meta.get("config", {})
            new = s.config()
            diff = [k for k in sorted(set(old) | set(new))
                    if json.dumps(old.get(k), sort_keys=True, default=str)
                    != json.dumps(new.get(k), sort_keys=True, default=str)]
            raise LiftnnError(
                f"{self.out} holds results of suite {s.name!r} made with a different configuration "
                f"({', '.join(diff) or 'config'} differ{'s' if len(diff) == 1 else ''}; e.g. --quick "
                f"or --data changed); rerun with the same arguments or choose another --out")
        hashes = s.method_hashes()
        for m, h in meta.get("method_hashes", {}).items():
            if m in hashes and hashes[m] != h:
                raise LiftnnError(f"{self.out} holds {m!r} runs made with other options than "
                                  f"{s.source} gives now; choose another --out directory")
        return meta

    def _write_meta(self, meta: dict | None) -> None:
        import liftnn

        s = self.suite
        meta = dict(meta or {})
        methods = dict(meta.get("methods", {}))
        methods.update(s.methods)
        hashes = dict(meta.get("method_hashes", {}))
        hashes.update(s.method_hashes())
        skipped = {k: v for k, v in {**meta.get("skipped", {}), **s.skipped}.items()
                   if k not in s.methods}
        seeds = sorted(set(meta.get("seeds", [])) | set(s.seeds))
        meta.update(
            suite=s.name, kind=s.kind, hash=s.config_hash(), config=s.config(), source=s.source,
            description=s.description, notes=s.notes, methods=methods, method_hashes=hashes,
            skipped=skipped, seeds=seeds, reference=s.reference, quick=s.quick,
            success_metric=s.success_metric, success_below=s.success_below,
            notices=list(dict.fromkeys(meta.get("notices", []) + s.notices)),
            columns=self.columns, liftnn_version=liftnn.__version__,
            compile_cache=_cache_state(),
            updated=time.strftime("%Y-%m-%d %H:%M:%S"),
        )
        meta.setdefault("created", meta["updated"])
        tmp = self.meta_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(_jsonable(meta, 12), indent=2))
        os.replace(tmp, self.meta_path)

    @staticmethod
    def _repair_tail(path: Path) -> None:
        """Drop a partial last line left by a crash in the middle of a write."""
        data = path.read_bytes()
        if data and not data.endswith(b"\n"):
            cut = data.rfind(b"\n") + 1
            with open(path, "r+b") as fh:
                fh.truncate(cut)

    def _rewrite(self, rows: list[dict]) -> None:
        tmp = self.csv_path.with_suffix(".csv.tmp")
        with open(tmp, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=self.columns, extrasaction="ignore")
            w.writeheader()
            w.writerows(rows)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.csv_path)

    # -- appending
    def append(self, result: dict) -> int:
        """Append a unit's rows and records (histories first; the CSV row marks a run done)."""
        recs = list(result.get("records", []))
        cr = result.get("cell_record")
        if cr and cr["cell"] not in self.cells_with_record:
            recs.insert(0, cr)
            self.cells_with_record.add(cr["cell"])
        if recs:
            with open(self.hist_path, "a") as fh:
                fh.writelines(json.dumps(rec) + "\n" for rec in recs)
                fh.flush()
                os.fsync(fh.fileno())
        new = [r for r in result.get("rows", [])
               if (r["cell"], r["method"], int(r["seed"])) not in self.done]
        if not new:
            return 0
        fresh = not self.csv_path.exists() or self.csv_path.stat().st_size == 0
        with open(self.csv_path, "a", newline="") as fh:
            w = csv.writer(fh)
            if fresh:
                w.writerow(self.columns)
            for r in new:
                w.writerow([_fmt(r.get(c, "")) for c in self.columns])
            fh.flush()
            os.fsync(fh.fileno())
        for r in new:
            self.done.add((r["cell"], r["method"], int(r["seed"])))
        return len(new)


# --- planning and running ----------------------------------------------------------------------
def plan_units(suite: Suite, done: set, cells_with_record: set = frozenset()) -> list[Unit]:
    """The units still to run: for each cell and method, the seeds without a row yet.

    liftnn methods: one unit per cell with all its pending seeds (or groups of suite.seed_batch);
    peers: one unit per seed.
    """
    kinds = known_methods()
    units, have = [], set(cells_with_record)
    for cell in suite.cells:
        for method, opts in suite.methods.items():
            pending = [s for s in suite.seeds if (cell.label, method, int(s)) not in done]
            if not pending:
                continue
            peer = kinds.get(base_method(method)) == "peer"
            size = 1 if peer else (suite.seed_batch or len(pending))
            for i in range(0, len(pending), size):
                units.append(Unit(
                    suite=suite.name, cell=cell, method=method, options=dict(opts),
                    seeds=tuple(int(s) for s in pending[i:i + size]), data_seed=suite.data_seed,
                    peer=peer, extras=dict(suite.extras), success_metric=suite.success_metric,
                    success_below=suite.success_below, time_budget=suite.time_budget,
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


def default_jobs() -> int:
    return max(1, min(2, os.cpu_count() or 1))


def _iter_inprocess(units):
    for u in units:
        yield u, execute_unit(u)


def _shutdown(ex, kill: bool) -> None:
    if kill:
        procs = list(getattr(ex, "_processes", {}).values())  # our own worker processes
        ex.shutdown(wait=False, cancel_futures=True)
        for p in procs:
            if p.is_alive():
                p.terminate()
        for p in procs:
            p.join(timeout=5)
    else:
        ex.shutdown(wait=True)


THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


@contextlib.contextmanager
def _worker_threads(workers: int):
    """Share the cores among worker processes: BLAS / OpenMP / XLA threads per worker =
    cores // workers, so parallel units do not oversubscribe the machine (which would slow and
    blur every timing).  Variables the user set are left alone."""
    per = max(1, (os.cpu_count() or 1) // max(1, workers))
    saved = {k: os.environ.get(k) for k in (*THREAD_VARS, "XLA_FLAGS")}
    try:
        for k in THREAD_VARS:
            os.environ.setdefault(k, str(per))
        flags = os.environ.get("XLA_FLAGS", "")
        if per == 1 and "xla_cpu_multi_thread_eigen" not in flags:
            os.environ["XLA_FLAGS"] = (flags + " --xla_cpu_multi_thread_eigen=false").strip()
        yield per
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _iter_pool(units, jobs: int, fresh: bool):
    """Units in spawned worker processes; a unit whose worker died is retried once, alone."""
    ctx = mp.get_context("spawn")
    workers = max(1, min(jobs, len(units)))
    with _worker_threads(workers):  # workers (spawned on demand, also later) read these at start
        yield from _pool_units(units, workers, fresh, ctx)


def _pool_units(units, workers, fresh, ctx):
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    retry = []
    ex = ProcessPoolExecutor(max_workers=workers, mp_context=ctx,
                             max_tasks_per_child=1 if fresh else None)
    kill = True
    try:
        futs = {ex.submit(execute_unit, u): u for u in units}
        for f in as_completed(futs):
            u = futs[f]
            try:
                yield u, f.result()
            except BrokenProcessPool:
                retry.append(u)
            except Exception as exc:  # noqa: BLE001 - e.g. unpicklable result
                yield u, exc
        kill = False
    finally:
        _shutdown(ex, kill)
    for u in retry:  # one fresh process each, so a unit that kills its worker hurts only itself
        ex = ProcessPoolExecutor(max_workers=1, mp_context=ctx, max_tasks_per_child=1)
        kill = True
        try:
            f = ex.submit(execute_unit, u)
            try:
                yield u, f.result()
            except BrokenProcessPool:
                yield u, RuntimeError("the worker process died (out of memory, or a crash in native "
                                      "code)")
            except Exception as exc:  # noqa: BLE001
                yield u, exc
            kill = False
        finally:
            _shutdown(ex, kill)


def _ray():
    try:
        import ray
    except ImportError:
        raise LiftnnError("--backend ray needs Ray, which is not installed: pip install "
                          "'liftnn[ray]' (the `ray` extra)") from None
    return ray


def _iter_ray(units, jobs: int, fresh: bool):
    """Units as Ray tasks: on the cluster at RAY_ADDRESS if set, else a local Ray instance."""
    ray = _ray()
    started = False
    if not ray.is_initialized():
        addr = os.environ.get("RAY_ADDRESS")
        kw = {} if addr else {"num_cpus": jobs}
        ray.init(address=addr, include_dashboard=False, log_to_driver=False, **kw)
        started = True
    task = ray.remote(num_cpus=1, max_calls=1 if fresh else 0)(execute_unit)
    refs = {task.remote(u): u for u in units}
    try:
        while refs:
            ready, _ = ray.wait(list(refs), num_returns=1)
            for r in ready:
                u = refs.pop(r)
                try:
                    yield u, ray.get(r)
                except Exception as exc:  # noqa: BLE001 - task or worker failure
                    yield u, exc
    finally:
        for r in refs:
            with contextlib.suppress(Exception):
                ray.cancel(r, force=True)
        if started:
            ray.shutdown()


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


def run_suite(suite: Suite, out, *, jobs: int | None = None, backend: str = "local",
              retry_errors: bool = False, progress: bool = True, console=None,
              report: bool = True) -> RunSummary:
    """Run every pending (cell, method, seed) of `suite` into DIR `out`; returns a summary.

    Checks the output directory and its earlier results before any run; raises LiftnnError on
    bad input and BenchInterrupted (a KeyboardInterrupt) on Ctrl-C, after keeping finished rows.
    """
    from rich.console import Console

    console = console or Console(stderr=True)
    if backend not in ("local", "ray"):
        raise LiftnnError(f"unknown backend {backend!r}; choose local or ray")
    if suite.kind == "lectures":
        return _run_lectures(suite, Path(out), console)
    jobs = default_jobs() if jobs is None else int(jobs)
    if jobs < 1:
        raise LiftnnError(f"--jobs must be >= 1; got {jobs}")
    if suite.max_jobs is not None and jobs > suite.max_jobs:
        console.print(f"[yellow]note:[/] suite {suite.name!r} caps --jobs at {suite.max_jobs} "
                      f"(its timings must not share the CPU)")
        jobs = suite.max_jobs
    if backend == "ray":
        _ray()
    store = ResultStore(Path(out), suite)
    store.open(retry_errors=retry_errors)
    try:
        return _run(suite, store, jobs, backend, progress, console, report)
    finally:
        store.close()


def _run(suite, store, jobs, backend, progress, console, report) -> RunSummary:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    for note in suite.notices:
        console.print(f"[yellow]note:[/] {note}")
    for m, why in suite.skipped.items():
        console.print(f"[yellow]skipped[/] {m}: {why}")
    total = len(suite.cells) * len(suite.methods) * len(suite.seeds)
    units = plan_units(suite, store.done, store.cells_with_record)
    pending = sum(len(u.seeds) for u in units)
    already = total - pending
    fresh = suite.fresh_process or "memory" in suite.extras
    if jobs > 1 or backend == "ray":  # biggest first, so no worker idles at the end
        units.sort(key=_cost, reverse=True)
    if backend == "ray":
        it = _iter_ray(units, jobs, fresh)
    elif jobs == 1 and not fresh:
        it = _iter_inprocess(units)
    else:
        it = _iter_pool(units, jobs, fresh)
    console.print(f"[bold]{suite.name}[/]: {len(suite.cells)} cells x {len(suite.methods)} methods x "
                  f"{len(suite.seeds)} seeds = {total} runs; {already} already in {store.csv_path}; "
                  f"{pending} to run in {len(units)} units ({backend}, jobs={jobs})")
    t0 = time.perf_counter()
    written = errors = 0
    interrupted = False
    prog = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
                    console=console, disable=not progress, transient=False)
    try:
        with prog:
            task = prog.add_task(suite.name, total=pending)
            for unit, res in it:
                if isinstance(res, BaseException):
                    res = {"rows": [_row(unit, s, _error_result(s, res, 0.0), 0.0, len(unit.seeds),
                                         None, None) for s in unit.seeds],
                           "records": [], "cell_record": None, "interrupted": False}
                n = store.append(res)
                written += n
                errors += sum(1 for r in res["rows"] if r["status"] == ERROR)
                prog.update(task, advance=len(unit.seeds),
                            description=f"{suite.name}: {unit.cell.label} / {unit.method}")
                if res.get("interrupted"):
                    raise KeyboardInterrupt
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if hasattr(it, "close"):
            it.close()
    summary = RunSummary(out=store.out, planned_runs=total, written=written, skipped_done=already,
                         errors=errors, elapsed_s=time.perf_counter() - t0, interrupted=interrupted)
    if interrupted:
        raise BenchInterrupted(summary)
    if report:
        from liftnn.bench.report import build_report

        build_report(store.out, console=console)
    return summary


def _run_lectures(suite: Suite, out: Path, console) -> RunSummary:
    """kind = "lectures": delegate to liftnn.bench.lectures.run_lectures(out_dir)."""
    try:
        from liftnn.bench import lectures
    except ImportError as exc:
        raise LiftnnError(f"suite {suite.name!r} needs liftnn.bench.lectures, which is not "
                          f"available here ({exc})") from None
    if not hasattr(lectures, "run_lectures"):
        raise LiftnnError("liftnn.bench.lectures has no run_lectures(out_dir)")
    check_writable(out)
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
    import inspect

    if "quick" in inspect.signature(lectures.run_lectures).parameters:
        lectures.run_lectures(out, quick=suite.quick)
    else:
        lectures.run_lectures(out)
    return RunSummary(out=out, planned_runs=0, written=0, skipped_done=0, errors=0,
                      elapsed_s=time.perf_counter() - t0)
