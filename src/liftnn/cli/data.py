"""The file-data path of `liftnn train --data FILE` (kept apart from cli/train.py's options).

    liftnn train --data FILE --target NAME[,NAME...] [--features A,B,...] [--test FILE |
                 --test-fraction F] [--data-seed S] [--no-scale] [--arch 16-16] ...

`--arch` with file data (the rule, also in the README): the input and output widths come from
the file (the number of features and of targets).  An arch that starts with the number of
features and ends with the number of targets is a full one (e.g. `8-16-16-1` for 8 features and
one target); any other is the hidden layers only (`16-16` -> `8-16-16-1`).  Without --arch the
hidden layers are 16-16.  The reading, splitting and standardising are
liftnn.datasets.files.file_dataset; this module only maps the options onto it and describes
the result for the printed line, the JSON and the saved model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from liftnn.errors import LiftnnError

DEFAULT_HIDDEN = "16-16"


def resolve_arch(arch: str | None, d_in: int, d_out: int) -> str:
    """The full layer sizes for file data (module docstring): "16-16" -> f"{d_in}-16-16-{d_out}"."""
    text = DEFAULT_HIDDEN if arch is None else arch.strip()
    try:
        sizes = [int(t) for t in text.replace("x", "-").split("-")]
    except ValueError:
        sizes = []
    if not sizes or any(t <= 0 for t in sizes):
        raise LiftnnError(f"--arch must be positive layer sizes like 16-16 (hidden) or "
                          f"{d_in}-16-16-{d_out} (full); got {arch!r}")
    if len(sizes) >= 2 and sizes[0] == d_in and sizes[-1] == d_out:
        return "-".join(map(str, sizes))
    return "-".join(map(str, [d_in, *sizes, d_out]))


def load_file_data(data: Path, target: str | None, features: str | None, test: Path | None,
                   test_fraction: float | None, data_seed: int, scale: bool):
    """The Dataset of a data file (liftnn.datasets.files.file_dataset), options checked."""
    from liftnn.datasets.files import file_dataset

    if test is not None and test_fraction is not None:
        raise LiftnnError("give --test FILE or --test-fraction F, not both")
    if target is None and Path(data).suffix.lower() != ".npz":
        raise LiftnnError("--data needs --target NAME[,NAME...] (the column(s) to predict)")
    return file_dataset(data, target, features, test=test,
                        test_fraction=0.2 if test_fraction is None else test_fraction,
                        seed=data_seed, scale=scale)


def check_file_options_unused(test, test_fraction, target, features, no_scale) -> None:
    """The file-data options are an error without --data (named, before any work)."""
    given = [name for name, v in (("--test", test), ("--test-fraction", test_fraction),
                                  ("--target", target), ("--features", features),
                                  ("--no-scale", no_scale or None)) if v is not None]
    if given:
        raise LiftnnError(f"{', '.join(given)} only apply with --data FILE")


def data_info(dataset, problem: str) -> dict:
    """What a saved model records of its training data (plain JSON)."""
    meta = dataset.meta
    info = {"name": dataset.name if problem is None else problem, "n": dataset.n,
            "n_test": int(dataset.x_test.shape[0])}
    for key in ("source", "test_source", "data_seed", "test_fraction", "scaled", "task",
                "n_classes", "class_names", "seed"):
        v = meta.get(key)
        if isinstance(v, (str, int, float, bool)) or (isinstance(v, list) and all(
                isinstance(t, (str, int, float)) for t in v)):
            info[key] = v
    return info


def units_report(model, params, dataset) -> dict:
    """Train / test MSE and R² per target in the data's own units (file data or a shipped set
    that records its standardisation); {} when the data carry no scaling."""
    from liftnn.metrics import regression_metrics

    sc = dataset.scaling
    if sc is None or sc.identity or dataset.meta.get("task") == "classification":
        return {}
    out = {}
    for part, X, Y in (("train", dataset.x_train, dataset.y_train),
                       ("test", dataset.x_test, dataset.y_test)):
        if X.shape[0] == 0:
            continue
        P = sc.inverse_y(np.asarray(model.apply(params, X)))
        m = regression_metrics(sc.inverse_y(Y), P)
        out[f"{part}_mse_units"] = m["mse"]
        out[f"{part}_r2"] = m["r2"]
    return out


def units_line(units: dict, dataset) -> str:
    """"train MSE 1.2, test MSE 3.4, test R² y 0.91" for the printed line."""
    names = (dataset.scaling.targets if dataset.scaling is not None else None) or \
        [f"y{j}" for j in range(dataset.d_out)]
    parts = [f"{part} MSE {units[f'{part}_mse_units']:.4g}" for part in ("train", "test")
             if f"{part}_mse_units" in units]
    r2 = units.get("test_r2", units.get("train_r2"))
    which = "test" if "test_r2" in units else "train"
    if r2 is not None:
        parts.append(f"{which} R² " + ", ".join(f"{n} {v:.4f}" for n, v in zip(names, r2)))
    return ", ".join(parts)
