"""liftnn.bench.cv (`liftnn bench cv`): bad names refused before any cell, a real cold cell in a
fresh process, rows kept and skipped on a rerun, and the summary's margins and ratios."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from liftnn.bench import cv
from liftnn.cli import app
from liftnn.errors import LiftnnError

pytest.importorskip("sklearn")


@pytest.mark.parametrize("estimators, data, needle", [
    (["ridge", "svm"], ["diabetes"], "unknown cv estimator 'svm'"),
    (["ridge"], ["boston"], "unknown cv data set 'boston'"),
    ([], ["diabetes"], "at least one estimator"),
])
def test_bad_names_are_refused_before_any_cell(tmp_path, estimators, data, needle):
    with pytest.raises(LiftnnError, match=needle):
        cv.run(tmp_path, estimators, data, [0])
    assert not (tmp_path / "cv.jsonl").exists()


def test_cli_bad_estimator_exits_2(tmp_path):
    res = CliRunner().invoke(app, ["bench", "cv", "--methods", "ridge,nope", "--out",
                                   str(tmp_path / "o")])
    assert res.exit_code == 2 and "unknown cv estimator 'nope'" in res.output


def test_a_cell_runs_cold_and_a_rerun_skips_it(tmp_path):
    seen = []
    rows = cv.run(tmp_path, ["ridge"], ["linear"], [0], on_row=lambda r, i, n: seen.append(n))
    assert seen == [1] and len(rows) == 1
    row = rows[0]
    assert row["status"] == "ok" and len(row["score_folds"]) == cv.FOLDS
    assert row["metric"] == "r2"
    # the same figure as scikit-learn's cross_val_score here
    from sklearn.linear_model import RidgeCV
    from sklearn.model_selection import KFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = cv.load("linear")
    ref = cross_val_score(make_pipeline(StandardScaler(), RidgeCV()), X, y,
                          cv=KFold(5, shuffle=True, random_state=0)).mean()
    assert row["score"] == pytest.approx(ref, abs=1e-12)
    assert row["score"] <= row["train_score"] <= 1.0  # the training folds' R^2 beside the test's
    again = cv.run(tmp_path, ["ridge"], ["linear"], [0], on_row=lambda r, i, n: seen.append(n))
    assert seen == [1] and len(again) == 1  # nothing ran again
    assert len((tmp_path / "cv.jsonl").read_text().splitlines()) == 1
    report = cv.write_report(tmp_path, again).read_text()
    assert "| linear | ridge |" in report and "cv.png" in report
    assert (tmp_path / "cv.png").stat().st_size > 0


def test_summary_margins_wins_and_time_ratios():
    def row(e, s, r2, wall, kept=None):
        return {"data": "d", "split": s, "estimator": e, "score": r2, "wall_s": wall,
                "linear_kept": kept, "status": "ok"}

    rows = [row("ridge", 0, 0.50, 0.1), row("ridge", 1, 0.40, 0.1),
            row("sklearn-lbfgs", 0, 0.1, 0.5), row("sklearn-lbfgs", 1, 0.2, 0.5),
            row("alm", 0, 0.52, 2.0, 5), row("alm", 1, 0.39, 3.0, 2),
            {"data": "d", "split": 2, "estimator": "alm", "status": "error", "error": "x"}]
    by = {s["estimator"]: s for s in cv.summarise(rows)}
    assert by["alm"]["score"] == pytest.approx(0.455) and by["alm"]["metric"] == "R²"
    assert by["alm"]["margin"] == pytest.approx(0.005)
    assert by["alm"]["wins"] == 1 and by["alm"]["splits"] == 2
    assert by["alm"]["time_ratio"] == pytest.approx(2.5 / 0.5)
    assert by["alm"]["linear_kept"] == "7/10"
    assert by["ridge"]["margin"] == 0 and by["ridge"]["linear_kept"] == ""
    json.dumps(by)  # plain numbers
    mixed = [dict(r, estimator="liftnn", blend_kept=b) for r, b in
             zip(rows[4:6], (2, 1))]  # the classifier's folds that kept the mixture
    (s,) = [s for s in cv.summarise(rows[:2] + mixed) if s["estimator"] == "liftnn"]
    assert s["linear_kept"] == "7/10 (3 mixed)"


def test_rows_written_before_the_score_key_still_summarise():
    old = {"data": "d", "split": 0, "estimator": "ridge", "r2": 0.4, "train_r2": 0.5,
           "wall_s": 0.1, "linear_kept": None, "status": "ok"}
    (s,) = cv.summarise([old])
    assert s["score"] == 0.4 and s["train_score"] == 0.5 and s["margin"] == 0


def test_a_classification_cell_and_the_estimators_of_the_other_task(tmp_path):
    assert cv.task("iris") == "classification" and cv.task("diabetes") == "regression"
    assert not cv.applies("ridge", "iris") and not cv.applies("logreg", "linear")
    with pytest.raises(LiftnnError, match="no estimator of ridge applies"):
        cv.run(tmp_path, ["ridge"], ["iris"], [0])
    rows = cv.run(tmp_path, ["ridge", "logreg"], ["iris"], [0])
    assert [r["estimator"] for r in rows] == ["logreg"]  # ridge skipped: it regresses
    row = rows[0]
    assert row["status"] == "ok" and row["metric"] == "accuracy"
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = cv.load("iris")
    ref = cross_val_score(make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)),
                          X, y, cv=StratifiedKFold(5, shuffle=True, random_state=0)).mean()
    assert row["score"] == pytest.approx(ref, abs=1e-12)
    (s,) = cv.summarise(rows)
    assert s["metric"] == "accuracy" and s["margin"] == 0  # logreg is its own reference
    assert "| iris | logreg | accuracy |" in cv.write_report(tmp_path, rows).read_text()


def test_a_table_of_a_missing_optional_package_is_refused_before_any_cell(tmp_path, monkeypatch):
    import importlib.util

    from liftnn.bench import cv_tables

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "statsmodels" else real(name, *a))
    with pytest.raises(LiftnnError, match="'engel' comes with statsmodels.*pip install"):
        cv.run(tmp_path, ["ridge"], ["diabetes", "engel"], [0])
    assert not (tmp_path / "cv.jsonl").exists()
    assert set(cv_tables.TABLES) <= set(cv.DATA)
    assert set(cv_tables.CLASSIFICATION) <= set(cv.CLASSIFICATION)


def test_the_optional_tables_load_when_their_packages_are_there():
    pytest.importorskip("statsmodels")
    X, y = cv.load("engel")
    assert X.shape == (235, 1) and abs(y.mean()) < 1e-12 and abs(y.std() - 1) < 1e-12
    X, y = cv.load("fair-affairs")
    assert X.shape == (796, 8) and set(np.unique(y)) == {0, 1}


def test_the_generated_nonlinear_sets_and_digits_load_as_classification():
    for name in cv.NONLINEAR:
        X, y = cv.load(name)
        assert cv.task(name) == "classification" and X.shape == (200, 2)
        assert set(np.unique(y)) == {0, 1} and 60 <= np.sum(y) <= 140  # both classes
    X, y = cv.load("xor")
    np.testing.assert_array_equal(y, (X[:, 0] * X[:, 1] > 0).astype(int))
    X, y = cv.load("digits")
    assert X.shape == (1797, 64) and len(np.unique(y)) == 10
