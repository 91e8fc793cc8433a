"""`liftnn inspect`: --hessian / --jacobian / --gradcheck run, print consistent JSON, write their
PNGs; bad input exits with status 2 and a one-line message."""

import json
import math

import pytest
from typer.testing import CliRunner

from liftnn.cli import app

runner = CliRunner()
PNG = b"\x89PNG\r\n\x1a\n"


def _json(args):
    res = runner.invoke(app, ["inspect", *args, "--json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_jacobian_json_and_spy_plots(tmp_path):
    spy = tmp_path / "jac.png"
    out = _json(["--jacobian", "--arch", "2-3-3-2", "--n", "7", "--spy", str(spy)])
    # seed 000 figs. 3.2/3.3: I=2, O=2, W=3, D=2, N=7
    assert (out["rows"], out["cols"]) == (56, 71) == (out["formula_rows"], out["formula_cols"])
    assert out["formula_matches"] is True
    assert out["nnz"] == 350
    assert out["density"] == pytest.approx(350 / (56 * 71))
    assert out["max_abs_error"] <= 1e-10
    assert out["kinks"] == 0 and out["max_abs_error_off_kinks"] == out["max_abs_error"]
    assert out["bandwidth_banded"] == out["bandwidth_banded_formula"]
    assert sum(out["bandwidth_banded"]) < sum(out["bandwidth_natural"])
    assert out["spy"] == str(spy) and out["spy_banded"] == str(tmp_path / "jac_banded.png")
    for p in (spy, tmp_path / "jac_banded.png"):
        assert p.read_bytes()[:8] == PNG and p.stat().st_size > 5000


def test_hessian_and_gradcheck_json_fields_consistent_and_plot(tmp_path):
    """One run with both checks: their fields share one flat JSON object."""
    plot = tmp_path / "spec.png"
    out = _json(["--hessian", "--gradcheck", "--problem", "sin2", "--n", "10", "--arch", "1-4-4-1",
                 "--activation", "tanh", "--seed", "0", "--plot", str(plot)])
    assert out["checks"] == ["hessian", "gradcheck"]
    assert out["ad_vs_fd"] <= 1e-7  # jax.grad vs central differences
    if out["backprop_available"] and out["backprop_vs_ad"] is not None:
        assert out["backprop_vs_ad"] <= 1e-10
    for key in ("n_params", "loss", "grad_norm", "lambda_max", "lambda_min", "condition_number",
                "positive_definite", "eta_bound", "layers", "n_negative", "method"):
        assert key in out
    assert out["n_params"] == 1 * 4 + 4 + 4 * 4 + 4 + 4 * 1 + 1
    assert out["method"] == "dense" and out["condition_exact"] is True
    assert out["lambda_min"] <= out["lambda_max"]
    assert out["lambda_max_power"] == pytest.approx(out["lambda_max"], rel=1e-6)
    assert out["eta_bound"] == pytest.approx(2.0 / out["lambda_max"])
    assert out["positive_definite"] == (out["lambda_min"] > 0)
    if out["singular"]:
        assert out["condition_number"] is None
    else:
        ends = sorted([abs(out["lambda_max"]), abs(out["lambda_min"])])
        assert out["condition_number"] >= ends[1] / ends[0] * (1 - 1e-12)  # max|l|/min|l| bound
    assert out["n_negative"] + out["n_zero"] + out["n_positive"] == out["n_params"]
    assert len(out["layers"]) == 3
    total = sum(lr["weight_grad_norm"] ** 2 + lr["bias_grad_norm"] ** 2 for lr in out["layers"])
    assert math.sqrt(total) == pytest.approx(out["grad_norm"], rel=1e-10)
    assert plot.read_bytes()[:8] == PNG


def test_table_output(tmp_path):
    res = runner.invoke(app, ["inspect", "--jacobian", "--arch", "2-3-3-2", "--n", "7",
                              "--spy", str(tmp_path / "t.png")])
    assert res.exit_code == 0, res.output
    assert "formula matches" in res.stdout and "nnz" in res.stdout
    assert not res.stdout.lstrip().startswith("{")  # a table, not JSON


@pytest.mark.parametrize("args,needle", [
    (["--hessian", "--arch", "1-x-1"], "architecture"),
    (["--hessian", "--n", "0"], "--n"),
    ([], "choose at least one"),
    (["--hessian", "--problem", "nope"], "data set"),
    (["--jacobian", "--problem", "sin2", "--arch", "2-3-3-2"], "features"),
    (["--hessian", "--activation", "swish"], "activation"),
    (["--jacobian", "--spy", "/nonexistent-dir/x.png"], "does not exist"),
    (["--hessian", "--method", "qr"], "method"),
])
def test_bad_input_exits_2(args, needle):
    res = runner.invoke(app, ["inspect", *args])
    assert res.exit_code == 2, res.output
    assert needle in res.output
