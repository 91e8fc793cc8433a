"""liftnn.bench.coverage (`liftnn bench coverage`): the interval scores against their known
values on Gaussian draws, the problems' test targets, rows kept and skipped on a rerun, the
report, and bad names refused before any fit."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from typer.testing import CliRunner

from liftnn.bench import coverage
from liftnn.cli import app
from liftnn.errors import LiftnnError

pytest.importorskip("sklearn")


def test_scores_of_the_true_predictive_distribution_are_the_nominal_ones():
    rng = np.random.default_rng(0)
    n = 400_000
    mean = rng.standard_normal(n)
    std = np.exp(0.3 * rng.standard_normal(n))
    y = mean + std * rng.standard_normal(n)
    s = coverage.scores(y, mean, std)
    assert s["coverage"] == pytest.approx(0.95, abs=2e-3)
    assert s["coverage_1sd"] == pytest.approx(0.6827, abs=3e-3)
    assert s["mean_std"] == pytest.approx(np.mean(std))
    # NLPD of the truth: 1/2 + 1/2 ln(2 pi) + E ln std
    assert s["nlpd"] == pytest.approx(0.5 + 0.5 * math.log(2 * math.pi) + np.mean(np.log(std)),
                                      abs=5e-3)
    # intervals half as wide: lower coverage and a worse (higher) NLPD
    narrow = coverage.scores(y, mean, std / 2)
    within = math.erf(coverage.Z95 / 2 / math.sqrt(2))  # P(|Z| <= 1.96 / 2)
    assert narrow["coverage"] == pytest.approx(within, abs=3e-3) and narrow["nlpd"] > s["nlpd"]


@pytest.mark.parametrize("std, needle", [(np.array([1.0, 0.0]), "positive"),
                                         (np.array([1.0]), "one length")])
def test_scores_refuse_bad_stds(std, needle):
    with pytest.raises(LiftnnError, match=needle):
        coverage.scores(np.zeros(2), np.zeros(2), std)


def test_the_sin2_test_targets_carry_the_training_noise():
    d = coverage.draw("sin2", 3)
    clean = np.sin(d["X_test"][:, 0] ** 2)
    noise = d["y_test"] - clean
    assert d["X_test"].shape[0] == 200 * coverage.NOISE_REPLICATES
    assert abs(noise.mean()) < 0.01 and noise.std() == pytest.approx(coverage.SIN2_NOISE, rel=0.05)
    realised = d["y"] - np.sin(d["X"][:, 0] ** 2)
    assert d["noise_rms"] == pytest.approx(np.sqrt(np.mean(realised**2)))
    f = coverage.draw("friedman1", 0)
    assert f["noise_rms"] == pytest.approx(1.0, abs=0.15) and f["X_test"].shape == (2000, 10)
    assert math.isnan(coverage.draw("diabetes", 0)["noise_rms"])


@pytest.mark.parametrize("estimators, problems, needle", [
    (["gp", "svm"], ["sin2"], "unknown coverage estimator 'svm'"),
    (["gp"], ["boston"], "unknown coverage problem 'boston'"),
    ([], ["sin2"], "at least one estimator"),
])
def test_bad_names_are_refused_before_any_fit(tmp_path, estimators, problems, needle):
    with pytest.raises(LiftnnError, match=needle):
        coverage.run(tmp_path, estimators, problems, [0])
    assert not (tmp_path / "coverage.jsonl").exists()


def test_cli_bad_estimator_exits_2(tmp_path):
    res = CliRunner().invoke(app, ["bench", "coverage", "--methods", "gp,nope", "--out",
                                   str(tmp_path / "o")])
    assert res.exit_code == 2 and "unknown coverage estimator 'nope'" in res.output


def test_rows_are_kept_a_rerun_skips_them_and_the_report_reads_them(tmp_path):
    seen = []
    rows = coverage.run(tmp_path, ["bayesian-ridge"], ["sin2", "diabetes"], [0, 1],
                        on_row=lambda r, i, n: seen.append((i, n)))
    assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert all(r["status"] == "ok" for r in rows)
    # the row's coverage is BayesianRidge's own, recomputed here
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import BayesianRidge
    from sklearn.model_selection import train_test_split

    X, y = load_diabetes(return_X_y=True)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.25, random_state=1)
    mx, sx, my, sy = Xtr.mean(0), Xtr.std(0), ytr.mean(), ytr.std()
    est = BayesianRidge().fit((Xtr - mx) / sx, (ytr - my) / sy)
    mean, std = est.predict((Xte - mx) / sx, return_std=True)
    ref = np.mean(np.abs((yte - my) / sy - mean) <= coverage.Z95 * std)
    row = next(r for r in rows if r["problem"] == "diabetes" and r["draw"] == 1)
    assert row["coverage"] == pytest.approx(ref, abs=1e-12) and row["noise_rms"] is None
    again = coverage.run(tmp_path, ["bayesian-ridge"], ["sin2", "diabetes"], [0, 1],
                         on_row=lambda r, i, n: seen.append((i, n)))
    assert len(seen) == 4 and len(again) == 4  # nothing ran again
    lines = (tmp_path / "coverage.jsonl").read_text().splitlines()
    assert len(lines) == 4 and json.loads(lines[0])["problem"] == "sin2"
    summary = coverage.summarise(again)
    sin2 = next(s for s in summary if s["problem"] == "sin2")
    covs = [r["coverage"] for r in rows if r["problem"] == "sin2"]
    assert sin2["draws"] == 2 and sin2["coverage"] == pytest.approx(np.mean(covs))
    assert sin2["in_band"] == sum(coverage.BAND[0] <= c <= coverage.BAND[1] for c in covs)
    assert sin2["linear_kept"] is None
    report = coverage.write_report(tmp_path, again).read_text()
    assert "| sin2 | bayesian-ridge | 2 |" in report and "coverage.png" in report
    assert (tmp_path / "coverage.png").stat().st_size > 0


@pytest.mark.slow
def test_liftnn_intervals_on_sin2_hold_about_the_nominal_share(tmp_path):
    rows = coverage.run(tmp_path, ["liftnn-16-16"], ["sin2"], [1, 2])
    for r in rows:
        assert r["status"] == "ok" and r["kept"] in ("network", "blend")  # blend: stacked
        assert coverage.BAND[0] <= r["coverage"] <= coverage.BAND[1]
