"""Benchmark suites: declarative TOML files, validated against a schema and resolved into cells.

A suite file (the shipped ones live in liftnn/bench/suites/*.toml; copy one and edit it) has
these tables, checked by liftnn.bench.schema; unknown keys are errors that name the key and the
file (docs/benchmarks.md lists the shipped suites and what a bench directory holds):

    [suite]                      # what is compared and how a run is judged
    name = "thesis-sin2"         # required; recorded in every row
    kind = "train"               # "train" (default) or "lectures" (delegates to bench.lectures)
    description = "..."
    seeds = 20                   # K (seeds 0..K-1) or an explicit list [0, 5, 7]
    data_seed = 0                # seed of the data (noise draws): the same data for every run
    success_metric = "train_mse" # train_mse | test_mse | freerun_mse
    success_below = 0.25         # a run "converges" when metric < success_below
    # success_metric = "test_accuracy"; success_above = 0.9   # accuracies (train_accuracy,
    #                              # test_accuracy; cross_entropy cells): metric >= success_above
    reference = "adam"           # the method the report's time ratios divide by
    seed_batch = 0               # seeds per vectorised liftnn batch (0: all seeds of a cell at once)
    time_budget = 5.0            # optional per-run time budget (s) given to every method
    max_jobs = 1                 # optional cap on --jobs (timing-sensitive suites)
    fresh_process = false        # one worker process per work unit (peak-memory measurements)
    jacobian_figure = false      # the report draws the lifted Jacobian's spy plots (the thesis's
                                 # figs. 3.2 / 3.3; meaningful only where the suite is about them)
    notes = "..."                # free text copied into the report

    [problem]                    # the data set every cell uses unless a cell overrides it
    dataset = "sin2"             # a liftnn.datasets name
    kw = { noise = 0.1 }         # keyword arguments of liftnn.datasets.load
    real_dataset = "santafe"     # optional: use this data set when a data directory is given
    data_dir_env = "LIFTNN_SANTAFE_DIR"  # ... by this environment variable or `--data DIR`
    data_dir_kw = "data_dir"     # ... passed to the loader under this keyword

    [model]                      # defaults for every cell
    activation = "tanh"; output_activation = "identity"; bias = true
    init = "glorot_uniform"      # or a list: every cell is run under each initialiser
    weight_decay = 0.0           # mu_w: the objective is loss + mu_w/2 ||theta||^2
    loss = "mse"                 # or "cross_entropy" (classification: one-hot labels; the rows get
                                 # train_accuracy / test_accuracy; a method that cannot train the
                                 # loss, e.g. scipy-lm, is skipped on those cells with a notice)

    [[cells]]                    # one entry per family of cells; list values are swept
    label = "relu n={n}"         # optional template (fields: arch, activation, init, n, data keys)
    group = "m-sweep"            # optional tag (scaling plots draw one panel per group)
    dataset = "teacher"          # optional override of problem.dataset
    arch = "1-16-16-1"           # or a list of architectures
    activation = "relu"          # or a list; plus any [model] key
    n = [20, 40, 80]             # the data set's `n` keyword (a list sweeps)
    data = { d0 = [5, 10], noise = 0.1 }  # more data keywords; list values sweep

    [methods]                    # method name -> options passed to ln.train / fit_peer
    alm = {}
    adam = { lr = 1e-3, patience = 10, max_iter = 4000 }
    "alm@gd" = { relu_mode = "gd" }   # a variant: method "alm", its own options and rows

    [extras]                     # suite-specific measurements (each adds result columns)
    freerun = { steps = 100 }    # NARX free-run prediction of the continuation (freerun_mse)
    grad_norms = true            # per-layer gradient norms at the initial weights
    memory = true                # peak resident memory of the worker process (peak_rss_mb)

    [quick]                      # overlay used by `--quick` (CI smoke runs): tables are merged
    suite = { seeds = 2 }        # into the suite, arrays and values replace; plus
    max_cells = 1                # keep only the first k cells after expansion

Cells are expanded as the product of their list-valued fields, in the order
init x dataset x arch x activation x data keywords (n first), so a sweep reads left to right.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path

from liftnn.bench.methods import (
    base_method,
    check_known,
    check_method_options,
    is_peer,
    known_methods,
    method_available,
    supports_loss,
)
from liftnn.bench.schema import MODEL_KEYS, overlay, validate
from liftnn.errors import LiftnnError

SUITES_DIR = Path(__file__).parent / "suites"


# --- finding and reading suite files -----------------------------------------------------------
def suite_names() -> list[str]:
    """Names of the suites shipped with liftnn."""
    return sorted(p.stem for p in SUITES_DIR.glob("*.toml"))


def suite_path(name_or_path: str | os.PathLike) -> Path:
    """A shipped suite's file, or the given path to a user's suite file."""
    s = str(name_or_path)
    p = Path(s).expanduser()
    if s.endswith(".toml") or os.sep in s or p.is_file():
        if not p.is_file():
            raise LiftnnError(f"suite file {s} does not exist")
        return p
    shipped = SUITES_DIR / f"{s}.toml"
    if not shipped.is_file():
        raise LiftnnError(f"unknown suite {s!r}; choose one of: {', '.join(suite_names())} "
                          f"(or give the path of a .toml suite file)")
    return shipped


def read_suite(name_or_path: str | os.PathLike) -> tuple[dict, Path]:
    """Parse and validate a suite file; returns (document, path)."""
    path = suite_path(name_or_path)
    try:
        with open(path, "rb") as fh:
            doc = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise LiftnnError(f"{path}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise LiftnnError(f"cannot read suite file {path}: {exc}") from None
    return validate(doc, str(path)), path


# --- resolved suites ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Cell:
    """One table cell: a data set (with its keywords) and a network; picklable for workers."""

    label: str
    dataset: str
    data_kw: dict
    arch: str
    activation: str
    output_activation: str = "identity"
    init: str = "glorot_uniform"
    bias: bool = True
    weight_decay: float = 0.0
    loss: str = "mse"
    group: str = ""

    def load_data(self, data_seed: int):
        from liftnn import datasets

        return datasets.load(self.dataset, seed=int(data_seed), **self.data_kw)

    def model(self):
        from liftnn.models import MLP

        return MLP(self.arch, activation=self.activation, output_activation=self.output_activation,
                   bias=self.bias, init=self.init)

    def describe(self) -> dict:
        return asdict(self)


@dataclass
class Suite:
    """A resolved suite: concrete cells, seeds and methods (what a bench run executes)."""

    name: str
    kind: str
    source: str
    description: str = ""
    seeds: list = field(default_factory=list)
    data_seed: int = 0
    cells: list = field(default_factory=list)
    methods: dict = field(default_factory=dict)  # name -> options
    success_metric: str = "train_mse"
    success_below: float = float("inf")
    success_above: float = float("-inf")
    reference: str | None = None
    seed_batch: int = 0
    time_budget: float | None = None
    max_jobs: int | None = None
    fresh_process: bool = False
    jacobian_figure: bool = False
    extras: dict = field(default_factory=dict)
    notes: str = ""
    notices: list = field(default_factory=list)  # printed and written to the report
    skipped: dict = field(default_factory=dict)  # method -> why it was not run
    skipped_cells: dict = field(default_factory=dict)  # (cell label, method) -> why not run there
    quick: bool = False

    def config(self) -> dict:
        """What the rows depend on besides method and seed (hashed into DIR/suite.json)."""
        return {
            "name": self.name, "kind": self.kind, "data_seed": self.data_seed,
            "cells": [c.describe() for c in self.cells],
            "success": [self.success_metric, self.success_below]
            + ([self.success_above] if math.isfinite(self.success_above) else []),
            "time_budget": self.time_budget, "extras": self.extras,
        }

    def config_hash(self) -> str:
        blob = json.dumps(self.config(), sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def method_hashes(self) -> dict:
        return {m: hashlib.sha256(json.dumps(o, sort_keys=True, default=str).encode()).hexdigest()[:16]
                for m, o in self.methods.items()}


def _as_list(v) -> list:
    return v if isinstance(v, list) else [v]


def _expand_cells(doc: dict, src: str) -> list[Cell]:
    model = doc.get("model", {})
    problem = doc["problem"]
    raw = []  # (entry index, fields dict, data kw, label template, group)
    for i, entry in enumerate(doc["cells"]):
        fields = {k: entry.get(k, model.get(k)) for k in MODEL_KEYS}
        data = dict(problem.get("kw", {}))
        data.update(entry.get("data", {}))
        if "n" in entry:
            data = {"n": entry["n"], **{k: v for k, v in data.items() if k != "n"}}
        inits = _as_list(fields["init"] if fields["init"] is not None else "glorot_uniform")
        dsets = [entry.get("dataset", problem["dataset"])]
        archs = _as_list(entry["arch"])
        acts = _as_list(fields["activation"] if fields["activation"] is not None else "tanh")
        dkeys = list(data)
        dvals = [_as_list(data[k]) for k in dkeys]
        for init, ds, arch, act, *dv in itertools.product(inits, dsets, archs, acts, *dvals):
            raw.append((i, {
                "dataset": ds, "data_kw": dict(zip(dkeys, dv)), "arch": str(arch),
                "activation": act, "output_activation": fields["output_activation"] or "identity",
                "init": init, "bias": True if fields["bias"] is None else bool(fields["bias"]),
                "weight_decay": float(fields["weight_decay"] or 0.0),
                "loss": fields["loss"] or "mse", "group": entry.get("group", ""),
            }, entry.get("label")))
    # automatic labels name what varies between cells
    def varies(get):
        return len({json.dumps(get(f), sort_keys=True, default=str) for _, f, _ in raw}) > 1

    show_ds = varies(lambda f: f["dataset"])
    show_init = varies(lambda f: f["init"])
    show_wd = varies(lambda f: f["weight_decay"])
    all_dkeys = []
    for _, f, _ in raw:
        all_dkeys += [k for k in f["data_kw"] if k not in all_dkeys]
    show_dk = [k for k in all_dkeys if varies(lambda f, k=k: f["data_kw"].get(k))]
    cells = []
    for i, f, template in raw:
        if template:
            names = {**f["data_kw"], **f}
            try:
                label = template.format_map(names)
            except (KeyError, ValueError, IndexError) as exc:
                raise LiftnnError(f"{src}: cells[{i}].label {template!r} cannot be filled: {exc}; "
                                  f"fields: {', '.join(sorted(names))}") from None
        else:
            parts = [f["dataset"]] if show_ds else []
            parts += [f["activation"], f["arch"]]
            parts += [f"{k}={f['data_kw'][k]}" for k in show_dk if k in f["data_kw"]]
            if show_wd:
                parts.append(f"wd={f['weight_decay']:g}")
            if show_init:
                parts.append(f["init"])
            label = " ".join(str(p) for p in parts)
        cells.append(Cell(label=label, **f))
    seen = {}
    for c in cells:
        if c.label in seen:
            raise LiftnnError(f"{src}: two cells share the label {c.label!r}; give the [[cells]] "
                              f"entries a label template that tells them apart (e.g. label = "
                              f"\"{{activation}} {{arch}} n={{n}}\")")
        seen[c.label] = c
    return cells


def _check_cells(cells: list[Cell], data_seed: int, src: str) -> None:
    """Build each distinct data set and every network; raise LiftnnError naming the cell."""
    built = {}
    for c in cells:
        key = (c.dataset, json.dumps(c.data_kw, sort_keys=True, default=str))
        try:
            if key not in built:
                built[key] = c.load_data(data_seed)
            data = built[key]
            c.model().check_data(data.x_train[:1], data.y_train[:1])
        except LiftnnError as exc:
            raise LiftnnError(f"{src}: cell {c.label!r}: {exc}") from None
        except TypeError as exc:
            raise LiftnnError(f"{src}: cell {c.label!r}: data set {c.dataset!r} rejects its keywords "
                              f"{c.data_kw}: {exc}") from None


def resolve(name_or_path, *, seeds: int | None = None, methods: list[str] | None = None,
            quick: bool = False, data_dir: str | os.PathLike | None = None,
            check_availability: bool = True, name: str | None = None,
            cell_filter=None, check_data: bool = True) -> Suite:
    """Read, validate and resolve a suite into concrete cells, seeds and methods.

    Args:
        name_or_path: a shipped suite name (suite_names()) or the path of a .toml file.
        seeds: run seeds 0..seeds-1 instead of the file's.
        methods: run these methods (in this order) instead of the file's; options come from the
            file where it configures them.
        quick: apply the file's [quick] overlay (CI smoke size).
        data_dir: directory with real data (e.g. the Santa Fe series), else problem.data_dir_env.
        check_availability: move methods whose module or peer extra is missing to `skipped`.
        name: record the suite under this name (the demo uses "demo").
        cell_filter: optional predicate Cell -> bool selecting cells.
        check_data: build every cell's data set and network once now, so a missing data file,
            a bad data keyword or an architecture that does not fit the data fails before any run.
    Unknown method names, data sets and bad values raise LiftnnError before any run.
    """
    doc, path = read_suite(name_or_path)
    src = str(path)
    if quick and "quick" in doc:
        max_cells = doc["quick"].get("max_cells")
        doc = overlay(doc, doc["quick"])
    else:
        max_cells = None
    s = doc["suite"]
    suite = Suite(name=name or s["name"], kind=s.get("kind", "train"), source=src,
                  description=s.get("description", ""), notes=s.get("notes", ""), quick=quick)
    if suite.kind == "lectures":
        return suite
    _apply_settings(suite, s, doc, seeds, src)
    doc = _real_data(suite, doc, data_dir)
    suite.cells = _select_cells(doc, src, suite.data_seed, cell_filter, max_cells, check_data)
    _choose_methods(suite, doc, methods, path, check_availability)
    ref = s.get("reference")
    if ref is not None and base_method(ref) not in known_methods():
        raise LiftnnError(f"{src}: suite.reference {ref!r} is not a method name")
    suite.reference = ref if ref in suite.methods else None
    return suite


def _apply_settings(suite: Suite, s: dict, doc: dict, seeds: int | None, src: str) -> None:
    """The [suite] settings and [extras] onto `suite` (seeds: --seeds K overrides the file's)."""
    if seeds is not None:
        if int(seeds) < 1:
            raise LiftnnError(f"--seeds must be >= 1; got {seeds}")
        suite.seeds = list(range(int(seeds)))
    else:
        suite.seeds = list(range(s["seeds"])) if isinstance(s["seeds"], int) else list(s["seeds"])
    if len(set(suite.seeds)) != len(suite.seeds):
        raise LiftnnError(f"{src}: suite.seeds has duplicates: {suite.seeds}")
    suite.data_seed = int(s.get("data_seed", 0))
    suite.success_metric = s.get("success_metric", "train_mse")
    suite.success_below = float(s.get("success_below", float("inf")))
    suite.success_above = float(s.get("success_above", float("-inf")))
    suite.seed_batch = int(s.get("seed_batch", 0))
    suite.time_budget = float(s["time_budget"]) if "time_budget" in s else None
    suite.max_jobs = int(s["max_jobs"]) if "max_jobs" in s else None
    suite.fresh_process = bool(s.get("fresh_process", False))
    suite.jacobian_figure = bool(s.get("jacobian_figure", False))
    ex = dict(doc.get("extras", {}))
    if ex.get("freerun") is True:
        ex["freerun"] = {"steps": 100}
    suite.extras = {k: v for k, v in ex.items() if v}


def _real_data(suite: Suite, doc: dict, data_dir) -> dict:
    """The document with [problem] pointed at the real data set when a data directory is given
    (`--data DIR` or the suite's environment variable); else the synthetic stand-in, with a
    notice saying so."""
    problem = doc["problem"]
    if "real_dataset" in problem:
        env = problem.get("data_dir_env")
        ddir = data_dir if data_dir is not None else (os.environ.get(env) if env else None)
        if ddir:
            if not Path(ddir).expanduser().is_dir():
                raise LiftnnError(f"data directory {ddir} does not exist")
            problem = {**problem, "dataset": problem["real_dataset"],
                       "kw": {**problem.get("kw", {}),
                              problem.get("data_dir_kw", "data_dir"): str(Path(ddir).expanduser())}}
            suite.notices.append(f"data: the real {problem['dataset']!r} series from {ddir}")
        else:
            how = f"set {env} or pass --data DIR" if env else "pass --data DIR"
            suite.notices.append(
                f"data: no data directory given ({how}); using the synthetic {problem['dataset']!r} "
                f"stand-in instead of the real {problem['real_dataset']!r} series -- the numbers are "
                f"not comparable with published ones")
        doc = {**doc, "problem": problem}
    elif data_dir is not None:
        raise LiftnnError(f"suite {suite.name!r} takes no data directory (--data)")
    return doc


def _select_cells(doc: dict, src: str, data_seed: int, cell_filter, max_cells, check_data) -> list:
    """The expanded cells, filtered and cut to max_cells, their data sets checked."""
    cells = _expand_cells(doc, src)
    if cell_filter is not None:
        cells = [c for c in cells if cell_filter(c)]
    if max_cells:
        cells = cells[:max_cells]
    if not cells:
        raise LiftnnError(f"{src}: no cells selected")
    from liftnn import datasets

    valid = datasets.names()
    for c in cells:
        if c.dataset not in valid:
            raise LiftnnError(f"{src}: cell {c.label!r}: unknown data set {c.dataset!r}; choose one "
                              f"of: {', '.join(valid)}")
    if check_data:
        _check_cells(cells, data_seed, src)
    return cells


def _choose_methods(suite: Suite, doc: dict, methods, path: Path, check_availability: bool) -> None:
    """suite.methods: the chosen names (checked before any run) with their options from the
    file; unavailable ones moved to suite.skipped with the reason."""
    src = str(path)
    file_methods = dict(doc["methods"])
    chosen = methods if methods is not None else list(file_methods)
    if not chosen:
        raise LiftnnError("no methods given")
    for m in chosen:
        check_known(m)
    if len(set(chosen)) != len(chosen):
        raise LiftnnError(f"methods listed twice: {', '.join(chosen)}")
    for m in chosen:
        opts = dict(file_methods.get(m, {}))
        if m not in file_methods:
            suite.notices.append(f"method {m!r} is not configured in {path.name}; it runs with its "
                                 f"default options")
        check_method_options(m, opts, src)
        suite.methods[m] = opts
    if check_availability:
        for m in list(suite.methods):
            ok, why = method_available(m)
            if not ok:
                suite.skipped[m] = why or "not available"
                del suite.methods[m]
        if not suite.methods:
            raise LiftnnError("none of the methods can run here: " + "; ".join(
                f"{m}: {why}" for m, why in suite.skipped.items()))
    _skip_by_loss(suite)
    _check_peer_setups(suite, src)


def _check_peer_setups(suite: Suite, src: str) -> None:
    """Every peer on every cell it runs: the model, loss and weight decay its library can
    represent (liftnn.bench.peers.check_setup), so that e.g. sklearn-lbfgs with weight_decay > 0,
    which every run would refuse, fails when the suite is read."""
    from liftnn.bench import peers

    for m, opts in suite.methods.items():
        if not is_peer(m):
            continue
        for c in suite.cells:
            if (c.label, m) in suite.skipped_cells:
                continue
            try:
                peers.check_setup(base_method(m), c.model(), loss=c.loss,
                                  weight_decay=c.weight_decay, **opts)
            except LiftnnError as exc:
                raise LiftnnError(f"{src}: method {m!r} cannot run cell {c.label!r}: {exc}") from None


def _skip_by_loss(suite: Suite) -> None:
    """(cell, method) pairs whose loss the method cannot train (e.g. a least-squares-only peer on cross_entropy cells) go to
    suite.skipped_cells with a notice; a method that fits none of the cells goes to skipped."""
    for m in list(suite.methods):
        bad = [(c, why) for c in suite.cells for ok, why in [supports_loss(m, c.loss)] if not ok]
        if not bad:
            continue
        why = bad[0][1]
        if len(bad) == len(suite.cells):
            suite.skipped[m] = why
            del suite.methods[m]
            continue
        for c, w in bad:
            suite.skipped_cells[(c.label, m)] = w
        suite.notices.append(f"method {m!r} is skipped on {len(bad)} cell(s) "
                             f"({', '.join(c.label for c, _ in bad)}): {why}")
    if not suite.methods:
        raise LiftnnError("none of the methods can train these cells' losses: " + "; ".join(
            f"{m}: {why}" for m, why in suite.skipped.items()))
