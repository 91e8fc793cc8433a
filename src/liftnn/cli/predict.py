"""`liftnn predict` and `liftnn evaluate`: a saved model (PATH.json + PATH.npz) on a data file.

    liftnn predict MODEL --data FILE [--out FILE]   one column per target, named like the
                                                    targets (+ NAME_std with a posterior); CSV
    liftnn evaluate MODEL --data FILE [--json]      MSE and R² per target against the file's
                                                    target columns (accuracy for classifiers)

The model's stored scaling is applied (liftnn.models.io.SavedModel.predict: inputs and
predictions in the user's units).  The input columns are the model's stored feature names (so a
file that also holds the targets, or other columns, works); a model saved without names reads
every column of the file that is not one of its targets.  Bad input (a missing file or column,
a width that differs from the model's, a non-numeric or missing cell) exits with status 2
before any output is written; --out is written atomically (temporary file + rename).
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from liftnn.cli.common import console, split_names
from liftnn.errors import LiftnnError


def _inputs(saved, data: Path, with_targets: list[str] | None = None):
    """(X (m, d_in), Y (m, d_out) or None) of a data file for a saved model."""
    from liftnn.datasets.files import columns, read_table

    header = columns(data)
    if saved.scaling.features is not None:
        feats = list(saved.scaling.features)
    else:
        feats = [h for h in header if h not in saved.targets and h not in (with_targets or ())]
        if data.suffix.lower() == ".npz":
            feats = [h for h in header if h.startswith("x")] or feats
    missing = [f for f in feats if f not in header]
    if missing:
        raise LiftnnError(f"{data}: the model {saved.path} takes column(s) "
                          f"{', '.join(map(repr, missing))}, which the file lacks; its columns "
                          f"are: {', '.join(header)}")
    tab = read_table(data, target=with_targets, features=feats,
                     allow_no_target=with_targets is None)
    X = saved.check_inputs(tab.X, where=str(data))
    return X, tab.Y


def _is_classifier(saved) -> bool:
    return saved.data.get("task") == "classification"


def _labels(saved, P: np.ndarray) -> np.ndarray:
    """Class indices (m,) from a classifier's outputs: argmax of k outputs (logits, as
    loss="cross_entropy" trains them); one output (a fit to the indices) is rounded to the
    nearest class."""
    if P.shape[1] > 1:
        return P.argmax(1)
    k = int(saved.data.get("n_classes", 2))
    return np.clip(np.rint(P[:, 0]), 0, k - 1).astype(int)


def _csv_text(names: list[str], cols: list[np.ndarray]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(names)
    for row in zip(*cols):
        w.writerow([repr(float(v)) if isinstance(v, (float, np.floating)) else str(v) for v in row])
    return buf.getvalue()


def _check_out(out: Path) -> None:
    parent = out.parent if str(out.parent) else Path(".")
    if out.exists() and not out.is_file():
        raise LiftnnError(f"--out {out}: exists and is not a regular file")
    if not parent.is_dir():
        raise LiftnnError(f"--out {out}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise LiftnnError(f"--out {out}: directory {parent} is not writable")


def _write_atomic(out: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=out.parent if str(out.parent) else ".",
                               prefix=f".{out.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", newline="") as f:
            f.write(text)
        os.replace(tmp, out)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def predict(
    model: Annotated[Path, typer.Argument(help="a saved model: PATH (PATH.json + PATH.npz)")],
    data: Annotated[Path, typer.Option("--data", help="inputs: .csv with a header row, .npz "
                                                      "(X) or .parquet")],
    out: Annotated[Path | None, typer.Option(help="write the predictions to this CSV file "
                                                  "(default: stdout)")] = None,
):
    """Predict every row of a data file with a saved model: one column per target, in the
    data's units (the model's stored standardisation applied)."""
    from liftnn.models.io import load_model

    if out is not None:
        _check_out(out)
    saved = load_model(model)
    X, _ = _inputs(saved, data)
    names, cols = [], []
    if saved.has_std:
        mean, std = saved.predict(X, return_std=True)
    else:
        mean, std = saved.predict(X), None
    if _is_classifier(saved):
        names, cols = [saved.targets[0] if len(saved.targets) == 1 else "class"], [_labels(saved, mean)]
    else:
        for j, t in enumerate(saved.targets):
            names.append(t)
            cols.append(mean[:, j])
            if std is not None:
                names.append(f"{t}_std")
                cols.append(std[:, j])
    text = _csv_text(names, cols)
    if out is None:
        sys.stdout.write(text)
    else:
        _write_atomic(out, text)
        console.print(f"{X.shape[0]} predictions of {', '.join(names)} written to {out}")


def evaluate(
    model: Annotated[Path, typer.Argument(help="a saved model: PATH (PATH.json + PATH.npz)")],
    data: Annotated[Path, typer.Option("--data", help="inputs and targets: .csv with a header "
                                                      "row, .npz (X, Y) or .parquet")],
    target: Annotated[str | None, typer.Option(
        help="the target column(s) (default: the names stored with the model)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
):
    """MSE and R² per target of a saved model against a data file's target columns (accuracy
    for a classifier), in the data's units."""
    from liftnn.metrics import accuracy, regression_metrics
    from liftnn.models.io import load_model

    saved = load_model(model)
    targets = split_names(target) or list(saved.targets)
    if not _is_classifier(saved) and len(targets) != saved.d_out:
        raise LiftnnError(f"the model {saved.path} predicts {saved.d_out} target(s); --target "
                          f"names {len(targets)}")
    X, Y = _inputs(saved, data, with_targets=targets)
    P = saved.predict(X)
    res = {"model": str(model), "data": str(data), "rows": int(X.shape[0]), "targets": targets}
    if _is_classifier(saved):
        res["accuracy"] = accuracy(Y[:, 0].astype(int), _labels(saved, P))
    else:
        m = regression_metrics(Y, P)
        res.update(mse=m["mse"], mse_per_target=dict(zip(targets, m["mse_per_target"])),
                   r2=dict(zip(targets, m["r2"])))
    if as_json:
        print(json.dumps(res))
        return
    print(f"{saved.model.arch if hasattr(saved.model, 'arch') else type(saved.model).__name__} "
          f"from {model} on {data} ({res['rows']} rows)")
    if "accuracy" in res:
        print(f"accuracy {res['accuracy']:.4f}")
        return
    for t in targets:
        print(f"{t}: MSE {res['mse_per_target'][t]:.6g}, R² {res['r2'][t]:.4f}")
    if len(targets) > 1:
        print(f"all targets: MSE {res['mse']:.6g}")
