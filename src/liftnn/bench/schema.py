"""The suite-file schema (liftnn.bench.suite describes the format) and its validation.

`validate(doc, src)` checks a parsed TOML document table by table and raises LiftnnError naming
the key and the file; `overlay(doc, quick)` applies a suite's [quick] table.
"""

from __future__ import annotations

import copy
from typing import Any

from liftnn.errors import LiftnnError

KINDS = ("train", "lectures")
SUCCESS_METRICS = ("train_mse", "test_mse", "freerun_mse", "train_accuracy", "test_accuracy")
#: metrics where larger is better: judged with success_above (metric >= threshold)
ACCURACY_METRICS = ("train_accuracy", "test_accuracy")

# --- schema -------------------------------------------------------------------------------------
# A field spec is (kind, required).  Kinds: str, int, num (int or float), bool, table, seeds
# (int > 0 or list of ints), str* / int* / num* (a value or a list of them: swept), any; a|b is
# either.  The tables are written as "key:kind" words, a trailing "!" marking a required key.
def _fields(words: str) -> dict[str, tuple[str, bool]]:
    spec = {}
    for word in words.split():
        key, kind = word.split(":")
        spec[key] = (kind.rstrip("!"), kind.endswith("!"))
    return spec


MODEL_KEYS = _fields("activation:str* output_activation:str bias:bool init:str* weight_decay:num "
                     "loss:str")
SCHEMA: dict[str, dict[str, tuple[str, bool]]] = {
    "suite": _fields("name:str! kind:str description:str seeds:seeds data_seed:int "
                     "success_metric:str success_below:num success_above:num reference:str "
                     "seed_batch:int time_budget:num max_jobs:int fresh_process:bool jacobian_figure:bool "
                     "notes:str"),
    "problem": _fields("dataset:str! kw:table real_dataset:str data_dir_env:str data_dir_kw:str"),
    "model": dict(MODEL_KEYS),
    "cell": {**_fields("label:str group:str dataset:str arch:str*! n:int* data:table"),
             **MODEL_KEYS},
    "extras": _fields("freerun:table|bool grad_norms:bool memory:bool"),
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
    metric = s.get("success_metric", "train_mse")
    if metric in ACCURACY_METRICS and "success_below" in s:
        raise LiftnnError(f"{src}: suite.success_metric {metric!r} is an accuracy (larger is "
                          f"better): give success_above, not success_below")
    if metric not in ACCURACY_METRICS and "success_above" in s:
        raise LiftnnError(f"{src}: suite.success_above goes with an accuracy metric "
                          f"({', '.join(ACCURACY_METRICS)}); {metric!r} takes success_below")
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
        merged = overlay(doc, q)
        validate(merged, src + " [quick]")
    return doc


def overlay(doc: dict, quick: dict) -> dict:
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


