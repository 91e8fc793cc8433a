"""`liftnn bench cv`: a user's scikit-learn workflow, timed and scored side by side.

For each data set, KFold split seed and estimator:

    cross_validate(make_pipeline(StandardScaler(), estimator), X, y,
                   cv=KFold(5, shuffle=True, random_state=split))

with y standardised.  Each (data, split, estimator) cell runs in a fresh Python process, so every
time is a cold one, as a user's first call would be (the clock starts after the imports: JAX's
and scikit-learn's import time is not the estimator's).  The row (mean R^2 over the folds, the wall
time of the whole cross-validation, the mean training-fold R^2 beside it, and for liftnn's regressor how many folds kept the linear
baseline) is appended to DIR/cv.jsonl as soon as the cell ends.  An interrupted run loses no
finished cell, and rerunning the same command skips the cells already there.  `summarise` gives,
per data set and estimator, the mean R^2 over the splits, the margin over RidgeCV, the median wall
time and its ratio to MLPRegressor(solver="lbfgs") (docs/benchmarks.md "Cross-validation").

Estimators (ESTIMATORS):
- alm, lm, adam: LiftnnRegressor(method=...) with its defaults (alm and lm: weight_decay="bayes"
  and the linear baseline);
- ridge: RidgeCV();
- bayesian-ridge: BayesianRidge();
- sklearn-lbfgs, sklearn-adam: MLPRegressor(solver=...) with its defaults ((100,) ReLU, alpha
  1e-4).

Data (DATA): diabetes (scikit-learn's bundled copy); friedman1 (make_friedman1, 300 rows, noise
1); linear (make_regression, 200 rows, 10 features of which 5 informative, noise 20).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from liftnn.errors import LiftnnError

ESTIMATORS = ("alm", "lm", "adam", "ridge", "bayesian-ridge", "sklearn-lbfgs", "sklearn-adam")
DATA = ("diabetes", "friedman1", "linear")
DEFAULT_ESTIMATORS = ("alm", "lm", "ridge", "sklearn-lbfgs")
#: the estimator whose wall time the others' are divided by, and the one whose R^2 is the margin's
TIME_REFERENCE, SCORE_REFERENCE = "sklearn-lbfgs", "ridge"
FOLDS = 5
#: seconds one cell may take before it is recorded as an error
CELL_TIMEOUT_S = 1800


def load(name: str):
    """(X, y) of a DATA set, y standardised."""
    from sklearn import datasets

    if name == "diabetes":
        X, y = datasets.load_diabetes(return_X_y=True)
    elif name == "friedman1":
        X, y = datasets.make_friedman1(n_samples=300, noise=1.0, random_state=0)
    elif name == "linear":
        X, y = datasets.make_regression(n_samples=200, n_features=10, n_informative=5,
                                        noise=20.0, random_state=0)
    else:
        raise LiftnnError(f"unknown cv data set {name!r}; choose from {', '.join(DATA)}")
    return X, (y - y.mean()) / y.std()


def make(name: str, seed: int):
    """A fresh estimator of ESTIMATORS (liftnn's and MLPRegressor's with random_state=seed)."""
    from sklearn.linear_model import BayesianRidge, RidgeCV
    from sklearn.neural_network import MLPRegressor

    if name in ("alm", "lm", "adam"):
        from liftnn.sklearn import LiftnnRegressor

        return LiftnnRegressor(method=name, random_state=seed)
    if name == "ridge":
        return RidgeCV()
    if name == "bayesian-ridge":
        return BayesianRidge()
    if name in ("sklearn-lbfgs", "sklearn-adam"):
        return MLPRegressor(solver=name.split("-")[1], random_state=seed)
    raise LiftnnError(f"unknown cv estimator {name!r}; choose from {', '.join(ESTIMATORS)}")


def check(estimators, data, splits) -> None:
    """Refuse unknown names and empty choices before any cell runs."""
    if not estimators or not data or not splits:
        raise LiftnnError("bench cv needs at least one estimator, one data set and one split")
    for e in estimators:
        if e not in ESTIMATORS:
            raise LiftnnError(f"unknown cv estimator {e!r}; choose from {', '.join(ESTIMATORS)}")
    for d in data:
        if d not in DATA:
            raise LiftnnError(f"unknown cv data set {d!r}; choose from {', '.join(DATA)}")
    try:
        import sklearn  # noqa: F401
    except ImportError as exc:
        raise LiftnnError("bench cv needs scikit-learn (pip install scikit-learn)") from exc


def cell(data: str, split: int, estimator: str) -> dict:
    """One cross-validation in this process: the row written to cv.jsonl."""
    import warnings

    from sklearn.model_selection import KFold, cross_validate
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = load(data)
    est = make_pipeline(StandardScaler(), make(estimator, split))  # imports outside the clock
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarnings of the peers' defaults
        out = cross_validate(est, X, y,
                             cv=KFold(FOLDS, shuffle=True, random_state=split),
                             return_estimator=True, return_train_score=True,
                             error_score="raise")
    wall = time.perf_counter() - t0
    kept = [getattr(p[-1], "kept_", None) for p in out["estimator"]]
    return {"data": data, "split": split, "estimator": estimator,
            "r2": float(np.mean(out["test_score"])),
            "train_r2": float(np.mean(out["train_score"])),
            "r2_folds": [float(v) for v in out["test_score"]], "wall_s": wall,
            "linear_kept": sum(k == "linear" for k in kept) if any(kept) else None,
            "status": "ok"}


def _key(row) -> tuple:
    return row["data"], int(row["split"]), row["estimator"]


def load_rows(out: Path) -> list[dict]:
    path = Path(out) / "cv.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def run(out: Path, estimators, data, splits, on_row=None, retry_errors: bool = False) -> list:
    """Every (data, split, estimator) cell not yet in OUT/cv.jsonl, each in a fresh process,
    appending its row as it ends; on_row(row, done, total) after each.  Returns all rows."""
    check(estimators, data, splits)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = load_rows(out)
    done = {_key(r) for r in rows if r.get("status") == "ok" or not retry_errors}
    todo = [(d, s, e) for d in data for s in splits for e in estimators if (d, s, e) not in done]
    total = len(todo)
    with open(out / "cv.jsonl", "a") as f:
        for i, (d, s, e) in enumerate(todo):
            row = _run_cell(d, s, e)
            f.write(json.dumps(row) + "\n")
            f.flush()
            rows.append(row)
            if on_row is not None:
                on_row(row, i + 1, total)
    return rows


def _run_cell(data: str, split: int, estimator: str) -> dict:
    """cell() in a fresh interpreter (a cold start); an error row if it fails."""
    args = json.dumps([data, split, estimator])
    code = ("import json, sys; from liftnn.bench.cv import cell; "
            "print(json.dumps(cell(*json.loads(sys.argv[1]))))")
    t0 = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, "-c", code, args], check=False,
                              capture_output=True, text=True, timeout=CELL_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return {"data": data, "split": split, "estimator": estimator, "status": "error",
                "error": f"timed out after {CELL_TIMEOUT_S} s",
                "wall_s": time.perf_counter() - t0}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {"data": data, "split": split, "estimator": estimator, "status": "error",
                "error": " | ".join(tail) or f"exit status {proc.returncode}",
                "wall_s": time.perf_counter() - t0}
    return json.loads(lines[-1])


def summarise(rows: list[dict]) -> list[dict]:
    """Per data set and estimator: mean R^2 over the splits, its margin over SCORE_REFERENCE's
    (same splits), the median wall time, its ratio to TIME_REFERENCE's, the linear-kept folds."""
    ok = [r for r in rows if r.get("status") == "ok"]
    out = []
    for d in dict.fromkeys(r["data"] for r in ok):
        ref_r2 = {r["split"]: r["r2"] for r in ok if r["data"] == d
                  and r["estimator"] == SCORE_REFERENCE}
        ref_t = [r["wall_s"] for r in ok if r["data"] == d and r["estimator"] == TIME_REFERENCE]
        for e in dict.fromkeys(r["estimator"] for r in ok if r["data"] == d):
            mine = [r for r in ok if r["data"] == d and r["estimator"] == e]
            margin = [r["r2"] - ref_r2[r["split"]] for r in mine if r["split"] in ref_r2]
            wall = float(np.median([r["wall_s"] for r in mine]))
            kept = [r["linear_kept"] for r in mine if r.get("linear_kept") is not None]
            out.append({
                "data": d, "estimator": e, "splits": len(mine),
                "r2": float(np.mean([r["r2"] for r in mine])),
                "train_r2": float(np.mean([r.get("train_r2", np.nan) for r in mine])),
                "r2_by_split": [round(r["r2"], 4) for r in sorted(mine, key=lambda r: r["split"])],
                "margin": float(np.mean(margin)) if margin else float("nan"),
                "wins": sum(m >= 0 for m in margin) if margin else None,
                "wall_s": wall,
                "time_ratio": wall / float(np.median(ref_t)) if ref_t else float("nan"),
                "linear_kept": f"{sum(kept)}/{FOLDS * len(kept)}" if kept else "",
            })
    return out


def write_figure(out: Path, rows: list[dict]) -> Path | None:
    """OUT/cv.png: per data set, each estimator's R^2 per split (dots, the mean as a bar) and its
    wall time per cross-validation (log scale); None without finished rows."""
    from liftnn.bench.figures import _plt, save_figure

    summary = summarise(rows)
    data = list(dict.fromkeys(s["data"] for s in summary))
    if not data:
        return None
    plt = _plt()
    fig, axes = plt.subplots(len(data), 2, figsize=(10, 2.8 * len(data)), squeeze=False)
    for (ax_r, ax_t), d in zip(axes, data):
        mine = [s for s in summary if s["data"] == d]
        est = [s["estimator"] for s in mine]
        for i, s in enumerate(mine):
            r2 = [max(v, -0.5) for v in s["r2_by_split"]]  # clipped: one bad peer flattens it
            ax_r.bar(i, np.mean(r2), color="#9ecae1" if s["estimator"] not in ("alm", "lm")
                     else "#3182bd")
            ax_r.plot([i] * len(r2), r2, "k.", ms=4)
            ax_t.bar(i, s["wall_s"], color="#bdbdbd")
        ref = [s["r2"] for s in mine if s["estimator"] == SCORE_REFERENCE]
        if ref:
            ax_r.axhline(ref[0], color="#de2d26", lw=0.8, ls="--",
                         label=f"{SCORE_REFERENCE} (mean)")
            ax_r.legend(fontsize=7, loc="lower left")
        for ax in (ax_r, ax_t):
            ax.set_xticks(range(len(est)))
            ax.set_xticklabels(est, rotation=30, ha="right", fontsize=8)
        ax_r.set_ylabel(f"{d}: R² (≥ −0.5 shown)", fontsize=8)
        ax_t.set_ylabel("wall per CV (s)", fontsize=8)
        ax_t.set_yscale("log")
    path = Path(out) / "cv.png"
    save_figure(fig, path, title=f"liftnn bench cv: {FOLDS}-fold cross_val_score, cold "
                                 f"(dots: KFold splits)")
    return path


def write_report(out: Path, rows: list[dict]) -> Path:
    """OUT/report.md: the summary table (markdown) and OUT/cv.png (`write_figure`)."""
    intro = (f"{FOLDS}-fold cross_val_score of make_pipeline(StandardScaler(), estimator), y "
             f"standardised; each cell a fresh process (cold). margin = mean R^2 minus "
             f"{SCORE_REFERENCE}'s on the same splits (wins: splits with margin >= 0); time "
             f"ratio = median wall / {TIME_REFERENCE}'s.")
    header = ("| data | estimator | train R² | mean R² | R² by split | margin | wins | "
              "median wall (s) | time ratio | linear kept |")
    lines = ["# liftnn bench cv", "", intro, "", header, "|---|---|---|---|---|---|---|---|---|---|"]
    for s in summarise(rows):
        wins = "" if s["wins"] is None else f"{s['wins']}/{s['splits']}"
        by_split = ", ".join(f"{v:.4f}" for v in s["r2_by_split"])
        lines.append(f"| {s['data']} | {s['estimator']} | {s['train_r2']:.4f} | {s['r2']:.4f} | "
                     f"{by_split} | "
                     f"{s['margin']:+.4f} | {wins} | {s['wall_s']:.2f} | "
                     f"{s['time_ratio']:.1f}x | {s['linear_kept']} |")
    errors = [r for r in rows if r.get("status") != "ok"]
    for r in errors:
        lines.append(f"\nerror: {r['data']} split {r['split']} {r['estimator']}: {r['error']}")
    if write_figure(out, rows) is not None:
        lines.append("\n![R² per split and wall time per estimator](cv.png)")
    path = Path(out) / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path
