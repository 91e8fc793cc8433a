"""Every shipped suite file validates, and every suite runs at reduced size (--quick) end to end
with the real methods into a report.  Quick runs that take more than ~20 s are marked slow; a
suite whose data set or methods are not available here is skipped with the reason."""

from __future__ import annotations

import csv
import json
import math
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from liftnn import datasets
from liftnn.bench import methods, runner, schema, store, suite
from liftnn.cli import app
from liftnn.errors import LiftnnError

SHIPPED = suite.suite_names()
EXPECTED = {"thesis-sine", "thesis-sin2", "init-study", "santafe", "evens", "scaling", "deep",
            "seeds-lectures", "relu-modes", "classify", "practical"}


def test_every_suite_is_shipped():
    assert EXPECTED <= set(SHIPPED)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_suite_validates_and_expands(name):
    doc, path = suite.read_suite(name)
    assert path.parent == suite.SUITES_DIR and doc["suite"]["name"] == name
    if doc["suite"].get("kind") == "lectures":
        return
    cells = suite._expand_cells(doc, str(path))
    assert cells and len({c.label for c in cells}) == len(cells)
    quick = suite._expand_cells(schema.overlay(doc, doc.get("quick", {})), str(path))
    assert quick
    known = methods.known_methods()
    bases = {methods.base_method(m) for m in doc["methods"]}
    assert bases <= set(known), bases - set(known)
    for c in cells:  # every architecture is a valid network
        suite.Cell.model(c)


def test_thesis_sin2_protocol():
    s = suite.resolve("thesis-sin2", check_availability=False)
    assert s.seeds == list(range(20)) and s.success_below == 0.25
    assert [(c.activation, c.arch, c.data_kw["n"]) for c in s.cells] == [
        ("tanh", "1-8-8-1", 10), ("tanh", "1-8-8-1", 20), ("tanh", "1-8-8-1", 40),
        ("relu", "1-16-16-1", 20), ("relu", "1-16-16-1", 40), ("relu", "1-16-16-1", 80)]
    assert {c.init for c in s.cells} == {"glorot_uniform"}
    assert s.methods["adam"] == {"lr": 1e-3, "patience": 10, "max_iter": 4000}
    q = suite.resolve("thesis-sin2", quick=True, check_availability=False)
    assert q.seeds == [0, 1] and len(q.cells) == 1 and q.config_hash() != s.config_hash()
    assert suite.resolve("thesis-sin2", seeds=3, methods=["adam"],
                         check_availability=False).seeds == [0, 1, 2]


def needs_data(*names):
    missing = set(names) - set(datasets.names())
    return pytest.mark.skipif(bool(missing), reason=f"data set(s) {sorted(missing)} not registered")


@needs_data("teacher")
def test_init_study_and_evens_cells():
    s = suite.resolve("init-study", check_availability=False)
    assert {c.init for c in s.cells} == {"glorot_uniform", "kaiming_uniform", "torch_default"}
    assert len(s.cells) == 18
    e = suite.resolve("evens", check_availability=False)
    assert sorted((c.data_kw["d0"], c.data_kw["noise"]) for c in e.cells) == [
        (d, z) for d in (5, 10, 15) for z in (0.1, 0.2)]
    assert all(not c.bias and c.weight_decay == 0.1 and c.data_kw["m"] == 250 for c in e.cells)
    assert all(c.arch.startswith(f"{c.data_kw['d0']}-") for c in e.cells)
    assert e.seeds == list(range(15))


@needs_data("laser", "santafe")
def test_santafe_data_choice(tmp_path, monkeypatch):
    monkeypatch.delenv("LIFTNN_SANTAFE_DIR", raising=False)
    s = suite.resolve("santafe", check_availability=False)
    assert s.cells[0].dataset == "laser" and any("synthetic" in n for n in s.notices)
    s = suite.resolve("santafe", data_dir=tmp_path, check_availability=False, check_data=False)
    assert s.cells[0].dataset == "santafe" and s.cells[0].data_kw["data_dir"] == str(tmp_path)
    monkeypatch.setenv("LIFTNN_SANTAFE_DIR", str(tmp_path))
    assert suite.resolve("santafe", check_availability=False,
                         check_data=False).cells[0].dataset == "santafe"
    # an empty data directory fails before any run, naming the missing file
    with pytest.raises(LiftnnError, match="lasertrain.csv"):
        suite.resolve("santafe", check_availability=False)
    monkeypatch.delenv("LIFTNN_SANTAFE_DIR")
    with pytest.raises(LiftnnError, match="does not exist"):
        suite.resolve("santafe", data_dir=tmp_path / "nope", check_availability=False)
    with pytest.raises(LiftnnError, match="takes no data directory"):
        suite.resolve("thesis-sin2", data_dir=tmp_path, check_availability=False)


# --- schema errors name the key and the file ---------------------------------------------------
BASE = Path(suite.SUITES_DIR / "thesis-sin2.toml").read_text()


@pytest.mark.parametrize("edit, match", [
    (lambda t: t.replace("seeds = 20", "seeds = 20\nbogus = 1"), r"unknown key suite\.bogus"),
    (lambda t: t.replace("seeds = 20", 'seeds = "many"'), r"suite\.seeds must be"),
    (lambda t: t.replace("success_below = 0.25", 'success_below = "low"'),
     r"suite\.success_below must be a number"),
    (lambda t: t.replace('name = "thesis-sin2"', 'name = "x"\nkind = "magic"'), r"suite\.kind"),
    (lambda t: t.replace('dataset = "sin2"', 'datset = "sin2"'), r"unknown key problem\.datset"),
    (lambda t: t.replace('arch = "1-8-8-1"', 'arch = 7'), r"cells\[0\]\.arch must be"),
    (lambda t: t.replace('arch = "1-8-8-1"', 'arhc = "1-8-8-1"'), r"unknown key cells\[0\]\.arhc"),
    (lambda t: t.replace("alm = {}", "alm = 3"), r"methods\.alm must be a table"),
    (lambda t: t.replace("max_cells = 1", "max_cell = 1"), r"unknown key quick\.max_cell"),
    (lambda t: t.replace("[quick]", "[extras]\nfreerun = { stepz = 3 }\n\n[quick]"),
     r"extras\.freerun takes only steps"),
    (lambda t: t + "\n[weird]\nx = 1\n", r"unknown top-level key 'weird'"),
    (lambda t: t.replace("n = [10, 20, 40]", "n = [10, 10, 40]"), r"share the label"),
    (lambda t: t.replace("seeds = 20", "seeds = [1, 1]"), r"duplicates"),
    (lambda t: t.replace('dataset = "sin2"', 'dataset = "sin3"'), r"unknown data set 'sin3'"),
    (lambda t: t.replace('arch = "1-8-8-1"', 'arch = "2-8-8-1"'), r"X has 1 features"),
    (lambda t: t.replace("kw = { noise = 0.1 }", "kw = { noize = 0.1 }"), r"noize"),
    (lambda t: t.replace("alm = {}", "alm = { beta_zero = 1 }"), r"unknown option\(s\) for alm"),
    (lambda t: t.replace("name = ", "nom = "), r"unknown key suite\.nom"),
    (lambda t: t + "\n[[cells]\n", r"not valid TOML"),
])
def test_bad_suite_file_errors_name_key_and_file(tmp_path, edit, match):
    p = tmp_path / "bad.toml"
    p.write_text(edit(BASE))
    with pytest.raises(LiftnnError, match=match) as exc:
        suite.resolve(p, check_availability=False)
    assert str(p) in str(exc.value)
    res = CliRunner().invoke(app, ["bench", str(p), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and not (tmp_path / "o").exists()


def test_every_schema_key_is_documented():
    doc = suite.__doc__
    for table, keys in schema.SCHEMA.items():
        for k in keys:
            assert k in doc, f"{table}.{k} is not documented in liftnn.bench.suite"


# --- quick runs of every suite -----------------------------------------------------------------
def _runnable(name: str, methods=None):
    """(suite, reason): the quick suite resolved here, or why it cannot run."""
    try:
        s = suite.resolve(name, quick=True, methods=methods)
    except LiftnnError as exc:
        return None, str(exc)
    missing = {c.dataset for c in s.cells} - set(datasets.names())
    if missing:
        return None, f"data set(s) {missing} not available"
    return s, ""


def _bench(name: str, tmp_path: Path, methods=None):
    s, why = _runnable(name, methods)
    if s is None:
        pytest.skip(f"{name}: {why}")
    out = tmp_path / name
    extra = ["--methods", ",".join(methods)] if methods else []
    res = CliRunner().invoke(app, ["bench", name, "--quick", "--jobs", "1", "--out", str(out),
                                   *extra])
    assert res.exit_code == 0, res.output
    with open(out / "results.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(s.cells) * len(s.methods) * len(s.seeds)
    assert len({(r["cell"], r["method"], r["seed"]) for r in rows}) == len(rows)
    for f in ("report.md", "report.html", "mse_hist.png"):
        assert (out / f).exists(), f
    for m, why in s.skipped.items():
        assert m in res.output and m in (out / "report.md").read_text()
    return s, rows, out


def test_quick_thesis_sin2_with_adam_smoke(tmp_path):
    """The CI smoke run: the smallest thesis-sin2 cell, 2 seeds, liftnn's Adam."""
    _, rows, out = _bench("thesis-sin2", tmp_path, ["adam"])
    assert {r["method"] for r in rows} == {"adam"} and {r["seed"] for r in rows} == {"0", "1"}
    assert all(r["status"] != "error" for r in rows), [r["message"] for r in rows]
    assert all(r["batch_size"] == "2" for r in rows)
    assert list(out.glob("fits_*.png")) and list(out.glob("convergence_*.png"))


def test_method_variants_run_their_base_method_with_their_own_options(tmp_path):
    """relu-modes: "alm@gd" etc. are alm with a relu_mode each, one row per variant and seed."""
    s = suite.resolve("relu-modes", check_availability=False)
    assert s.methods == {"alm@complementarity": {"relu_mode": "complementarity"},
                         "alm@softplus": {"relu_mode": "softplus"}, "alm@gd": {"relu_mode": "gd"}}
    assert s.reference == "alm@complementarity"
    units = runner.plan_units(s, set())
    assert {u.method for u in units} == set(s.methods) and not any(u.peer for u in units)
    with pytest.raises(LiftnnError, match="unknown method 'nosuch@x'"):
        suite.resolve("relu-modes", methods=["nosuch@x"], check_availability=False)
    with pytest.raises(LiftnnError, match="unknown method 'alm@'"):
        suite.resolve("relu-modes", methods=["alm@"], check_availability=False)
    with pytest.raises(LiftnnError, match="unknown option"):
        suite.resolve(_variant_file(tmp_path), check_availability=False)
    _, rows, out = _bench("relu-modes", tmp_path, ["alm@gd", "alm@softplus"])  # quick: 2 seeds
    assert {r["method"] for r in rows} == {"alm@gd", "alm@softplus"} and len(rows) == 4
    assert all(r["status"] != "error" for r in rows), [r["message"] for r in rows]
    assert "alm@softplus" in (out / "report.md").read_text()


def _variant_file(tmp_path):
    text = suite.read_suite("relu-modes")[1].read_text().replace(
        '"alm@gd" = { relu_mode = "gd" }', '"alm@gd" = { relu_mod = "gd" }')
    p = tmp_path / "bad-variant.toml"
    p.write_text(text)
    return p


# In CI (the fast set): thesis-sine and evens here, santafe below, thesis-sin2 by the adam smoke
# run above, seeds-lectures in tests/bench/test_lectures.py, relu-modes in the variants test; the
# heavier quick runs (init-study, scaling, deep, all of thesis-sin2's methods) are `make test-all`.
@pytest.mark.parametrize("name", ["thesis-sine", "evens",
                                  pytest.param("thesis-sin2", marks=pytest.mark.slow),
                                  pytest.param("init-study", marks=pytest.mark.slow)])
def test_quick_suite_runs(tmp_path, name):
    _, rows, _ = _bench(name, tmp_path)
    assert any(r["status"] != "error" for r in rows)


# suite -> (what each finished row must show, a figure the report draws, words the report holds)
EXTRAS = {
    "santafe": (lambda r: math.isfinite(float(r["freerun_mse"])), "freerun_*.png", "synthetic"),
    "scaling": (lambda r: float(r["peak_rss_mb"]) >= float(r["base_rss_mb"]) > 0,
                "scaling_*.png", "log-log slopes"),
}


@pytest.mark.parametrize("name", ["santafe", pytest.param("scaling", marks=pytest.mark.slow)])
def test_quick_suite_extras(tmp_path, monkeypatch, name):
    """santafe's free runs (on the synthetic stand-in: no data directory is set) and scaling's
    memory columns and log-log slopes."""
    monkeypatch.delenv("LIFTNN_SANTAFE_DIR", raising=False)
    row_ok, figure, words = EXTRAS[name]
    _, rows, out = _bench(name, tmp_path)
    ok = [r for r in rows if r["status"] != "error"]
    assert ok and all(row_ok(r) for r in ok)
    assert list(out.glob(figure))
    assert words in (out / "report.md").read_text()


@pytest.mark.slow
def test_quick_deep_gradient_norms_and_budget(tmp_path):
    s, rows, out = _bench("deep", tmp_path)
    ok = [r for r in rows if r["status"] != "error"]
    assert ok
    for r in ok:
        norms = json.loads(r["grad_norms_init"])
        assert len(norms) == len(r["arch"].split("-")) - 1
        assert float(r["time_budget_s"]) == s.time_budget
    assert (out / "grad_norms.png").exists()


@pytest.mark.slow
def test_quick_seeds_lectures(tmp_path):
    out = tmp_path / "lectures"
    res = CliRunner().invoke(app, ["bench", "seeds-lectures", "--quick", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert any(out.iterdir())


def test_user_suite_file_is_copyable(tmp_path):
    """A copy of a shipped suite with edits runs as a user suite (resolves, own name)."""
    doc = tomllib.loads(BASE)
    assert doc["suite"]["name"] == "thesis-sin2"
    p = tmp_path / "mine.toml"
    p.write_text(BASE.replace('name = "thesis-sin2"', 'name = "mine"'))
    s = suite.resolve(p, check_availability=False)
    assert s.name == "mine" and s.source == str(p)
    assert store.columns_for(s)[:16] == store.BASE_COLUMNS
