"""`liftnn bench coverage`: are the predictive intervals honest?

`LiftnnRegressor.predict(X, return_std=True)` gives a mean and a standard deviation per test point
(the Laplace posterior of Bayesian regularisation plus the evidence's noise level, docs/bayes.md).
An interval mean ± 1.96 std should hold about 95 % of fresh targets.  This benchmark measures
that on problems whose noise is known, over several draws of the training data, next to the
estimators a user would otherwise ask for a standard deviation (scikit-learn's BayesianRidge and
GaussianProcessRegressor), so that one lucky or unlucky sample of noise decides nothing.

Problems (PROBLEMS), each drawn again for every draw seed d:

- sin2: y = sin(x^2) + N(0, 0.1^2), n = 40 evenly on [0, pi] (liftnn.datasets sin2 with
  seed=d); the test targets are the 200 noise-free grid values plus NOISE_REPLICATES fresh
  N(0, 0.1^2) draws each (the training noise, as the issue asks);
- friedman1: scikit-learn's make_friedman1 (10 inputs, 5 used), 200 training rows with noise
  N(0, 1) (random_state=d) and 2000 fresh noisy test rows (random_state=TEST_OFFSET + d);
- diabetes: scikit-learn's bundled table, a 75/25 split (random_state=d); its noise is unknown,
  so the coverage of the real held-out targets is the figure.

For every problem the inputs and the target are standardised with the training rows'
statistics (the coverage is scale-free; the RMSE and the negative log predictive density are
in standard deviations of the training target).  Estimators (ESTIMATORS):

- liftnn: LiftnnRegressor() with every default (alm, Bayesian regularisation, the linear
  baseline), random_state=d;
- liftnn-16-16: the same with hidden_layer_sizes=(16, 16);
- bayesian-ridge: BayesianRidge() (the linear model's posterior and noise);
- gp: GaussianProcessRegressor(ConstantKernel * RBF(one length scale per input) + WhiteKernel,
  normalize_y=True), liftnn.bench.cv.gaussian_process.

A row per (problem, draw, estimator): coverage of ± 1.96 std (nominal 0.95) and of ± 1 std
(0.683), the mean std, the test RMSE, the mean negative log predictive density of a Gaussian
(NLPD, a proper score: lower is better, it punishes intervals that are too wide as well as too
narrow), the realised noise RMS of the training targets where the noise is known, the fit time
and liftnn's kept model.  Rows go to DIR/coverage.jsonl as each ends (an interrupted run keeps
them; the same command resumes).  The fits run in this process: the times are not cold ones
(`liftnn bench cv` measures those).
"""

from __future__ import annotations

import json
import math
import time
import warnings
from pathlib import Path

import numpy as np

from liftnn.bench.cv import gaussian_process, markdown_report, read_jsonl
from liftnn.errors import LiftnnError

PROBLEMS = ("sin2", "friedman1", "diabetes")
ESTIMATORS = ("liftnn", "liftnn-16-16", "bayesian-ridge", "gp")
DEFAULT_DRAWS = 10
#: the interval whose coverage is the headline: mean ± Z95 std
Z95 = 1.959963984540054
#: the band a coverage of ± 1.96 std should fall in (the models issue's target)
BAND = (0.85, 0.99)
#: fresh noise draws per sin2 test point
NOISE_REPLICATES = 20
#: friedman1's test rows come from random_state TEST_OFFSET + draw
TEST_OFFSET = 1000
SIN2_NOISE = 0.1


def check(estimators, problems, draws) -> None:
    """Refuse unknown names and empty choices before any fit."""
    if not estimators or not problems or not draws:
        raise LiftnnError("bench coverage needs at least one estimator, one problem and one draw")
    for e in estimators:
        if e not in ESTIMATORS:
            raise LiftnnError(f"unknown coverage estimator {e!r}; choose from "
                              f"{', '.join(ESTIMATORS)}")
    for p in problems:
        if p not in PROBLEMS:
            raise LiftnnError(f"unknown coverage problem {p!r}; choose from {', '.join(PROBLEMS)}")
    try:
        import sklearn  # noqa: F401
    except ImportError as exc:
        raise LiftnnError("bench coverage needs scikit-learn (pip install scikit-learn)") from exc


def draw(problem: str, d: int) -> dict:
    """One draw of a problem: X, y (training), X_test, y_test (the targets the intervals are
    scored on), noise_rms (the realised noise of the training targets; nan where unknown)."""
    from sklearn import datasets

    if problem == "sin2":
        from liftnn.datasets import load

        ds = load("sin2", seed=d, n=40, noise=SIN2_NOISE)
        X, y = ds.x_train, ds.y_train[:, 0]
        rng = np.random.default_rng([TEST_OFFSET, d])
        X_test = np.repeat(ds.x_test, NOISE_REPLICATES, axis=0)
        y_test = (np.repeat(ds.y_test[:, 0], NOISE_REPLICATES)
                  + SIN2_NOISE * rng.standard_normal(X_test.shape[0]))
        noise = y - np.sin(X[:, 0] ** 2)
    elif problem == "friedman1":
        X, y = datasets.make_friedman1(n_samples=200, noise=1.0, random_state=d)
        clean = datasets.make_friedman1(n_samples=200, noise=0.0, random_state=d)[1]
        X_test, y_test = datasets.make_friedman1(n_samples=2000, noise=1.0,
                                                 random_state=TEST_OFFSET + d)
        noise = y - clean
    elif problem == "diabetes":
        from sklearn.model_selection import train_test_split

        Xa, ya = datasets.load_diabetes(return_X_y=True)
        X, X_test, y, y_test = train_test_split(Xa, ya, test_size=0.25, random_state=d)
        noise = None
    else:
        raise LiftnnError(f"unknown coverage problem {problem!r}; choose from "
                          f"{', '.join(PROBLEMS)}")
    return {"X": X, "y": y, "X_test": X_test, "y_test": y_test, "standardise": problem != "sin2",
            "noise_rms": math.nan if noise is None else float(np.sqrt(np.mean(noise**2)))}


def make(name: str, seed: int, n_features: int):
    """A fresh estimator of ESTIMATORS (liftnn's with random_state=seed)."""
    if name in ("liftnn", "liftnn-16-16"):
        from liftnn.sklearn import LiftnnRegressor

        return (LiftnnRegressor(random_state=seed) if name == "liftnn" else
                LiftnnRegressor(hidden_layer_sizes=(16, 16), random_state=seed))
    if name == "bayesian-ridge":
        from sklearn.linear_model import BayesianRidge

        return BayesianRidge()
    if name == "gp":
        return gaussian_process(n_features, seed)
    raise LiftnnError(f"unknown coverage estimator {name!r}; choose from {', '.join(ESTIMATORS)}")


def scores(y: np.ndarray, mean: np.ndarray, std: np.ndarray) -> dict:
    """Interval coverage (± Z95 std and ± 1 std), mean std, RMSE and the mean Gaussian negative
    log predictive density of targets y under N(mean, std^2)."""
    y, mean, std = (np.asarray(a, dtype=np.float64).ravel() for a in (y, mean, std))
    if not (y.shape == mean.shape == std.shape) or y.size == 0:
        raise LiftnnError(f"scores needs targets, means and stds of one length; got {y.shape}, "
                          f"{mean.shape}, {std.shape}")
    if not np.all(np.isfinite(std)) or np.any(std <= 0):
        raise LiftnnError("scores needs finite, positive standard deviations")
    z = (y - mean) / std
    return {"coverage": float(np.mean(np.abs(z) <= Z95)),
            "coverage_1sd": float(np.mean(np.abs(z) <= 1.0)),
            "mean_std": float(np.mean(std)),
            "rmse": float(np.sqrt(np.mean((y - mean) ** 2))),
            "nlpd": float(np.mean(0.5 * z**2 + np.log(std) + 0.5 * math.log(2 * math.pi)))}


def cell(problem: str, d: int, estimator: str) -> dict:
    """One fit and its scores: the row written to coverage.jsonl."""
    data = draw(problem, d)
    X, X_test = data["X"], data["X_test"]
    mx, sx = X.mean(axis=0), X.std(axis=0)
    sx = np.where(sx > 0, sx, 1.0)
    my, sy = float(np.mean(data["y"])), float(np.std(data["y"]))
    if not data["standardise"]:  # sin2: the thesis problem in its own (unit-scale) units
        mx, sx, my, sy = 0.0, 1.0, 0.0, 1.0
    Xs, Xts = (X - mx) / sx, (X_test - mx) / sx
    ys, yts = (data["y"] - my) / sy, (data["y_test"] - my) / sy
    est = make(estimator, d, X.shape[1])
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarnings: the status is not the point here
        est.fit(Xs, ys)
        mean, std = est.predict(Xts, return_std=True)
    fit_s = time.perf_counter() - t0
    noise = data["noise_rms"] / sy  # in training-target standard deviations, nan if unknown
    return {"problem": problem, "draw": int(d), "estimator": estimator,
            "n_train": int(X.shape[0]), "n_test": int(X_test.shape[0]), **scores(yts, mean, std),
            "noise_rms": None if math.isnan(noise) else noise, "fit_s": fit_s,
            "kept": getattr(est, "kept_", None), "status": "ok"}


def _key(row) -> tuple:
    return row["problem"], int(row["draw"]), row["estimator"]


def load_rows(out: Path) -> list[dict]:
    return read_jsonl(Path(out) / "coverage.jsonl")


def run(out: Path, estimators, problems, draws, on_row=None) -> list[dict]:
    """Every (problem, draw, estimator) not yet in OUT/coverage.jsonl, appending each row as it
    ends (an error row, with the message, if the fit fails); on_row(row, done, total) after
    each.  Returns all rows."""
    check(estimators, problems, draws)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = load_rows(out)
    done = {_key(r) for r in rows if r.get("status") == "ok"}
    todo = [(p, d, e) for p in problems for d in draws for e in estimators
            if (p, d, e) not in done]
    with open(out / "coverage.jsonl", "a") as f:
        for i, (p, d, e) in enumerate(todo):
            try:
                row = cell(p, d, e)
            except (LiftnnError, ValueError, np.linalg.LinAlgError) as exc:
                row = {"problem": p, "draw": int(d), "estimator": e, "status": "error",
                       "error": f"{type(exc).__name__}: {exc}"}
            f.write(json.dumps(row) + "\n")
            f.flush()
            rows.append(row)
            if on_row is not None:
                on_row(row, i + 1, len(todo))
    return rows


def summarise(rows: list[dict]) -> list[dict]:
    """Per problem and estimator over the draws: the mean, lowest and highest coverage, the draws
    inside BAND, the mean ± 1 std coverage, mean std, RMSE and NLPD, the median fit time."""
    ok = [r for r in rows if r.get("status") == "ok"]
    out = []
    for p in dict.fromkeys(r["problem"] for r in ok):
        for e in dict.fromkeys(r["estimator"] for r in ok if r["problem"] == p):
            mine = sorted((r for r in ok if r["problem"] == p and r["estimator"] == e),
                          key=lambda r: r["draw"])
            cov = np.array([r["coverage"] for r in mine])
            noise = [r["noise_rms"] for r in mine if r.get("noise_rms") is not None]
            out.append({
                "problem": p, "estimator": e, "draws": len(mine),
                "coverage": float(cov.mean()), "coverage_min": float(cov.min()),
                "coverage_max": float(cov.max()),
                "in_band": int(np.sum((cov >= BAND[0]) & (cov <= BAND[1]))),
                "coverage_by_draw": [round(float(c), 3) for c in cov],
                "coverage_1sd": float(np.mean([r["coverage_1sd"] for r in mine])),
                "mean_std": float(np.mean([r["mean_std"] for r in mine])),
                "rmse": float(np.mean([r["rmse"] for r in mine])),
                "nlpd": float(np.mean([r["nlpd"] for r in mine])),
                "noise_rms": float(np.mean(noise)) if noise else math.nan,
                "fit_s": float(np.median([r["fit_s"] for r in mine])),
                "linear_kept": (sum(r["kept"] == "linear" for r in mine)
                                if any(r.get("kept") for r in mine) else None),
            })
    return out


def write_figure(out: Path, rows: list[dict]) -> Path | None:
    """OUT/coverage.png: per problem, each estimator's coverage per draw (dots, the mean as a
    bar) against the nominal 0.95 and BAND, and its mean NLPD; None without finished rows."""
    from liftnn.bench.figures import _plt, save_figure

    summary = summarise(rows)
    problems = list(dict.fromkeys(s["problem"] for s in summary))
    if not problems:
        return None
    plt = _plt()
    fig, axes = plt.subplots(len(problems), 2, figsize=(10, 2.8 * len(problems)), squeeze=False)
    for (ax_c, ax_n), p in zip(axes, problems):
        mine = [s for s in summary if s["problem"] == p]
        names = [s["estimator"] for s in mine]
        ax_c.axhspan(*BAND, color="#e5f5e0", zorder=0, label=f"target band {BAND[0]}-{BAND[1]}")
        ax_c.axhline(0.95, color="#31a354", lw=0.8, ls="--", label="nominal 0.95")
        for i, s in enumerate(mine):
            colour = "#3182bd" if s["estimator"].startswith("liftnn") else "#9ecae1"
            ax_c.bar(i, s["coverage"], color=colour, width=0.6, zorder=1)
            ax_c.plot([i] * s["draws"], s["coverage_by_draw"], "k.", ms=4, zorder=2)
            ax_n.bar(i, s["nlpd"], color=colour, width=0.6)
        low = min(min(s["coverage_by_draw"]) for s in mine)
        ax_c.set_ylim(max(0.0, min(low, BAND[0]) - 0.05), 1.0)
        ax_c.set_ylabel(f"{p}: coverage of ±1.96 std", fontsize=8)
        if p == problems[0]:
            ax_c.legend(fontsize=7, loc="lower right", framealpha=0.9)
        ax_n.set_ylabel("mean NLPD (lower is better)", fontsize=8)
        for ax in (ax_c, ax_n):
            ax.set_xticks(range(len(names)))
            ax.set_xticklabels(names, rotation=20, ha="right", fontsize=8)
    path = Path(out) / "coverage.png"
    save_figure(fig, path, title="liftnn bench coverage: predictive intervals over data draws "
                                 "(dots: draws)")
    return path


def write_report(out: Path, rows: list[dict]) -> Path:
    """OUT/report.md: the summary table and OUT/coverage.png."""
    intro = (f"Coverage of mean ± 1.96 std (nominal 0.95; target band {BAND[0]}-{BAND[1]}) and of "
             f"± 1 std (nominal 0.683) of fresh test targets, over data draws; inputs and target "
             f"standardised with the training rows' statistics (RMSE, mean std and NLPD in "
             f"training-target standard deviations; noise = the realised noise RMS of the "
             f"training targets where it is known). The fits ran in one process (warm times).")
    columns = ("problem", "estimator", "draws", "mean coverage", "lowest - highest",
               "draws in band", "± 1 std", "mean std", "noise RMS", "RMSE", "NLPD",
               "median fit (s)", "linear kept")
    table = []
    for s in summarise(rows):
        noise = "" if math.isnan(s["noise_rms"]) else f"{s['noise_rms']:.3f}"
        kept = "" if s["linear_kept"] is None else f"{s['linear_kept']}/{s['draws']}"
        table.append((s["problem"], s["estimator"], s["draws"], f"{s['coverage']:.3f}",
                      f"{s['coverage_min']:.3f} - {s['coverage_max']:.3f}",
                      f"{s['in_band']}/{s['draws']}", f"{s['coverage_1sd']:.3f}",
                      f"{s['mean_std']:.3f}", noise, f"{s['rmse']:.3f}", f"{s['nlpd']:.3f}",
                      f"{s['fit_s']:.2f}", kept))
    errors = [f"{r['problem']} draw {r['draw']} {r['estimator']}: {r['error']}"
              for r in rows if r.get("status") != "ok"]
    figure = write_figure(out, rows)
    return markdown_report(out, "liftnn bench coverage", intro, columns, table, errors,
                           figure and (figure, "coverage per draw and NLPD per estimator"))
