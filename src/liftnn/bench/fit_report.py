"""The fit report of one training run (`liftnn train ... --report DIR`).

DIR gets

- curve.png: the training curve, history "train_mse" (else "loss") against the iteration (log
  scale when positive);
- fit.png: predicted against actual on the test split (the training split when there is no
  test split), one panel per target, in the data's units;
- residuals.png: the histogram of the residuals (predicted - actual) of the same split;
- report.md: data, architecture, method, train / test MSE and R² per target, time, status, and
  the three figures.

Values are in the data's own units when the data set records its standardisation
(Dataset.scaling); otherwise in the units the network was trained in.  Figures are written with
liftnn.bench.figures.save_figure (matplotlib, Agg); report.md atomically.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from liftnn.bench.figures import _plt, save_figure
from liftnn.errors import LiftnnError
from liftnn.metrics import regression_metrics


def check_report_dir(out) -> Path:
    """Create DIR (and parents) unless it exists; LiftnnError when it cannot hold the report."""
    p = Path(os.fspath(out))
    if p.exists() and not p.is_dir():
        raise LiftnnError(f"--report {p}: exists and is not a directory")
    try:
        p.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=p, prefix=".liftnn-write-test-"):
            pass
    except OSError as exc:
        raise LiftnnError(f"--report {p}: cannot write there ({exc.strerror or exc})") from None
    return p


def _curve(history) -> tuple[str, np.ndarray, np.ndarray]:
    """(key, iterations, values) of the training curve: "train_mse", else "loss"."""
    history = history or []
    key = "train_mse" if any("train_mse" in h for h in history) else "loss"
    pts = [(h.get("iter", i), h.get(key)) for i, h in enumerate(history)]
    pts = [(i, float(v)) for i, v in pts if isinstance(v, (int, float)) and np.isfinite(v)]
    it = np.array([p[0] for p in pts], dtype=float)
    val = np.array([p[1] for p in pts], dtype=float)
    return key, it, val


def _fmt(v) -> str:
    return "-" if v is None or not np.isfinite(v) else f"{v:.4g}"


def write_fit_report(out, *, model, params, result, dataset, method: str, problem: str,
                     activation: str = "") -> Path:
    """Write DIR/report.md, curve.png, fit.png and residuals.png for one run; returns report.md.

    model.apply(params, X) gives the network's outputs (m, d_out) for the dataset's inputs
    (m, d_in); result: the trainer's Result (history, train_mse, test_mse, time_s, status).
    """
    out = check_report_dir(out)
    sc = dataset.scaling
    scaled = sc is not None and not sc.identity and dataset.meta.get("task") != "classification"
    back = sc.inverse_y if scaled else (lambda a: np.asarray(a, np.float64))
    names = list((sc.targets if sc is not None else None) or
                 [f"y{j}" for j in range(dataset.d_out)])
    splits = {}
    for part, X, Y in (("train", dataset.x_train, dataset.y_train),
                       ("test", dataset.x_test, dataset.y_test)):
        if X.shape[0]:
            splits[part] = (back(Y), back(np.asarray(model.apply(params, X))))
    shown = "test" if "test" in splits else "train"
    Y, P = splits[shown]
    metrics = {part: regression_metrics(*yp) for part, yp in splits.items()}

    plt = _plt()
    key, it, val = _curve(result.get("history"))
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    if val.size:
        ax.plot(it, val, lw=1.4)
        if np.all(val > 0):
            ax.set_yscale("log")
    else:
        ax.text(0.5, 0.5, "no history recorded", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("iteration")
    ax.set_ylabel(key + (" (network units)" if scaled else ""))
    save_figure(fig, out / "curve.png", title=f"{method} on {problem}: training curve")

    d = Y.shape[1]
    fig, axes = plt.subplots(1, d, figsize=(4.2 * d, 4.0), squeeze=False)
    for j, ax in enumerate(axes[0]):
        ax.scatter(Y[:, j], P[:, j], s=12, alpha=0.7)
        lo, hi = float(min(Y[:, j].min(), P[:, j].min())), float(max(Y[:, j].max(), P[:, j].max()))
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
        ax.set_xlabel(f"actual {names[j]}")
        ax.set_ylabel(f"predicted {names[j]}")
        ax.set_title(f"R² {_fmt(metrics[shown]['r2'][j])}", fontsize=9)
    save_figure(fig, out / "fit.png", title=f"predicted vs actual ({shown} split)")

    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for j in range(d):
        ax.hist(P[:, j] - Y[:, j], bins=min(30, max(5, Y.shape[0] // 4)), alpha=0.6,
                label=names[j])
    if d > 1:
        ax.legend(fontsize=8)
    ax.set_xlabel("residual (predicted - actual)")
    ax.set_ylabel("count")
    save_figure(fig, out / "residuals.png", title=f"residuals ({shown} split)")

    units = "the data's units" if scaled else "as trained"
    src = dataset.meta.get("source")
    lines = [f"# Fit report: {method} on {problem}", "",
             (f"- data: {problem}" + (f" ({src})" if src else "") +
              f", {dataset.n} training rows, {dataset.x_test.shape[0]} test rows, "
              f"{dataset.d_in} input(s), target(s) {', '.join(names)}" +
              ("; standardised with the training statistics" if scaled else "")),
             f"- network: {model.arch} {activation}".rstrip(),
             f"- method: {method}, seed {result.get('seed', 0)}",
             (f"- status: {result.get('status', '')}, {int(result.get('nit', 0))} iterations, "
              f"{float(result.get('time_s', float('nan'))):.2f} s"),
             (f"- MSE{' (network units, standardised)' if scaled else ''}: train "
              f"{_fmt(result.get('train_mse'))}, test {_fmt(result.get('test_mse'))}"), "",
             (f"| split | MSE ({units}) | " + " | ".join(f"R² {n}" for n in names) + " |"),
             "|---|---|" + "---|" * len(names)]
    for part, m in metrics.items():
        lines.append(f"| {part} | {_fmt(m['mse'])} | " + " | ".join(_fmt(r) for r in m["r2"])
                     + " |")
    lines += ["", "![training curve](curve.png)", "",
              "![predicted vs actual](fit.png)", "", "![residuals](residuals.png)", ""]
    path = out / "report.md"
    fd, tmp = tempfile.mkstemp(dir=out, prefix=".report.md.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write("\n".join(lines))
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path
