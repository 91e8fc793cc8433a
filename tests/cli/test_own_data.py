"""A user's own data from the command line: `liftnn train --data FILE --target NAME`, the saved
model's scaling, `liftnn predict` / `liftnn evaluate`, `--report DIR`, and every bad input
(exit status 2 before any work, no output file left behind)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import liftnn as ln
from liftnn.cli import app
from liftnn.cli.data import resolve_arch

SRC = Path(__file__).resolve().parents[2] / "src"


def example_csv(path: Path, m: int = 120, seed: int = 0) -> Path:
    """The README's example ("Your own data"): price = 3 sin(a) + 0.5 b^1.5 - 2 c + 50 + noise
    on a, b, c uniform on [0, 10], with a text column `id` that is not a feature."""
    rng = np.random.default_rng(seed)
    X = rng.uniform(0.0, 10.0, (m, 3))
    y = 3 * np.sin(X[:, 0]) + 0.5 * X[:, 1] ** 1.5 - 2 * X[:, 2] + 50 + rng.normal(0, 0.3, m)
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["a", "b", "c", "price"])
        for x, t in zip(X, y):
            w.writerow([repr(float(v)) for v in (*x, t)])
    return path


TRAIN = ["--target", "price", "--arch", "8", "--activation", "tanh", "--method", "lm",
         "--max-iter", "20"]


def invoke(*args):
    res = CliRunner().invoke(app, [str(a) for a in args])
    return res, " ".join(res.output.split())


def read_pred(path: Path) -> tuple[list[str], np.ndarray]:
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    return rows[0], np.array(rows[1:], dtype=float)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """houses.csv, a model trained on it with --save-model and --report, and the JSON line."""
    tmp = tmp_path_factory.mktemp("own")
    data = example_csv(tmp / "houses.csv")
    res, _ = invoke("train", "--data", data, *TRAIN, "--json", "--save-model", tmp / "m",
                       "--report", tmp / "rep")
    assert res.exit_code == 0, res.output
    (line,) = [json.loads(s) for s in res.stdout.splitlines() if s.startswith("{")]
    return tmp, data, line


def test_train_on_a_csv_reports_and_stores_the_scaling(trained):
    tmp, data, out = trained
    assert out["problem"] == "houses" and out["arch"] == "3-8-1" and out["targets"] == ["price"]
    assert out["features"] == ["a", "b", "c"] and out["n"] == 96 and out["n_test"] == 24
    assert out["scaled"] is True and np.isfinite(out["test_mse_units"])
    meta = json.loads((tmp / "m.json").read_text())
    assert meta["format_version"] == 2 and meta["scaling"]["features"] == ["a", "b", "c"]
    assert meta["data"]["name"] == "houses" and meta["data"]["n"] == 96
    from liftnn.datasets.files import file_dataset

    saved = ln.load_model(tmp / "m")
    d = file_dataset(data, "price")  # the same split and statistics the CLI used
    np.testing.assert_allclose(saved.scaling.y_mean, d.scaling.y_mean, rtol=1e-15)
    # the test MSE in the data's units is the saved model's error on the held-out rows
    P = saved.predict(d.scaling.x_mean + d.x_test * d.scaling.x_std)
    Y = d.scaling.inverse_y(d.y_test)
    assert np.mean((P - Y) ** 2) == pytest.approx(out["test_mse_units"], rel=1e-10)
    for f in ("report.md", "curve.png", "fit.png", "residuals.png"):
        assert (tmp / "rep" / f).stat().st_size > 0, f
    md = (tmp / "rep" / "report.md").read_text()
    assert "lm on houses" in md and "3-8-1 tanh" in md and "| test |" in md and "R² price" in md


def test_predict_equals_load_model_and_the_python_model(trained, tmp_path):
    tmp, data, _ = trained
    res, _ = invoke("predict", tmp / "m", "--data", data, "--out", tmp_path / "p.csv")
    assert res.exit_code == 0, res.output
    names, P_cli = read_pred(tmp_path / "p.csv")
    assert names == ["price"] and P_cli.shape == (120, 1)
    from liftnn.datasets.files import read_table

    tab = read_table(data, target="price")
    saved = ln.load_model(tmp / "m")
    P_py = saved.predict(tab.X)
    model, params = saved  # still unpacks as before
    sc = saved.scaling
    P_model = np.asarray(model.apply(params, (tab.X - sc.x_mean) / sc.x_std)) * sc.y_std + sc.y_mean
    np.testing.assert_allclose(P_cli.reshape(-1, 1), P_py, rtol=0, atol=1e-12)
    np.testing.assert_allclose(P_py, P_model, rtol=0, atol=1e-12)
    # ... and the network the same training gives in Python
    from liftnn.datasets.files import file_dataset

    d = file_dataset(data, "price")
    res = ln.train(ln.MLP("3-8-1", activation="tanh"), d, method="lm", seed=0, max_iter=20)
    P_train = d.scaling.inverse_y(np.asarray(model.apply(res.params,
                                                         d.scaling.transform_x(tab.X))))
    np.testing.assert_allclose(P_cli.reshape(-1, 1), P_train, rtol=0, atol=1e-12)
    # stdout without --out: the same numbers
    res2 = subprocess.run([sys.executable, "-m", "liftnn.cli", "predict", str(tmp / "m"),
                           "--data", str(data)], capture_output=True, text=True, check=False,
                          env={"PYTHONPATH": str(SRC), "LIFTNN_COMPILE_CACHE": "off",
                               "PATH": "/usr/bin:/bin"})
    assert res2.returncode == 0, res2.stderr
    rows = res2.stdout.splitlines()
    assert rows[0] == "price" and np.allclose(np.array(rows[1:], float), P_cli.ravel(), atol=0)


def test_evaluate_prints_mse_and_r2_per_target(trained):
    tmp, data, _ = trained
    res, text = invoke("evaluate", tmp / "m", "--data", data, "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout.splitlines()[-1])
    from liftnn.datasets.files import read_table
    from liftnn.metrics import regression_metrics

    tab = read_table(data, target="price")
    ref = regression_metrics(tab.Y, ln.load_model(tmp / "m").predict(tab.X))
    assert out["rows"] == 120 and out["mse"] == pytest.approx(ref["mse"], rel=1e-12)
    assert out["r2"]["price"] == pytest.approx(ref["r2"][0], rel=1e-12)
    res, text = invoke("evaluate", tmp / "m", "--data", data)
    assert res.exit_code == 0 and "price: MSE" in text and "R²" in text


def test_shipped_friedman1_model_predicts_raw_units(tmp_path):
    pytest.importorskip("sklearn")
    from sklearn.datasets import make_friedman1

    res, _ = invoke("train", "--problem", "friedman1", "--arch", "10-8-1", "--method", "lm",
                       "--max-iter", "15", "--activation", "tanh", "--save-model", tmp_path / "f")
    assert res.exit_code == 0, res.output
    X, y = make_friedman1(n_samples=800, n_features=10, noise=1.0, random_state=0)
    P = ln.load_model(tmp_path / "f").predict(X[400:])[:, 0]  # raw inputs, raw predictions
    d = ln.datasets.load("friedman1")
    model, params = ln.load_model(tmp_path / "f")
    Z = np.asarray(model.apply(params, d.x_test))[:, 0] * d.meta["y_std"] + d.meta["y_mean"]
    np.testing.assert_allclose(P, Z, rtol=1e-12)
    assert abs(P.mean() - y[400:].mean()) < 2.0  # in y's units (mean ~14), not standardised


def test_arch_rule_for_file_data():
    assert resolve_arch(None, 3, 1) == "3-16-16-1"
    assert resolve_arch("16-16", 3, 1) == "3-16-16-1"
    assert resolve_arch("8", 3, 2) == "3-8-2"
    assert resolve_arch("3-8-1", 3, 1) == "3-8-1"  # a full arch matching the file's widths
    with pytest.raises(ln.LiftnnError, match="layer sizes like 16-16"):
        resolve_arch("a-b", 3, 1)


# ---- bad input: exit status 2, a message naming it, nothing written ---------------------------


@pytest.fixture
def small(tmp_path):
    return example_csv(tmp_path / "h.csv", m=30)


def _bad(tmp_path, *args, needle):
    res, text = invoke(*args)
    assert res.exit_code == 2, res.output
    assert needle in text, text
    return text


def test_train_bad_inputs(tmp_path, small):
    _bad(tmp_path, "train", "--data", tmp_path / "none.csv", "--target", "price",
         needle="none.csv does not exist")
    _bad(tmp_path, "train", "--data", small, "--target", "cost",
         needle="'cost' not in the header; the columns are: a, b, c, price")
    _bad(tmp_path, "train", "--data", small, "--target", "price", "--features", "a,z",
         needle="feature column(s) 'z' not in the header")
    _bad(tmp_path, "train", "--data", small, needle="--data needs --target")
    text = small.read_text().splitlines()
    text[3] = text[3].replace(text[3].split(",")[1], "abc", 1)
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join(text) + "\n")
    _bad(tmp_path, "train", "--data", bad, "--target", "price",
         needle="row 3, column 'b': 'abc' is not a number")
    text = small.read_text().splitlines()
    for i in (2, 5):
        cells = text[i].split(",")
        cells[0] = ""
        text[i] = ",".join(cells)
    bad.write_text("\n".join(text) + "\n")
    _bad(tmp_path, "train", "--data", bad, "--target", "price",
         needle="2 missing value(s) (row 2 column 'a', row 5 column 'a')")
    tiny = tmp_path / "tiny.csv"
    tiny.write_text("a,price\n1,2\n3,4\n")
    _bad(tmp_path, "train", "--data", tiny, "--target", "price", "--save-model", tmp_path / "t",
         needle="too few for a test fraction")
    _bad(tmp_path, "train", "--target", "price", needle="only apply with --data")
    _bad(tmp_path, "train", "--data", small, "--target", "price", "--test", small,
         "--test-fraction", "0.3", needle="not both")
    assert not list(tmp_path.glob("t.*"))


def test_predict_and_evaluate_bad_inputs(trained, tmp_path):
    tmp, data, _ = trained
    out = tmp_path / "p.csv"
    _bad(tmp_path, "predict", tmp / "nomodel", "--data", data, "--out", out,
         needle="does not exist")
    _bad(tmp_path, "predict", tmp / "m", "--data", tmp_path / "no.csv", "--out", out,
         needle="no.csv does not exist")
    two = tmp_path / "two.csv"
    two.write_text("a,b\n1,2\n3,4\n")
    _bad(tmp_path, "predict", tmp / "m", "--data", two, "--out", out,
         needle="takes column(s) 'c', which the file lacks; its columns are: a, b")
    gap = tmp_path / "gap.csv"
    gap.write_text("a,b,c\n1,2,3\n4,,6\n")
    _bad(tmp_path, "predict", tmp / "m", "--data", gap, "--out", out,
         needle="1 missing value(s) (row 2 column 'b')")
    inputs_only = tmp_path / "abc.csv"
    inputs_only.write_text("a,b,c\n1,2,3\n4,5,6\n")
    _bad(tmp_path, "evaluate", tmp / "m", "--data", inputs_only,
         needle="'price' not in the header; the columns are: a, b, c")
    # a model saved without names: the input width is checked against the file's columns
    model, params = ln.load_model(tmp / "m")
    ln.save_model(tmp_path / "plain", model, params)
    _bad(tmp_path, "predict", tmp_path / "plain", "--data", two, "--out", out,
         needle="has 2 input column(s) but the model")
    assert not out.exists() and not list(tmp_path.glob(".p.csv*"))
    with pytest.raises(ln.LiftnnError, match="has 2 input column"):
        ln.load_model(tmp / "m").predict(np.ones((4, 2)))


def test_npz_data_and_no_scale(tmp_path):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(40, 2))
    np.savez(tmp_path / "d.npz", X=X, Y=np.c_[X.sum(1), X[:, 0] - X[:, 1]])
    res, _ = invoke("train", "--data", tmp_path / "d.npz", "--arch", "4", "--method", "lm",
                       "--max-iter", "5", "--no-scale", "--json", "--save-model", tmp_path / "m")
    assert res.exit_code == 0, res.output
    line = json.loads(res.stdout.splitlines()[-1])
    assert line["arch"] == "2-4-2" and line["targets"] == ["y0", "y1"] and line["scaled"] is False
    saved = ln.load_model(tmp_path / "m")
    assert saved.scaling.identity and saved.targets == ("y0", "y1")
    res, _ = invoke("predict", tmp_path / "m", "--data", tmp_path / "d.npz", "--out",
                       tmp_path / "p.csv")
    assert res.exit_code == 0, res.output
    names, P = read_pred(tmp_path / "p.csv")
    model, params = saved
    assert names == ["y0", "y1"]
    np.testing.assert_allclose(P, np.asarray(model.apply(params, X)), atol=1e-12, rtol=0)


def test_seeds_with_file_data_and_a_classifier_evaluates_accuracy(tmp_path, small):
    res, _ = invoke("train", "--data", small, *TRAIN, "--seeds", "2", "--json")
    assert res.exit_code == 0, res.output
    lines = [json.loads(s) for s in res.stdout.splitlines() if s.startswith("{")]
    assert [r["seed"] for r in lines] == [0, 1] and all("test_r2" in r for r in lines)
    pytest.importorskip("sklearn")
    # a least-squares fit to the class indices (one output, asked for with --loss mse; the
    # default for a classification data set is the cross-entropy with one output per class)
    res, _ = invoke("train", "--problem", "iris", "--arch", "4-6-1", "--loss", "mse", "--method", "lm",
                       "--max-iter", "10", "--save-model", tmp_path / "iris")
    assert res.exit_code == 0, res.output
    saved = ln.load_model(tmp_path / "iris")
    assert saved.data["task"] == "classification" and saved.data["n_classes"] == 3
    d = ln.datasets.load("iris")
    X = d.scaling.x_mean + d.x_test * d.scaling.x_std  # raw measurements
    p = tmp_path / "iris.csv"
    with open(p, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow([*saved.features, "y0"])
        w.writerows([[*map(repr, map(float, x)), int(y)] for x, y in zip(X, d.y_test[:, 0])])
    res, _ = invoke("evaluate", tmp_path / "iris", "--data", p, "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout.splitlines()[-1])
    P = saved.predict(X)
    assert P.shape == (X.shape[0], 1)
    labels = np.clip(np.rint(P[:, 0]), 0, 2)  # the nearest class
    assert out["accuracy"] == pytest.approx(np.mean(labels == d.y_test[:, 0]))
    assert out["accuracy"] > 0.5
