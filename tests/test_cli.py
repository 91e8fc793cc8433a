"""`liftnn train` end to end: the JSON it prints, the model files it writes (reloaded with numpy
alone reproduce its train MSE), --seeds K, and bad input (exit status 2 before any work)."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

import liftnn as ln
from liftnn.cli import app
from liftnn.models.io import load_model
from liftnn.train import PRIOR_PRECISION

ARGS = ["train", "--problem", "sin2", "--n", "20", "--arch", "1-4-4-1", "--activation", "relu",
        "--method", "adam", "--max-iter", "50"]


def _lines(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def test_train_json_and_numpy_only_model_files(tmp_path):
    res = CliRunner().invoke(app, ARGS + ["--seed", "3", "--json", "--save-model",
                                          str(tmp_path / "m")])
    assert res.exit_code == 0, res.output
    (out,) = _lines(res.output)
    for key in ("problem", "method", "init", "seed", "train_mse", "test_mse", "time_s",
                "iterations", "status"):
        assert key in out, key
    assert out["seed"] == 3 and out["method"] == "adam" and out["iterations"] == 50
    meta = json.loads((tmp_path / "m.json").read_text())
    arrays = np.load(tmp_path / "m.npz", allow_pickle=False)
    assert meta["sizes"] == [1, 4, 4, 1] and sorted(arrays.files) == ["W0", "W1", "W2", "b0", "b1", "b2"]
    d = ln.datasets.load("sin2", n=20, seed=0)
    z = d.x_train
    for k in range(3):  # the forward pass in numpy alone
        z = z @ arrays[f"W{k}"].T + arrays[f"b{k}"]
        z = np.maximum(z, 0.0) if k < 2 else z
    assert np.mean((z - d.y_train) ** 2) == pytest.approx(out["train_mse"], rel=1e-12)


def test_train_seeds_runs_one_vectorised_batch(tmp_path):
    res = CliRunner().invoke(app, ARGS + ["--seed", "1", "--seeds", "3", "--json",
                                          "--save-model", str(tmp_path / "best")])
    assert res.exit_code == 0, res.output
    rows = _lines(res.output)
    assert [r["seed"] for r in rows] == [1, 2, 3]
    assert all(r["time_s"] == pytest.approx(r["batch_time_s"] / 3) for r in rows)
    single = _lines(CliRunner().invoke(app, ARGS + ["--seed", "2", "--json"]).output)[0]
    assert rows[1]["train_mse"] == pytest.approx(single["train_mse"], rel=1e-9)
    best = min(rows, key=lambda r: r["train_mse"])
    d = ln.datasets.load("sin2", n=20, seed=0)
    assert f"saved seed {best['seed']}" in res.output
    model, params = load_model(tmp_path / "best")
    assert float(np.mean((np.asarray(model.apply(params, d.x_train)) - d.y_train) ** 2)) == \
        pytest.approx(best["train_mse"], rel=1e-12)


def test_train_weight_decay_prior_reports_the_decay_it_used():
    res = CliRunner().invoke(app, ["train", "--problem", "iris", "--arch", "4-5-3", "--method",
                                   "lbfgs", "--max-iter", "10", "--weight-decay", "prior",
                                   "--json"])
    assert res.exit_code == 0, res.output
    (out,) = _lines(res.output)
    assert out["weight_decay"] == pytest.approx(PRIOR_PRECISION / out["n"])


@pytest.mark.parametrize("extra,needle", [
    (["--method", "sgd9"], "sgd9"),
    (["--activation", "wobble"], "wobble"),
    (["--seeds", "0"], "--seeds"),
    (["--arch", "1-0-1"], "size"),
    (["--problem", "nosuch"], "nosuch"),
])
def test_bad_input_exits_2_naming_the_problem(extra, needle):
    res = CliRunner().invoke(app, ARGS + extra)
    assert res.exit_code == 2 and needle in res.output, res.output


# --- classification (issue 22) -----------------------------------------------------------------
WINE = ["train", "--problem", "wine", "--method", "lbfgs", "--max-iter", "20"]


@pytest.mark.parametrize("extra", [[], ["--opt", "loss=cross_entropy"], ["--loss", "cross_entropy"]])
def test_classification_with_the_wrong_output_width_names_the_right_arch(extra):
    res = CliRunner().invoke(app, WINE + ["--arch", "13-8-1"] + extra)
    assert res.exit_code == 2, res.output
    assert "3 classes" in res.output and "--arch 13-8-3" in res.output


def test_classification_defaults_to_cross_entropy_and_prints_accuracy():
    res = CliRunner().invoke(app, WINE + ["--arch", "13-8-3", "--json"])
    assert res.exit_code == 0, res.output
    (out,) = _lines(res.output)
    assert out["loss"] == "cross_entropy"
    assert 0.0 <= out["train_accuracy"] <= 1.0 and 0.0 <= out["test_accuracy"] <= 1.0
    text = CliRunner().invoke(app, WINE + ["--arch", "13-8-3"])
    assert text.exit_code == 0 and "test accuracy" in text.output and "cross-entropy" in text.output


def test_explicit_mse_on_classification_data_and_bad_loss():
    res = CliRunner().invoke(app, WINE + ["--arch", "13-8-1", "--loss", "mse", "--json"])
    assert res.exit_code == 0, res.output
    (out,) = _lines(res.output)
    assert out["loss"] == "mse" and "train_accuracy" not in out
    bad = CliRunner().invoke(app, WINE + ["--arch", "13-8-3", "--loss", "hinge"])
    assert bad.exit_code == 2 and "unknown --loss 'hinge'" in bad.output
    clash = CliRunner().invoke(app, WINE + ["--arch", "13-8-3", "--loss", "mse", "--opt",
                                            "loss=cross_entropy"])
    assert clash.exit_code == 2 and "disagree" in clash.output


def test_regression_data_default_to_mse():
    res = CliRunner().invoke(app, ARGS + ["--json"])
    assert res.exit_code == 0, res.output
    assert _lines(res.output)[0]["loss"] == "mse"
