"""The results store of a bench directory: the results.csv schema, crash-safe appends, resume.

Only the parent process writes.  Each finished run is appended to DIR/results.csv at once (flush
+ fsync) and its history to DIR/histories.jsonl; DIR/suite.json records the configuration, so a
rerun with the same arguments skips the (cell, method, seed) keys already there and a run with
other arguments is refused.  The columns are described in docs/benchmarks.md.
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
from pathlib import Path

import numpy as np

from liftnn.bench.suite import Suite
from liftnn.errors import LiftnnError
from liftnn.models.io import check_writable

ERROR = "error"
BASE_COLUMNS = ["suite", "problem", "cell", "method", "init", "seed", "n", "arch", "activation",
                "train_mse", "test_mse", "time_s", "iterations", "success", "status", "message"]
COMMON_COLUMNS = ["data_seed", "group", "n_params", "loss", "batch_size", "batch_time_s",
                  "time_per_iter", "iter_time_s", "outer_iterations", "nfev", "compile_s", "loop_s"]
EXTRA_COLUMNS = {
    "freerun": ["freerun_mse"],
    "memory": ["peak_rss_mb", "base_rss_mb"],
    "grad_norms": ["grad_norms_init"],
    "time_budget": ["time_budget_s"],
    "accuracy": ["train_accuracy", "test_accuracy"],
}


def to_float(v) -> float:
    """float(v), NaN where v is empty or not a number (CSV cells are strings)."""
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def columns_for(suite: Suite) -> list[str]:
    """results.csv columns of a suite: the base ones, common ones, then its extras."""
    cols = BASE_COLUMNS + COMMON_COLUMNS
    for key, extra in EXTRA_COLUMNS.items():
        if key in suite.extras or (key == "time_budget" and suite.time_budget is not None) or (
                key == "accuracy" and any(c.loss == "cross_entropy" for c in suite.cells)):
            cols = cols + extra
    return cols



def jsonable(v, sig: int = 7):
    """Floats (also inside lists / arrays) rounded to `sig` digits, NaN/inf -> None."""
    if isinstance(v, np.ndarray):
        v = v.tolist()
    if isinstance(v, (list, tuple)):
        return [jsonable(x, sig) for x in v]
    if isinstance(v, dict):
        return {k: jsonable(x, sig) for k, x in v.items()}
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        f = float(v)
        return float(f"{f:.{sig}g}") if math.isfinite(f) else None
    return v if isinstance(v, str) or v is None else str(v)



def cache_state() -> str:
    """How compilation was paid for: recorded so warm-cache timings are never read as cold ones."""
    from liftnn.compile_cache import active_dir

    d = active_dir()
    if d is None:
        return "off (every process compiles)"
    n = sum(1 for _ in Path(d).glob("*")) if Path(d).is_dir() else 0
    return f"on: {d} ({n} entries when this run started)"



# --- the results store (parent only) -----------------------------------------------------------
def csv_cell(v) -> str:
    """A value as results.csv writes it (true/false, nan, repr of floats)."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return "nan" if math.isnan(v) else repr(v)
    return str(v)


def prepare_dir(out: Path) -> None:
    """Create `out` (and parents) and prove a file can be written there, or raise LiftnnError."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise LiftnnError(f"output directory {out} exists and is not a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LiftnnError(f"output directory {out} is not writable: {exc.strerror or exc}") from None
    try:
        check_writable(out / ".write-test")
    except LiftnnError as exc:
        raise LiftnnError(f"output directory {out} is not writable ({exc})") from None


def read_rows(path: Path) -> list[dict]:
    """The rows of a results.csv (strings)."""
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


#: the lock file a running bench holds in its directory (removed when the run ends)
LOCK_NAME = ".bench.lock"


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
        """Take the directory's lock and check what is there (released again if a check fails)."""
        prepare_dir(self.out)
        self._acquire_lock()
        try:
            self._open(retry_errors)
        except BaseException:
            self.close()
            raise

    def _open(self, retry_errors: bool) -> None:
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
        path = self.out / LOCK_NAME
        for _ in range(3):
            fh = open(path, "w")  # noqa: SIM115 - held open for the whole run
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                fh.close()
                raise LiftnnError(f"another liftnn bench is writing to {self.out}; wait for it or "
                                  f"choose another --out directory") from None
            try:  # the holder before us may have removed the file as we opened it: lock anew
                same = os.stat(path).st_ino == os.fstat(fh.fileno()).st_ino
            except FileNotFoundError:
                same = False
            if same:
                self._lock = fh
                return
            fh.close()
        raise LiftnnError(f"could not lock {path}: another liftnn bench keeps replacing it")

    def close(self) -> None:
        """Release the lock and remove the lock file (done at the end of every run, also when
        it fails; liftnn.bench.runner.run_suite calls it in a finally)."""
        if self._lock is not None:
            try:
                (self.out / LOCK_NAME).unlink(missing_ok=True)
            finally:
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
            compile_cache=cache_state(),
            updated=time.strftime("%Y-%m-%d %H:%M:%S"),
        )
        if s.jacobian_figure:  # suites about the lifted Jacobian only
            meta["jacobian_figure"] = True
        if math.isfinite(s.success_above):  # accuracy suites only (older suite.json unchanged)
            meta["success_above"] = s.success_above
        if s.skipped_cells:
            meta["skipped_cells"] = [[c, m, why] for (c, m), why in s.skipped_cells.items()]
        meta.setdefault("created", meta["updated"])
        tmp = self.meta_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(jsonable(meta, 12), indent=2))
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
                w.writerow([csv_cell(r.get(c, "")) for c in self.columns])
            fh.flush()
            os.fsync(fh.fileno())
        for r in new:
            self.done.add((r["cell"], r["method"], int(r["seed"])))
        return len(new)


