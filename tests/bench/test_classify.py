"""Classification cells in the bench harness (loss = "cross_entropy": accuracy columns, the
success_above / "reliable" rule, a least-squares-only method skipped per cell by loss) and the classify and practical
suites run end to end at --quick size through `liftnn bench`.  The full quick runs are slow; a
tiny suite file keeps a fast end-to-end check."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import liftnn as ln
from liftnn.bench import methods, runner, store, suite
from liftnn.cli import app
from liftnn.errors import LiftnnError

TINY = """
[suite]
name = "tiny-classify"
seeds = 2
success_metric = "test_accuracy"
success_above = 0.8

[problem]
dataset = "moons"
kw = { labels = "onehot", n = 40, n_test = 40 }

[model]
activation = "tanh"
loss = "cross_entropy"

[[cells]]
arch = "2-4-2"

[methods]
lbfgs = { max_iter = 30 }
sklearn-lbfgs = { alpha = 0.0, max_iter = 30 }
"""

MIXED = """
[suite]
name = "mixed"
seeds = 1

[problem]
dataset = "sin2"
kw = { n = 10 }

[[cells]]
label = "regression"
arch = "1-4-1"

[[cells]]
label = "classification"
dataset = "moons"
arch = "2-4-2"
loss = "cross_entropy"
data = { labels = "onehot", n = 20, n_test = 20 }

[methods]
scipy-lm = { max_nfev = 2 }
adam = { max_iter = 5 }
"""


def _write(tmp_path: Path, text: str, name: str = "s.toml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def _rows(out: Path) -> list[dict]:
    with open(out / "results.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_accuracy_schema_rules(tmp_path):
    """An accuracy metric takes success_above (larger is better); an MSE metric success_below."""
    bad = TINY.replace("success_above = 0.8", "success_below = 0.8")
    with pytest.raises(LiftnnError, match="success_above, not success_below"):
        suite.resolve(_write(tmp_path, bad), check_availability=False)
    bad = TINY.replace('success_metric = "test_accuracy"', 'success_metric = "test_mse"')
    with pytest.raises(LiftnnError, match="success_above goes with an accuracy metric"):
        suite.resolve(_write(tmp_path, bad), check_availability=False)
    s = suite.resolve(_write(tmp_path, TINY), check_availability=False)
    assert s.success_metric == "test_accuracy" and s.success_above == 0.8
    assert store.columns_for(s)[-2:] == ["train_accuracy", "test_accuracy"]


def test_regression_suites_keep_their_columns_and_hash():
    """No accuracy columns and no success_above in the configuration of a regression suite."""
    s = suite.resolve("thesis-sin2", check_availability=False, check_data=False)
    assert "train_accuracy" not in store.columns_for(s)
    assert s.config()["success"] == ["train_mse", 0.25]


def test_lifted_losses_table_says_what_alm_does():
    """bench.methods.supports_loss must agree with alm itself: it trains cross_entropy and mse
    and refuses a least-squares-only peer's cells by loss."""
    data = ln.datasets.load("moons", n=20, n_test=20, labels="onehot")
    model = ln.MLP("2-3-2", activation="tanh")
    r = ln.train(model, data, method="alm", loss="cross_entropy", max_outer=1)
    assert 0.0 <= r["test_accuracy"] <= 1.0
    assert methods.supports_loss("alm", "cross_entropy") == (True, "")
    assert methods.supports_loss("lifted-gn", "cross_entropy") == (True, "")
    assert methods.supports_loss("alm@x", "mse") == (True, "")
    assert methods.supports_loss("lm", "cross_entropy") == (True, "")
    assert methods.supports_loss("scipy-lm", "cross_entropy")[0] is False  # least squares only
    assert methods.supports_loss("sklearn-lbfgs", "cross_entropy") == (True, "")


def test_least_squares_peer_is_skipped_on_classification_cells_only(tmp_path):
    s = suite.resolve(_write(tmp_path, MIXED), check_availability=False)
    assert set(s.methods) == {"scipy-lm", "adam"}
    assert list(s.skipped_cells) == [("classification", "scipy-lm")]
    assert any("'scipy-lm' is skipped on 1 cell(s) (classification)" in n for n in s.notices)
    units = runner.plan_units(s, set())
    assert {(u.cell.label, u.method) for u in units} == {
        ("regression", "scipy-lm"), ("regression", "adam"), ("classification", "adam")}
    only = MIXED.replace('[[cells]]\nlabel = "regression"\narch = "1-4-1"\n', "")
    s = suite.resolve(_write(tmp_path, only, "only.toml"), check_availability=False)
    assert "scipy-lm" in s.skipped and "scipy-lm" not in s.methods and not s.skipped_cells


def test_classify_suite_runs_the_lifted_methods():
    s = suite.resolve("classify", check_availability=False, check_data=False)
    assert {"alm", "lifted-gn"} <= set(s.methods) and not s.skipped_cells


def test_accuracy_definition_matches_ln_train():
    """The runner's accuracy (used for peers) is ln.train's: argmax of the logits vs the label."""
    data = ln.datasets.load("iris", labels="onehot")
    model = ln.MLP("4-5-3", activation="tanh")
    res = ln.train(model, data, method="lbfgs", loss="cross_entropy", seeds=[0], max_iter=5)[0]
    assert runner.accuracy(model, res["params"], data.x_train, data.y_train) == \
        res["train_accuracy"]
    assert runner.accuracy(model, res["params"], data.x_test, data.y_test) == res["test_accuracy"]
    idx = ln.datasets.load("iris", labels="index")  # class indices (m, 1) read the same way
    assert runner.accuracy(model, res["params"], idx.x_test, idx.y_test) == res["test_accuracy"]


def test_tiny_classification_suite_end_to_end(tmp_path):
    """A liftnn method and a peer on a cross_entropy cell: accuracy columns filled, success is
    test_accuracy >= success_above, the report shows accuracies and the 'reliable' count."""
    ok, why = methods.method_available("sklearn-lbfgs")
    if not ok:
        pytest.skip(f"sklearn-lbfgs: {why}")
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["bench", str(_write(tmp_path, TINY)), "--jobs", "1",
                                   "--out", str(out)])
    assert res.exit_code == 0, res.output
    rows = _rows(out)
    assert len(rows) == 4 and {r["method"] for r in rows} == {"lbfgs", "sklearn-lbfgs"}
    for r in rows:
        assert r["status"] != "error", r["message"]
        tr, te = float(r["train_accuracy"]), float(r["test_accuracy"])
        assert 0.0 <= tr <= 1.0 and 0.0 <= te <= 1.0
        assert r["success"] == ("true" if te >= 0.8 else "false")
        assert math.isfinite(float(r["loss"]))
    md = (out / "report.md").read_text()
    assert "reliable" in md and "avg test accuracy" in md and "mean test accuracy" in md
    assert "test_accuracy >= 0.8" in md


def _bench_quick(name: str, tmp_path: Path) -> tuple[suite.Suite, list[dict], Path]:
    s = suite.resolve(name, quick=True)
    out = tmp_path / name
    res = CliRunner().invoke(app, ["bench", name, "--quick", "--jobs", "1", "--out", str(out)])
    assert res.exit_code == 0, res.output
    rows = _rows(out)
    assert len(rows) == len(s.cells) * len(s.methods) * len(s.seeds) - len(s.skipped_cells) * len(
        s.seeds)
    for f in ("report.md", "report.html"):
        assert (out / f).exists(), f
    for m in s.skipped:
        assert m in (out / "report.md").read_text()
    return s, rows, out


@pytest.mark.slow
def test_quick_classify(tmp_path):
    s, rows, out = _bench_quick("classify", tmp_path)
    assert all(c.loss == "cross_entropy" for c in s.cells)
    assert {"adam", "lbfgs", "gn", "lm"} <= set(s.methods)
    ok = [r for r in rows if r["status"] != "error"]
    assert len(ok) == len(rows), [r["message"] for r in rows if r["status"] == "error"]
    acc = np.array([float(r["test_accuracy"]) for r in ok])
    assert np.all((acc >= 0) & (acc <= 1))
    assert all(r["success"] == ("true" if float(r["test_accuracy"]) >= s.success_above
                                else "false") for r in ok)
    assert "avg test accuracy" in (out / "report.md").read_text()


@pytest.mark.slow
def test_quick_practical(tmp_path):
    s, rows, out = _bench_quick("practical", tmp_path)
    assert s.success_metric == "test_mse" and "train_accuracy" not in rows[0]
    assert {"alm", "adam", "lbfgs", "lm"} <= set(s.methods)
    ok = [r for r in rows if r["status"] != "error"]
    assert len(ok) == len(rows), [r["message"] for r in rows if r["status"] == "error"]
    assert all(math.isfinite(float(r["test_mse"])) for r in ok)
    assert "mean test MSE" in (out / "report.md").read_text()
