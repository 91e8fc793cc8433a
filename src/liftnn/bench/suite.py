"""Benchmark suites: declarative TOML files, validated against a schema and resolved into cells.

A suite file (the shipped ones live in liftnn/bench/suites/*.toml; copy one and edit it) has
these tables; unknown keys are errors that name the key and the file:

    [suite]                      # what is compared and how a run is judged
    name = "thesis-sin2"         # required; recorded in every row
    kind = "train"               # "train" (default) or "lectures" (delegates to bench.lectures)
    description = "..."
    seeds = 20                   # K (seeds 0..K-1) or an explicit list [0, 5, 7]
    data_seed = 0                # seed of the data (noise draws): the same data for every run
    success_metric = "train_mse" # train_mse | test_mse | freerun_mse
    success_below = 0.25         # a run "converges" when metric < success_below
    reference = "adam"           # the method the report's time ratios divide by
    seed_batch = 0               # seeds per vectorised liftnn batch (0: all seeds of a cell at once)
    time_budget = 5.0            # optional per-run time budget (s) given to every method
    max_jobs = 1                 # optional cap on --jobs (timing-sensitive suites)
    fresh_process = false        # one worker process per work unit (peak-memory measurements)
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
    loss = "mse"

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

import copy
import hashlib
import itertools
import json
import os
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from liftnn.errors import LiftnnError

SUITES_DIR = Path(__file__).parent / "suites"
KINDS = ("train", "lectures")
SUCCESS_METRICS = ("train_mse", "test_mse", "freerun_mse")
PEER_NAMES = ("torch-adam", "torch-sgd", "torch-lbfgs", "scipy-lm", "scipy-trf", "ipopt-ms")

# --- schema -------------------------------------------------------------------------------------
# A field spec is (kind, required).  Kinds: str, int, num (int or float), bool, table, seeds
# (int > 0 or list of ints), str* / int* / num* (a value or a list of them: swept), any.
_MODEL_KEYS = {
    "activation": ("str*", False),
    "output_activation": ("str", False),
    "bias": ("bool", False),
    "init": ("str*", False),
    "weight_decay": ("num", False),
    "loss": ("str", False),
}
SCHEMA: dict[str, dict[str, tuple[str, bool]]] = {
    "suite": {
        "name": ("str", True),
        "kind": ("str", False),
        "description": ("str", False),
        "seeds": ("seeds", False),
        "data_seed": ("int", False),
        "success_metric": ("str", False),
        "success_below": ("num", False),
        "reference": ("str", False),
        "seed_batch": ("int", False),
        "time_budget": ("num", False),
        "max_jobs": ("int", False),
        "fresh_process": ("bool", False),
        "notes": ("str", False),
    },
    "problem": {
        "dataset": ("str", True),
        "kw": ("table", False),
        "real_dataset": ("str", False),
        "data_dir_env": ("str", False),
        "data_dir_kw": ("str", False),
    },
    "model": dict(_MODEL_KEYS),
    "cell": {
        "label": ("str", False),
        "group": ("str", False),
        "dataset": ("str", False),
        "arch": ("str*", True),
        "n": ("int*", False),
        "data": ("table", False),
        **_MODEL_KEYS,
    },
    "extras": {
        "freerun": ("table|bool", False),
        "grad_norms": ("bool", False),
        "memory": ("bool", False),
    },
}
TOP_LEVEL = ("suite", "problem", "model", "cells", "methods", "extras", "quick")


def _type_ok(kind: str, v: Any) -> bool:
    is_int = isinstance(v, int) and not isinstance(v, bool)
    is_num = is_int or isinstance(v, float)
    if kind.endswith("*"):
        base = kind[:-1]
        if isinstance(v, list):
            return len(v) > 0 and all(_type_ok(base, x) for x in v)
        return _type_ok(base, v)
    if "|" in kind:
        return any(_type_ok(k, v) for k in kind.split("|"))
    return {
        "str": isinstance(v, str),
        "int": is_int,
        "num": is_num,
        "bool": isinstance(v, bool),
        "table": isinstance(v, dict),
        "seeds": (is_int and v > 0) or (isinstance(v, list) and len(v) > 0
                                         and all(isinstance(x, int) and not isinstance(x, bool)
                                                 and x >= 0 for x in v)),
        "any": True,
    }[kind]


_KIND_WORDS = {"str": "a string", "int": "an integer", "num": "a number", "bool": "true or false",
               "table": "a table", "seeds": "a positive integer or a list of seeds >= 0",
               "table|bool": "a table or true/false", "any": "a value"}


def _kind_words(kind: str) -> str:
    if kind.endswith("*"):
        return f"{_KIND_WORDS[kind[:-1]]} or a non-empty list of them"
    return _KIND_WORDS[kind]


def _check_table(where: str, table: Any, spec: dict, src: str) -> None:
    if not isinstance(table, dict):
        raise LiftnnError(f"{src}: [{where}] must be a table")
    for key, val in table.items():
        if key not in spec:
            raise LiftnnError(f"{src}: unknown key {where}.{key}; valid keys in [{where}]: "
                              f"{', '.join(sorted(spec))}")
        kind, _ = spec[key]
        if not _type_ok(kind, val):
            raise LiftnnError(f"{src}: {where}.{key} must be {_kind_words(kind)}; got {val!r}")
    for key, (_, required) in spec.items():
        if required and key not in table:
            raise LiftnnError(f"{src}: missing required key {where}.{key}")


def validate(doc: dict, src: str = "<suite>") -> dict:
    """Check a parsed suite document against SCHEMA; returns it unchanged or raises LiftnnError."""
    if not isinstance(doc, dict):
        raise LiftnnError(f"{src}: a suite file is a TOML document")
    for key in doc:
        if key not in TOP_LEVEL:
            raise LiftnnError(f"{src}: unknown top-level key {key!r}; valid: {', '.join(TOP_LEVEL)}")
    if "suite" not in doc:
        raise LiftnnError(f"{src}: missing the [suite] table")
    _check_table("suite", doc["suite"], SCHEMA["suite"], src)
    s = doc["suite"]
    kind = s.get("kind", "train")
    if kind not in KINDS:
        raise LiftnnError(f"{src}: suite.kind must be one of {', '.join(KINDS)}; got {kind!r}")
    if kind == "lectures":
        extra = set(doc) - {"suite", "quick"}
        if extra:
            raise LiftnnError(f"{src}: a kind = \"lectures\" suite has only [suite]; found "
                              f"{', '.join(sorted(extra))}")
        return doc
    for key in ("problem", "cells", "methods"):
        if key not in doc:
            raise LiftnnError(f"{src}: missing the [{key}] table" if key != "cells"
                              else f"{src}: missing [[cells]] (at least one cell)")
    if "seeds" not in s:
        raise LiftnnError(f"{src}: missing required key suite.seeds")
    if s.get("success_metric", "train_mse") not in SUCCESS_METRICS:
        raise LiftnnError(f"{src}: suite.success_metric must be one of {', '.join(SUCCESS_METRICS)}; "
                          f"got {s['success_metric']!r}")
    for key in ("seed_batch",):
        if key in s and s[key] < 0:
            raise LiftnnError(f"{src}: suite.{key} must be >= 0; got {s[key]}")
    for key in ("time_budget", "max_jobs"):
        if key in s and not s[key] > 0:
            raise LiftnnError(f"{src}: suite.{key} must be > 0; got {s[key]}")
    _check_table("problem", doc["problem"], SCHEMA["problem"], src)
    _check_table("model", doc.get("model", {}), SCHEMA["model"], src)
    cells = doc["cells"]
    if not isinstance(cells, list) or not cells:
        raise LiftnnError(f"{src}: [[cells]] must be a non-empty array of tables")
    for i, cell in enumerate(cells):
        _check_table(f"cells[{i}]", cell, SCHEMA["cell"], src)
        for k, v in cell.get("data", {}).items():
            if isinstance(v, list) and not v:
                raise LiftnnError(f"{src}: cells[{i}].data.{k} is an empty list")
    methods = doc["methods"]
    if not isinstance(methods, dict) or not methods:
        raise LiftnnError(f"{src}: [methods] must name at least one method")
    for name, opts in methods.items():
        if not isinstance(opts, dict):
            raise LiftnnError(f"{src}: methods.{name} must be a table of options (use {{}} for "
                              f"the defaults); got {opts!r}")
    _check_table("extras", doc.get("extras", {}), SCHEMA["extras"], src)
    fr = doc.get("extras", {}).get("freerun")
    if isinstance(fr, dict):
        for k, v in fr.items():
            if k != "steps" or not (isinstance(v, int) and not isinstance(v, bool) and v > 0):
                raise LiftnnError(f"{src}: extras.freerun takes only steps = <positive integer>; "
                                  f"got {k} = {v!r}")
    if "quick" in doc:
        q = doc["quick"]
        if not isinstance(q, dict):
            raise LiftnnError(f"{src}: [quick] must be a table")
        for key in q:
            if key not in TOP_LEVEL and key != "max_cells":
                raise LiftnnError(f"{src}: unknown key quick.{key}; valid: "
                                  f"{', '.join(TOP_LEVEL[:-1] + ('max_cells',))}")
        if "max_cells" in q and not (isinstance(q["max_cells"], int) and q["max_cells"] > 0):
            raise LiftnnError(f"{src}: quick.max_cells must be a positive integer")
        merged = _overlay(doc, q)
        validate(merged, src + " [quick]")
    return doc


def _overlay(doc: dict, quick: dict) -> dict:
    """The document with the [quick] overlay applied (tables merged, everything else replaced)."""

    def merge(a, b):
        out = copy.deepcopy(a)
        for k, v in b.items():
            if isinstance(v, dict) and isinstance(out.get(k), dict):
                out[k] = merge(out[k], v)
            else:
                out[k] = copy.deepcopy(v)
        return out

    over = {k: v for k, v in quick.items() if k != "max_cells"}
    merged = merge({k: v for k, v in doc.items() if k != "quick"}, over)
    return merged


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
    reference: str | None = None
    seed_batch: int = 0
    time_budget: float | None = None
    max_jobs: int | None = None
    fresh_process: bool = False
    extras: dict = field(default_factory=dict)
    notes: str = ""
    notices: list = field(default_factory=list)  # printed and written to the report
    skipped: dict = field(default_factory=dict)  # method -> why it was not run
    quick: bool = False

    def config(self) -> dict:
        """What the rows depend on besides method and seed (hashed into DIR/suite.json)."""
        return {
            "name": self.name, "kind": self.kind, "data_seed": self.data_seed,
            "cells": [c.describe() for c in self.cells],
            "success": [self.success_metric, self.success_below],
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
        fields = {k: entry.get(k, model.get(k)) for k in _MODEL_KEYS}
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


def base_method(name: str) -> str:
    """The method a suite entry runs: "alm@gd" is a variant of "alm" (its own options, its own
    rows and report lines); a plain name is itself."""
    return name.split("@", 1)[0]


def known_methods() -> dict[str, str]:
    """Every method name a suite may use -> "liftnn" or "peer" (variants: see base_method)."""
    from liftnn.train import METHODS

    names = {m: "liftnn" for m in METHODS}
    for p in peer_names():
        names[p] = "peer"
    return names


def peer_names() -> list[str]:
    try:
        from liftnn.bench import peers
    except ImportError:
        return list(PEER_NAMES)
    return list(getattr(peers, "PEERS", PEER_NAMES))


def method_available(name: str) -> tuple[bool, str]:
    """(True, "") if `name` can run here, else (False, why) -- a missing module or peer extra."""
    import importlib

    name = base_method(name)
    kind = known_methods()[name]
    if kind == "peer":
        try:
            from liftnn.bench import peers
        except ImportError as exc:
            return False, f"the peers module is not available ({exc})"
        try:
            ok, reason = peers.available(name)
        except Exception as exc:  # noqa: BLE001 - a broken extra is "not available", with why
            return False, f"{type(exc).__name__}: {exc}"
        return bool(ok), str(reason or "")
    from liftnn.train import METHODS

    try:
        importlib.import_module(METHODS[name])
    except Exception as exc:  # noqa: BLE001
        return False, f"its module {METHODS[name]} cannot be imported ({type(exc).__name__}: {exc})"
    return True, ""


def _check_method_options(name: str, opts: dict, src: str) -> None:
    """Catch unknown options now where a method publishes its defaults (e.g. alm.DEFAULTS)."""
    import importlib

    from liftnn.train import METHODS

    name = base_method(name)
    if name not in METHODS:
        try:
            from liftnn.bench import peers
            allowed = set(peers.options(name))
        except Exception:  # noqa: BLE001 - no peers module: availability says why
            return
        bad = sorted(set(opts) - allowed)
        if bad:
            raise LiftnnError(f"{src}: unknown option(s) for {name}: {', '.join(bad)}; valid: "
                              f"{', '.join(sorted(allowed))}")
        return
    try:
        mod = importlib.import_module(METHODS[name])
    except Exception:  # noqa: BLE001 - availability is reported separately
        return
    if callable(getattr(mod, "valid_options", None)):
        try:
            allowed = set(mod.valid_options(name)) | {"validation"}
        except Exception:  # noqa: BLE001 - leave the check to the method itself
            return
        bad = sorted(set(opts) - allowed)
        if bad:
            raise LiftnnError(f"{src}: unknown option(s) for {name}: {', '.join(bad)}; valid: "
                              f"{', '.join(sorted(allowed))}")
        return
    defaults = getattr(mod, "DEFAULTS", None)
    shared = sum(1 for v in METHODS.values() if v == METHODS[name]) > 1
    if isinstance(defaults, dict) and len(defaults) and all(isinstance(k, str) for k in defaults):
        if isinstance(defaults.get(name), dict):
            defaults = defaults[name]  # per-method defaults: {method: {option: value}}
        elif shared:
            return  # one table for several methods: leave the check to the method itself
        allowed = set(defaults) | {"validation"}
        bad = sorted(set(opts) - allowed)
        if bad:
            raise LiftnnError(f"{src}: unknown option(s) for {name}: {', '.join(bad)}; valid: "
                              f"{', '.join(sorted(allowed))}")


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
        doc = _overlay(doc, doc["quick"])
    else:
        max_cells = None
    s = doc["suite"]
    suite = Suite(name=name or s["name"], kind=s.get("kind", "train"), source=src,
                  description=s.get("description", ""), notes=s.get("notes", ""), quick=quick)
    if suite.kind == "lectures":
        return suite
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
    suite.seed_batch = int(s.get("seed_batch", 0))
    suite.time_budget = float(s["time_budget"]) if "time_budget" in s else None
    suite.max_jobs = int(s["max_jobs"]) if "max_jobs" in s else None
    suite.fresh_process = bool(s.get("fresh_process", False))
    ex = dict(doc.get("extras", {}))
    if ex.get("freerun") is True:
        ex["freerun"] = {"steps": 100}
    suite.extras = {k: v for k, v in ex.items() if v}

    # data: real data directory (e.g. Santa Fe) or the fallback with a notice
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
        _check_cells(cells, suite.data_seed, src)
    suite.cells = cells

    # methods: names checked before any run, unavailable ones skipped with the reason
    file_methods = dict(doc["methods"])
    known = known_methods()
    chosen = methods if methods is not None else list(file_methods)
    if not chosen:
        raise LiftnnError("no methods given")
    for m in chosen:
        if base_method(m) not in known or m.endswith("@"):  # "alm@": a variant needs a label
            peers = [k for k, v in known.items() if v == "peer"]
            libm = [k for k, v in known.items() if v == "liftnn"]
            raise LiftnnError(f"unknown method {m!r}; liftnn methods: {', '.join(sorted(libm))}; "
                              f"peers: {', '.join(sorted(peers))}")
    if len(set(chosen)) != len(chosen):
        raise LiftnnError(f"methods listed twice: {', '.join(chosen)}")
    for m in chosen:
        opts = dict(file_methods.get(m, {}))
        if m not in file_methods:
            suite.notices.append(f"method {m!r} is not configured in {path.name}; it runs with its "
                                 f"default options")
        _check_method_options(m, opts, src)
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
    ref = s.get("reference")
    if ref is not None and base_method(ref) not in known:
        raise LiftnnError(f"{src}: suite.reference {ref!r} is not a method name")
    suite.reference = ref if ref in suite.methods else None
    return suite
