"""The seeds-lectures suite (liftnn.bench.lectures), reduced: it runs, writes its figures and
report, and reproduces what the seeds state (the numbers are checked, not just the files)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from liftnn.bench.lectures import WOLFE_PAIRS, build_report, run_lectures


@pytest.fixture(scope="module")
def lectures(tmp_path_factory):
    out = tmp_path_factory.mktemp("lectures")
    return out, run_lectures(out, quick=True)


def test_files_and_report_sections(lectures):
    out, data = lectures
    assert (out / "report.md").is_file() and (out / "lectures.json").is_file()
    assert len(data["figures"]) == 12
    for name in data["figures"]:
        assert (out / name).stat().st_size > 5000, name  # a real PNG, not an empty canvas
        assert f"({name})" in (out / "report.md").read_text()
    text = (out / "report.md").read_text()
    for header in ("Seed 004: the three-point line fit", "Seed 004: the step size",
                   "Gaussian bump", "Seed 001: BFGS on the single-layer network",
                   "two-hidden-layer network", "Seed 003"):
        assert header in text


def test_line_fit_reaches_the_closed_form(lectures):
    _, data = lectures
    lf = data["line_fit"]
    np.testing.assert_allclose(lf["closed_form"], [0.95, 1.05], atol=1e-12)
    for row in lf["rows"]:
        assert row["error"] <= 1e-8 and row["status"] == "converged", row["method"]


def test_step_sizes_too_large_diverges_and_the_others_converge(lectures):
    _, data = lectures
    ss = data["step_sizes"]
    assert ss["bound"] == pytest.approx(2.0 / max(ss["lambda"]))
    by = {(r["method"], r["label"], r["options"]["lr"]): r for r in ss["rows"]}
    statuses = {label: r["status"] for (m, label, _), r in by.items() if m == "gd"}
    assert statuses == {"too small": "max_iter", "good": "converged", "too large": "diverged"}
    for (m, label, lr), r in by.items():
        if m == "momentum":
            assert lr + r["options"]["beta"] == pytest.approx(1.0) and r["status"] == "converged"


def test_seed_001_bfgs_reproduces_the_reports_observations(lectures):
    """Scale 0.01: the loss falls by many orders in 20 iterations, more slowly the stronger the
    Wolfe pair; scale 100 saturates the sigmoids and makes no progress."""
    _, data = lectures
    rows = data["moeller"]["rows"]
    small = [next(r for r in rows if r["scale"] == 0.01 and (r["mu"], r["eta"]) == p)
             for p in WOLFE_PAIRS]
    assert all(r["nit"] == 20 and len(r["losses"]) == 21 for r in small)
    finals = [r["final"] for r in small]
    assert finals[0] < 1e-6 * small[0]["losses"][0]
    assert finals[0] < finals[1] < finals[2]
    big = [r for r in rows if r["scale"] == 100.0]
    assert all(r["final"] > 0.1 for r in big)
    assert len(data["moeller2"]["rows"]) == 9 and data["moeller2"]["n_params"] == 62


def test_seed_003_table_and_spectra(lectures):
    _, data = lectures
    s3 = data["seed003"]
    assert s3["n_params"] == 13 and len(s3["eigenvalues0"]) == 13
    lam0 = np.asarray(s3["eigenvalues0"])
    assert s3["condition0"] == pytest.approx(np.abs(lam0).max() / np.abs(lam0).min())
    for row in s3["rows"]:
        assert row["loss"] < row["losses"][0] and len(row["eigenvalues"]) == 13
    newton = next(r for r in s3["rows"] if r["method"] == "newton")
    assert newton["nhev"] == newton["nit"]


def test_build_report_rebuilds_from_the_stored_numbers(lectures):
    out, _ = lectures
    before = (out / "report.md").read_text()
    (out / "report.md").unlink()
    again = build_report(out)
    assert (out / "report.md").read_text() == before
    assert json.loads((out / "lectures.json").read_text())["quick"] is True
    assert len(again["figures"]) == 12


@pytest.mark.slow
def test_full_suite(tmp_path):
    """The full run (about 20 s): every classical method and gd/momentum/nesterov/adam/rprop
    reach the line fit to 1e-8; the bump has starts that end in worse local minima; seed 003
    runs all seven methods."""
    data = run_lectures(tmp_path)
    rows = {r["method"]: r for r in data["line_fit"]["rows"]}
    for m in ("cg", "bfgs", "lbfgs", "newton", "newton-cg", "gn", "lm", "gd", "momentum",
              "nesterov", "adam", "rprop"):
        assert rows[m]["error"] <= 1e-8, m
    gb = data["gauss_bump"]
    assert any(r["best"] for r in gb["rows"]) and not all(r["best"] for r in gb["rows"])
    assert gb["best_loss"] < 0.1
    assert {r["method"] for r in data["seed003"]["rows"]} == {
        "newton", "bfgs", "cg", "gn", "lm", "lbfgs", "newton-cg"}
