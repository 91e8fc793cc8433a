"""`liftnn bench cv`: a user's scikit-learn workflow, timed and scored side by side.

For each data set, KFold split seed and estimator:

    cross_validate(make_pipeline(StandardScaler(), estimator), X, y,
                   cv=KFold(5, shuffle=True, random_state=split))

with y standardised; for the classification sets (CLASSIFICATION) StratifiedKFold and the
estimator's accuracy in place of R^2 (the row's "metric").  Each (data, split, estimator) cell runs in a fresh Python process, so every
time is a cold one, as a user's first call would be (the clock starts after the imports: JAX's
and scikit-learn's import time is not the estimator's).  The row (mean R^2 over the folds, the wall
time of the whole cross-validation, the mean training-fold R^2 beside it, and for liftnn's regressor how many folds kept the linear
baseline) is appended to DIR/cv.jsonl as soon as the cell ends.  An interrupted run loses no
finished cell, and rerunning the same command skips the cells already there.  `summarise` gives,
per data set and estimator, the mean R^2 over the splits, the margin over RidgeCV, the median wall
time and its ratio to MLPRegressor(solver="lbfgs") (docs/benchmarks.md "Cross-validation").

Estimators (ESTIMATORS; the classifier for the classification sets):
- liftnn: LiftnnRegressor() / LiftnnClassifier() with every default (the regressor: alm with
  Bayesian regularisation and the linear baseline; the classifier: (32,) ReLU by lbfgs with a
  unit Gaussian prior and the held-out comparison with the softmax regression);
- alm, lm, adam: LiftnnRegressor / LiftnnClassifier(method=...), the other options default;
- ridge: RidgeCV(); bayesian-ridge: BayesianRidge(); gp: `gaussian_process` (regression only);
- logreg: LogisticRegression() (classification only);
- sklearn-lbfgs, sklearn-adam: MLPRegressor / MLPClassifier(solver=...) with their defaults
  ((100,) ReLU, alpha 1e-4).

Data (DATA): diabetes (scikit-learn's bundled copy); friedman1 (make_friedman1, 300 rows, noise
1); linear (make_regression, 200 rows, 10 features of which 5 informative, noise 20); and for
classification scikit-learn's bundled iris, wine, breast_cancer and digits, three generated
two-dimensional sets no line separates (NONLINEAR: moons, make_moons 200 rows noise 0.25;
circles, make_circles 200 rows noise 0.1 factor 0.5; xor, 200 uniform points of [-1, 1]^2
labelled by the sign of x1 x2); and real tables from
statsmodels' and vega_datasets' bundled data when those optional packages are installed
(liftnn.bench.cv_tables).  Without --datasets the
regression sets run (DEFAULT_DATA).  A (data, estimator) pair of the wrong task is skipped.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from liftnn.bench import cv_tables
from liftnn.errors import LiftnnError

ESTIMATORS = ("liftnn", "alm", "lm", "adam", "ridge", "bayesian-ridge", "gp", "logreg",
              "sklearn-lbfgs", "sklearn-adam")
#: generated two-dimensional classification sets no linear boundary separates
NONLINEAR = ("moons", "circles", "xor")
CLASSIFICATION = ("iris", "wine", "breast_cancer", "digits", *NONLINEAR,
                  *cv_tables.CLASSIFICATION)
DATA = ("diabetes", "friedman1", "linear", "iris", "wine", "breast_cancer", "digits", *NONLINEAR,
        *(t for t in cv_tables.TABLES if t not in cv_tables.CLASSIFICATION),
        *cv_tables.CLASSIFICATION)
DEFAULT_DATA = ("diabetes", "friedman1", "linear")
DEFAULT_ESTIMATORS = ("alm", "lm", "ridge", "logreg", "sklearn-lbfgs")
#: estimators of one task only
REGRESSION_ONLY, CLASSIFICATION_ONLY = ("ridge", "bayesian-ridge", "gp"), ("logreg",)
#: the estimator whose wall time the others' are divided by, and the ones whose score is the
#: margin's (the linear model of each task)
TIME_REFERENCE = "sklearn-lbfgs"
SCORE_REFERENCE = {"regression": "ridge", "classification": "logreg"}
FOLDS = 5
#: the estimators drawn in the figure's darker colour
LIFTNN = ("liftnn", "alm", "lm", "adam")
#: seconds one cell may take before it is recorded as an error
CELL_TIMEOUT_S = 1800


def task(name: str) -> str:
    """"classification" or "regression"."""
    return "classification" if name in CLASSIFICATION else "regression"


def applies(estimator: str, data: str) -> bool:
    """Whether the estimator runs on the data set's task."""
    only = CLASSIFICATION_ONLY if task(data) == "regression" else REGRESSION_ONLY
    return estimator not in only


def load(name: str):
    """(X, y) of a DATA set, y standardised (class labels for CLASSIFICATION)."""
    from sklearn import datasets

    if name in cv_tables.TABLES:
        X, y = cv_tables.load(name)
        if name in CLASSIFICATION:
            return X, y
    elif name == "moons":
        return datasets.make_moons(n_samples=200, noise=0.25, random_state=1)
    elif name == "circles":
        return datasets.make_circles(n_samples=200, noise=0.1, factor=0.5, random_state=1)
    elif name == "xor":
        X = np.random.default_rng(4).uniform(-1.0, 1.0, size=(200, 2))
        return X, (X[:, 0] * X[:, 1] > 0).astype(int)
    elif name in CLASSIFICATION:
        return getattr(datasets, f"load_{name}")(return_X_y=True)
    elif name == "diabetes":
        X, y = datasets.load_diabetes(return_X_y=True)
    elif name == "friedman1":
        X, y = datasets.make_friedman1(n_samples=300, noise=1.0, random_state=0)
    elif name == "linear":
        X, y = datasets.make_regression(n_samples=200, n_features=10, n_informative=5,
                                        noise=20.0, random_state=0)
    else:
        raise LiftnnError(f"unknown cv data set {name!r}; choose from {', '.join(DATA)}")
    return X, (y - y.mean()) / y.std()


def gaussian_process(n_features: int, seed: int):
    """scikit-learn's GaussianProcessRegressor as a user would set it up for small tabular
    regression: ConstantKernel * RBF with one length scale per input (ARD) + WhiteKernel (the
    noise level fitted), normalize_y, the marginal likelihood maximised from one start."""
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel

    kernel = (ConstantKernel(1.0) * RBF(length_scale=np.ones(n_features))
              + WhiteKernel(noise_level=0.1))
    return GaussianProcessRegressor(kernel=kernel, normalize_y=True, random_state=seed)


def make(name: str, seed: int, kind: str = "regression", n_features: int = 1):
    """A fresh estimator of ESTIMATORS for the task `kind` (liftnn's and scikit-learn's MLPs with
    random_state=seed; the GP's kernel has n_features length scales)."""
    from sklearn.linear_model import BayesianRidge, LogisticRegression, RidgeCV
    from sklearn.neural_network import MLPClassifier, MLPRegressor

    classify = kind == "classification"
    if name in ("liftnn", "alm", "lm", "adam"):
        from liftnn.sklearn import LiftnnClassifier, LiftnnRegressor

        cls = LiftnnClassifier if classify else LiftnnRegressor
        return cls(random_state=seed) if name == "liftnn" else cls(method=name,
                                                                   random_state=seed)
    if name == "ridge":
        return RidgeCV()
    if name == "bayesian-ridge":
        return BayesianRidge()
    if name == "gp":
        return gaussian_process(n_features, seed)
    if name == "logreg":
        return LogisticRegression(max_iter=1000)
    if name in ("sklearn-lbfgs", "sklearn-adam"):
        return (MLPClassifier if classify else MLPRegressor)(solver=name.split("-")[1],
                                                             random_state=seed)
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
    cv_tables.check(data)
    if not any(applies(e, d) for e in estimators for d in data):
        raise LiftnnError(f"no estimator of {', '.join(estimators)} applies to "
                          f"{', '.join(data)} (ridge, bayesian-ridge and gp regress, logreg "
                          f"classifies)")
    try:
        import sklearn  # noqa: F401
    except ImportError as exc:
        raise LiftnnError("bench cv needs scikit-learn (pip install scikit-learn)") from exc


def cell(data: str, split: int, estimator: str) -> dict:
    """One cross-validation in this process: the row written to cv.jsonl."""
    import warnings

    from sklearn.model_selection import KFold, StratifiedKFold, cross_validate
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = load(data)
    kind = task(data)
    # imports outside the clock
    est = make_pipeline(StandardScaler(), make(estimator, split, kind, X.shape[1]))
    folds = StratifiedKFold if kind == "classification" else KFold
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarnings of the peers' defaults
        out = cross_validate(est, X, y, cv=folds(FOLDS, shuffle=True, random_state=split),
                             return_estimator=True, return_train_score=True,
                             error_score="raise")
    wall = time.perf_counter() - t0
    kept = [getattr(p[-1], "kept_", None) for p in out["estimator"]]
    return {"data": data, "split": split, "estimator": estimator,
            "metric": "accuracy" if kind == "classification" else "r2",
            "score": float(np.mean(out["test_score"])),
            "train_score": float(np.mean(out["train_score"])),
            "score_folds": [float(v) for v in out["test_score"]], "wall_s": wall,
            "linear_kept": sum(k == "linear" for k in kept) if any(kept) else None,
            "blend_kept": sum(k == "blend" for k in kept) if any(kept) else None,
            "status": "ok"}


def score(row: dict) -> float:
    """A row's mean test score (rows written before 2026-12-07 call it r2)."""
    return row["score"] if "score" in row else row["r2"]


def train_score(row: dict) -> float:
    return row.get("train_score", row.get("train_r2", float("nan")))


def _key(row) -> tuple:
    return row["data"], int(row["split"]), row["estimator"]


def read_jsonl(path: Path) -> list[dict]:
    """The rows of a JSON-lines file (none when it does not exist yet)."""
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def load_rows(out: Path) -> list[dict]:
    return read_jsonl(Path(out) / "cv.jsonl")


def run(out: Path, estimators, data, splits, on_row=None, retry_errors: bool = False) -> list:
    """Every (data, split, estimator) cell not yet in OUT/cv.jsonl, each in a fresh process,
    appending its row as it ends; on_row(row, done, total) after each.  Returns all rows."""
    check(estimators, data, splits)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = load_rows(out)
    done = {_key(r) for r in rows if r.get("status") == "ok" or not retry_errors}
    todo = [(d, s, e) for d in data for s in splits for e in estimators
            if (d, s, e) not in done and applies(e, d)]
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
    """Per data set and estimator: the mean score (R^2 or accuracy) over the splits, its margin
    over the task's SCORE_REFERENCE (same splits), the median wall time, its ratio to
    TIME_REFERENCE's, the linear-kept folds (and the classifier's folds that kept a mixture of the
    network and the linear model, "mixed")."""
    ok = [r for r in rows if r.get("status") == "ok"]
    out = []
    for d in dict.fromkeys(r["data"] for r in ok):
        ref_score = {r["split"]: score(r) for r in ok if r["data"] == d
                  and r["estimator"] == SCORE_REFERENCE[task(d)]}
        ref_t = [r["wall_s"] for r in ok if r["data"] == d and r["estimator"] == TIME_REFERENCE]
        for e in dict.fromkeys(r["estimator"] for r in ok if r["data"] == d):
            mine = [r for r in ok if r["data"] == d and r["estimator"] == e]
            margin = [score(r) - ref_score[r["split"]] for r in mine if r["split"] in ref_score]
            wall = float(np.median([r["wall_s"] for r in mine]))
            kept = [r["linear_kept"] for r in mine if r.get("linear_kept") is not None]
            blends = sum(r.get("blend_kept") or 0 for r in mine)
            out.append({
                "data": d, "estimator": e, "splits": len(mine),
                "metric": "accuracy" if task(d) == "classification" else "R²",
                "score": float(np.mean([score(r) for r in mine])),
                "train_score": float(np.mean([train_score(r) for r in mine])),
                "score_by_split": [round(score(r), 4)
                                   for r in sorted(mine, key=lambda r: r["split"])],
                "margin": float(np.mean(margin)) if margin else float("nan"),
                "wins": sum(m >= 0 for m in margin) if margin else None,
                "wall_s": wall,
                "time_ratio": wall / float(np.median(ref_t)) if ref_t else float("nan"),
                "linear_kept": (f"{sum(kept)}/{FOLDS * len(kept)}"
                                + (f" ({blends} mixed)" if blends else "")) if kept else "",
            })
    return out


def write_figure(out: Path, rows: list[dict]) -> Path | None:
    """OUT/cv.png: per data set, each estimator's score per split (dots, the mean as a bar) and
    its wall time per cross-validation (log scale); None without finished rows."""
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
            r2 = [max(v, -0.5) for v in s["score_by_split"]]  # clipped: one bad peer flattens it
            ax_r.bar(i, np.mean(r2), color="#9ecae1" if s["estimator"] not in LIFTNN
                     else "#3182bd")
            ax_r.plot([i] * len(r2), r2, "k.", ms=4)
            ax_t.bar(i, s["wall_s"], color="#bdbdbd")
        reference = SCORE_REFERENCE[task(d)]
        ref = [s["score"] for s in mine if s["estimator"] == reference]
        if ref:
            ax_r.axhline(ref[0], color="#de2d26", lw=0.8, ls="--", label=f"{reference} (mean)")
            ax_r.legend(fontsize=7, loc="lower left")
        for ax in (ax_r, ax_t):
            ax.set_xticks(range(len(est)))
            ax.set_xticklabels(est, rotation=30, ha="right", fontsize=8)
        low = min(max(v, -0.5) for m in mine for v in m["score_by_split"])
        top = max(v for m in mine for v in m["score_by_split"])
        ax_r.set_ylim(max(low - 0.1 * (top - low) - 0.01, -0.5), min(top + 0.05 * (top - low) + 0.005, 1.0))
        ax_r.set_ylabel(f"{d}: {mine[0]['metric']} (≥ −0.5 shown)", fontsize=8)
        ax_t.set_ylabel("wall per CV (s)", fontsize=8)
        ax_t.set_yscale("log")
    path = Path(out) / "cv.png"
    save_figure(fig, path, title=f"liftnn bench cv: {FOLDS}-fold cross_val_score, cold "
                                 f"(dots: split seeds)")
    return path


def write_report(out: Path, rows: list[dict]) -> Path:
    """OUT/report.md: the summary table (markdown) and OUT/cv.png (`write_figure`)."""
    intro = (f"{FOLDS}-fold cross_val_score of make_pipeline(StandardScaler(), estimator), y "
             f"standardised (classification: StratifiedKFold, accuracy); each cell a fresh "
             f"process (cold). margin = mean score minus the linear model's on the same splits "
             f"({SCORE_REFERENCE['regression']} for regression, "
             f"{SCORE_REFERENCE['classification']} for classification; wins: splits with "
             f"margin >= 0); time ratio = median wall / {TIME_REFERENCE}'s.")
    columns = ("data", "estimator", "metric", "train score", "mean score", "score by split",
               "margin", "wins", "median wall (s)", "time ratio", "linear kept")
    table = []
    for s in summarise(rows):
        wins = "" if s["wins"] is None else f"{s['wins']}/{s['splits']}"
        by_split = ", ".join(f"{v:.4f}" for v in s["score_by_split"])
        table.append((s["data"], s["estimator"], s["metric"], f"{s['train_score']:.4f}",
                      f"{s['score']:.4f}", by_split, f"{s['margin']:+.4f}", wins,
                      f"{s['wall_s']:.2f}", f"{s['time_ratio']:.1f}x", s["linear_kept"]))
    errors = [f"{r['data']} split {r['split']} {r['estimator']}: {r['error']}"
              for r in rows if r.get("status") != "ok"]
    figure = write_figure(out, rows)
    return markdown_report(out, "liftnn bench cv", intro, columns, table, errors,
                           figure and (figure, "score per split and wall time per estimator"))


def markdown_report(out: Path, title: str, intro: str, columns, table, errors,
                    figure=None) -> Path:
    """OUT/report.md of a bench that writes rows of its own (cv, coverage): "# title", the
    intro, a markdown table (columns, then one tuple of cells per row), an "error: ..." line per
    failed row and, with figure = (path, caption), the figure beside it."""
    lines = [f"# {title}", "", intro, "", "| " + " | ".join(columns) + " |",
             "|---" * len(columns) + "|"]
    lines += ["| " + " | ".join(str(c) for c in cells) + " |" for cells in table]
    lines += [f"\nerror: {e}" for e in errors]
    if figure:
        lines.append(f"\n![{figure[1]}]({Path(figure[0]).name})")
    path = Path(out) / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path
