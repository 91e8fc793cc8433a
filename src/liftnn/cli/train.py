"""`liftnn train`: train one network (or K initialisations with --seeds) and report it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from liftnn.cli.common import console, parse_options


def train(
    problem: Annotated[str, typer.Option(help="data set name (liftnn.datasets.names())")] = "sin2",
    n: Annotated[int | None, typer.Option(help="number of training points (where the data set "
                                               "takes n)")] = None,
    arch: Annotated[str | None, typer.Option(
        help="layer sizes, e.g. 1-16-16-1 (default); with --data the hidden ones, e.g. 16-16 "
             "(default), or a full arch matching the file's widths")] = None,
    activation: Annotated[str, typer.Option(help="hidden activation")] = "relu",
    output_activation: Annotated[str, typer.Option()] = "identity",
    init: Annotated[str, typer.Option(help="initialiser")] = "glorot_uniform",
    method: Annotated[str, typer.Option(help="training method")] = "adam",
    seed: Annotated[int, typer.Option(help="initial-weight seed")] = 0,
    seeds: Annotated[int | None, typer.Option(
        "--seeds", help="train K initialisations (seeds seed..seed+K-1) in one vectorised call; "
                        "one line each")] = None,
    data_seed: Annotated[int, typer.Option(help="data seed (noise draws)")] = 0,
    max_iter: Annotated[int | None, typer.Option(help="iteration / epoch limit")] = None,
    opt: Annotated[list[str] | None, typer.Option(
        "--opt", help="extra method option key=value (repeatable)")] = None,
    as_json: Annotated[bool, typer.Option(
        "--json", help="print one JSON object (one per line with --seeds)")] = False,
    save_model: Annotated[Path | None, typer.Option(help="write PATH.json + PATH.npz")] = None,
    validation: Annotated[float | None, typer.Option(
        help="hold out this fraction of the training data: early stopping on it and the "
             "iterate with the lowest validation loss is returned")] = None,
    weight_decay: Annotated[str, typer.Option(
        help="L2 strength mu_w, 'auto' (chosen on a validation split), 'bayes' "
             "(Bayesian regularisation: gn, lm, alm, lifted-gn) or 'prior' (cross_entropy: "
             "a unit Gaussian prior, mu_w = 1/m)")] = "0",
    devices: Annotated[int | None, typer.Option(
        help="split the training samples over N devices (docs/devices.md)")] = None,
    loss: Annotated[str | None, typer.Option(
        help="the training loss: mse or cross_entropy (one output per class, class labels "
             "as in Python); default: cross_entropy for classification data sets, else mse")
    ] = None,
    # ---- a user's own data (liftnn.cli.data) and the fit report ----
    data_file: Annotated[Path | None, typer.Option(
        "--data", help="train on a data file: .csv with a header row, .npz (X, Y) or .parquet "
                       "(instead of --problem)")] = None,
    target: Annotated[str | None, typer.Option(
        help="with --data: the target column(s), NAME[,NAME...]")] = None,
    features: Annotated[str | None, typer.Option(
        help="with --data: the input columns (default: every non-target column)")] = None,
    test: Annotated[Path | None, typer.Option(
        help="with --data: a test file with the same columns")] = None,
    test_fraction: Annotated[float | None, typer.Option(
        help="with --data and no --test: hold out this fraction for testing, shuffled with "
             "--data-seed (default 0.2)")] = None,
    scale: Annotated[bool, typer.Option(
        "--scale/--no-scale", help="with --data: standardise inputs and targets with the "
                                   "training statistics (stored with --save-model)")] = True,
    report: Annotated[Path | None, typer.Option(
        help="write a fit report into DIR: report.md, the training curve, predicted vs actual "
             "and the residuals (PNG)")] = None,
):
    """Train one network and report train/test MSE (and accuracy for the cross-entropy), time
    and status.

    With --seeds K, K initialisations train in one vectorised call (alm and the first-order
    methods; a loop otherwise) and --json prints one JSON object per line, one per seed
    (time_s = the batch's wall time / K); --save-model then keeps the lowest train MSE.

    With --data FILE --target NAME the network trains on the file (liftnn.cli.data): a test
    split, standardisation stored with the model, MSE and R² also in the data's units.
    """
    import liftnn as ln
    from liftnn.cli import data as file_data
    from liftnn.errors import LiftnnError
    from liftnn.models.io import check_writable
    from liftnn.models.io import save_model as _save

    if data_file is None:
        file_data.check_file_options_unused(test, test_fraction, target, features, not scale)
        kw = {"n": n} if n is not None else {}
        data = ln.datasets.load(problem, seed=data_seed, **kw)
        arch = arch or "1-16-16-1"
    else:
        if n is not None:
            raise LiftnnError("--n applies to shipped data sets; a --data file trains on its rows")
        data = file_data.load_file_data(data_file, target, features, test, test_fraction,
                                        data_seed, scale)
        problem = data.name
        arch = file_data.resolve_arch(arch, data.d_in, data.d_out)
    model = ln.MLP(arch, activation=activation, output_activation=output_activation, init=init)
    options = parse_options(opt)
    options["loss"] = _loss(loss, options.pop("loss", None), data, model)
    if max_iter is not None:
        options["max_iter"] = max_iter
    if validation is not None:
        options["validation"] = validation
    if devices is not None:
        options["devices"] = devices
    if weight_decay.strip().lower() in ("auto", "bayes", "prior"):
        options["weight_decay"] = weight_decay.strip().lower()
    else:
        try:
            options["weight_decay"] = float(weight_decay)
        except ValueError:
            raise LiftnnError(f"--weight-decay must be a number >= 0, 'auto', 'bayes' or "
                              f"'prior'; got {weight_decay!r}") from None
    if seeds is not None and seeds < 1:
        raise LiftnnError(f"--seeds must be >= 1; got {seeds}")
    if save_model is not None:
        check_writable(save_model)
    if report is not None:
        from liftnn.bench.fit_report import check_report_dir

        check_report_dir(report)
    if seeds is None:
        results = [ln.train(model, data, method=method, seed=seed, **options)]
    else:
        results = ln.train(model, data, method=method, seeds=range(seed, seed + seeds), **options)
    best = min(results, key=lambda r: r.train_mse)
    if save_model is not None:
        _save(save_model, model, best.params, scaling=data.scaling,
              data=file_data.data_info(data, problem))
        if len(results) > 1:
            console.print(f"saved seed {best.seed} (lowest train MSE) to {save_model}")
    for res in results:
        out = {
            "problem": problem, "n": data.n, "arch": model.arch, "activation": activation,
            "method": method, "init": model.init_name, "seed": int(res.seed),
            "data_seed": data_seed, "train_mse": res.train_mse, "test_mse": res.test_mse,
            "time_s": res.time_s, "iterations": int(res.nit), "status": res.status,
            "message": res.get("message", ""),
        }
        for key in ("train_accuracy", "test_accuracy", "val_mse", "n_val", "weight_decay"):
            if key in res:
                out[key] = res[key]
        units = file_data.units_report(model, res.params, data)
        if data_file is not None:
            out.update(data=str(data_file), features=list(data.meta["features"]),
                       targets=list(data.meta["targets"]), n_test=int(data.x_test.shape[0]),
                       scaled=scale)
        out.update(units)
        if len(results) > 1:
            out["batch_time_s"] = res.get("batch_time_s")
        out["loss"] = options["loss"]
        if as_json:
            print(json.dumps(out))
        else:
            if "train_accuracy" in res:  # the MSE of logits against one-hot rows means little
                fit = (f"train accuracy {res.train_accuracy:.4g}, test accuracy "
                       f"{res.test_accuracy:.4g}, train loss (cross-entropy) "
                       f"{float(res.fun):.4g}")
            else:
                fit = f"train MSE {res.train_mse:.4g}, test MSE {res.test_mse:.4g}"
            console.print(
                f"[bold]{method}[/] on {problem} (n={data.n}, {model.arch} {activation}, "
                f"{model.init_name}, seed {res.seed}): {fit}, {int(res.nit)} iterations, "
                f"{res.time_s:.2f} s, status {res.status}")
            if units:
                console.print("  in the data's units: " + file_data.units_line(units, data))
    if report is not None:
        from liftnn.bench.fit_report import write_fit_report

        path = write_fit_report(report, model=model, params=best.params, result=best,
                                dataset=data, method=method, problem=problem,
                                activation=activation)
        console.print(f"fit report written to {path}")


LOSSES = ("mse", "cross_entropy")


def _loss(flag: str | None, opt: str | None, data, model) -> str:
    """The loss of `liftnn train`: --loss (or --opt loss=...), else cross_entropy for a
    classification data set (meta task) and mse otherwise; for the cross-entropy the network
    must output one logit per class (the error names the architecture that does)."""
    from liftnn._validate import canonical
    from liftnn.errors import LiftnnError

    if flag is not None and opt is not None and canonical("loss", opt, LOSSES) != canonical(
            "loss", flag, LOSSES):
        raise LiftnnError(f"--loss {flag} and --opt loss={opt} disagree; give one")
    given = flag if flag is not None else opt
    classify = data.meta.get("task") == "classification"
    loss = canonical("--loss", given, LOSSES) if given is not None else (
        "cross_entropy" if classify else "mse")
    k = data.meta.get("n_classes")
    if loss == "cross_entropy" and k is not None and model.d_out != int(k):
        right = "-".join(str(s) for s in (*model.sizes[:-1], int(k)))
        raise LiftnnError(f"--arch {model.arch}: {data.name} has {k} classes and the cross-entropy "
                          f"needs one output per class: use --arch {right}")
    return loss
