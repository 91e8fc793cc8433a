"""`liftnn inspect`: curvature, lifted-Jacobian and gradient checks of one network at its initial
weights, printed as rich tables or one JSON object.

    liftnn inspect --problem sin2 --n 40 --arch 1-16-16-1 --activation tanh --hessian [--json]
    liftnn inspect --jacobian --arch 2-3-3-2 --n 7 [--spy FILE.png] [--json]
    liftnn inspect --gradcheck --arch 1-8-8-1

The checks themselves are liftnn.diagnostics.inspect_cmd (its docstring lists every field).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from liftnn.diagnostics.inspect_cmd import CHECKS, inspect_network, json_safe
from liftnn.errors import LiftnnError


# ---- printing -----------------------------------------------------------------------------
def _fmt(x) -> str:
    """A table cell: '-' for None, yes/no for booleans, floats to 6 significant digits."""
    if x is None or isinstance(x, bool):
        return {None: "-", True: "yes", False: "no"}[x]
    return f"{x:.6g}" if isinstance(x, float) and math.isfinite(x) else str(x)


def _print_tables(res: dict, modes: list[str]):
    con = Console()
    head = f"{res['arch']} {res['activation']}, {res['problem']} (N = {res['n']}), seed {res['seed']}"
    if "hessian" in modes:
        t = Table(title=f"Hessian at the initial weights: {head}")
        t.add_column("quantity")
        t.add_column("value", justify="right")
        cond = res["condition_number"]
        rows = [("n_params", res["n_params"]), ("loss", res["loss"]), ("||grad||", res["grad_norm"]),
                ("lambda_max", res["lambda_max"]), ("lambda_max (power iteration)", res["lambda_max_power"]),
                ("lambda_min", res["lambda_min"]),
                ("eigenvalues < 0 / ~0 / > 0" + ("" if res["condition_exact"] else " (of k Ritz)"),
                 f"{res['n_negative']} / {res['n_zero']} / {res['n_positive']}"),
                ("condition number" + ("" if res["condition_exact"] else " (lower bound)"),
                 "inf (singular)" if math.isinf(cond) else cond),
                ("positive definite" + (" (Cholesky)" if res["condition_exact"]
                                         else " (Ritz lambda_min > 0)"), res["positive_definite"]),
                ("eta bound 2 / lambda_max", res["eta_bound"]), ("spectrum method", res["method"]),
                ("spectrum plot", res["plot"])]
        for k, v in rows:
            t.add_row(k, _fmt(v))
        con.print(t)
        lt = Table(title="Per-layer gradient norms")
        for col in ("layer", "shape", "||dC/dW||", "||dC/db||", "||W||"):
            lt.add_column(col, justify="right")
        for r in res["layers"]:
            lt.add_row(str(r["layer"]), "x".join(map(str, r["shape"])), _fmt(r["weight_grad_norm"]),
                       _fmt(r["bias_grad_norm"]), _fmt(r["weight_norm"]))
        con.print(lt)
    if "jacobian" in modes:
        t = Table(title=f"Lifted Jacobian (seed 000 Table 3.1): {head}")
        t.add_column("quantity")
        t.add_column("value", justify="right")
        formula = (f"{res['formula_rows']} x {res['formula_cols']}"
                   if res["formula_rows"] is not None else "n/a (unequal widths or no bias)")
        for k, v in [("rows x cols", f"{res['rows']} x {res['cols']}"), ("nnz", res["nnz"]),
                     ("density", res["density"]), ("dimension formula", formula),
                     ("formula matches", res["formula_matches"]),
                     ("max |J - J_autodiff|", res["max_abs_error"]),
                     ("  same, rows off ReLU kinks", res["max_abs_error_off_kinks"]),
                     ("bandwidth natural (lower, upper)", tuple(res["bandwidth_natural"])),
                     ("bandwidth banded (lower, upper)", tuple(res["bandwidth_banded"])),
                     ("rows at a ReLU kink (a = 0)", res["kinks"]),
                     ("spy plots", f"{res['spy']}, {res['spy_banded']}")]:
            t.add_row(k, _fmt(v))
        con.print(t)
    if "gradcheck" in modes:
        t = Table(title=f"Gradient check: {head}")
        t.add_column("comparison")
        t.add_column("max rel. error", justify="right")
        t.add_row("jax.grad vs finite differences", _fmt(res["ad_vs_fd"]))
        t.add_row("backprop vs jax.grad", _fmt(res["backprop_vs_ad"]))
        t.add_row("backprop vs finite differences", _fmt(res["backprop_vs_fd"]))
        con.print(t)
        con.print(res["backprop_note"])



# ---- the command --------------------------------------------------------------------------
def _check_dir(path: Path | None, flag: str):
    if path is not None and path.parent and not path.parent.exists():
        raise LiftnnError(f"{flag}: folder {path.parent} does not exist")


def inspect(
    problem: Annotated[str | None, typer.Option(
        help="data set (default sin2; --jacobian alone: random data of the architecture's "
             "shape)")] = None,
    n: Annotated[int | None, typer.Option(help="number of training points N")] = None,
    arch: Annotated[str, typer.Option(help="layer sizes, e.g. 1-16-16-1")] = "1-16-16-1",
    activation: Annotated[str, typer.Option(help="hidden activation")] = "tanh",
    output_activation: Annotated[str, typer.Option()] = "identity",
    init: Annotated[str, typer.Option(help="initialiser")] = "glorot_uniform",
    seed: Annotated[int, typer.Option(help="initial-weight seed")] = 0,
    data_seed: Annotated[int, typer.Option(help="data seed")] = 0,
    loss: Annotated[str, typer.Option(help="training loss (mse, sse, cross_entropy)")] = "mse",
    hessian: Annotated[bool, typer.Option("--hessian",
                                          help="curvature at the initial weights")] = False,
    jacobian: Annotated[bool, typer.Option("--jacobian",
                                           help="lifted Jacobian and its spy plots")] = False,
    gradcheck: Annotated[bool, typer.Option(
        "--gradcheck", help="backprop vs jax.grad vs finite differences")] = False,
    method: Annotated[str, typer.Option(help="spectrum: auto, dense or lanczos")] = "auto",
    k: Annotated[int | None, typer.Option(help="Lanczos steps (method lanczos)")] = None,
    c: Annotated[float, typer.Option(help="lifted output-row scaling 1/sqrt(c)")] = 1.0,
    plot: Annotated[Path | None, typer.Option(
        help="spectrum PNG (default inspect_spectrum.png)")] = None,
    spy: Annotated[Path | None, typer.Option(
        help="spy PNG (and FILE_banded.png); default inspect_jacobian.png")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
):
    """Hessian spectrum, condition number, lifted-Jacobian spy plots and gradient checks."""
    modes = [m for m, on in zip(CHECKS, (hessian, jacobian, gradcheck)) if on]
    if not modes:
        raise LiftnnError("choose at least one of --hessian, --jacobian, --gradcheck")
    if n is not None and n < 1:
        raise LiftnnError(f"--n must be >= 1; got {n}")
    if k is not None and k < 1:
        raise LiftnnError(f"--k must be >= 1; got {k}")
    if method not in ("auto", "dense", "lanczos"):
        raise LiftnnError(f"unknown --method {method!r}; choose one of: auto, dense, lanczos")
    if not (math.isfinite(c) and c > 0):
        raise LiftnnError(f"--c must be > 0; got {c}")
    plot = Path("inspect_spectrum.png") if plot is None else plot
    spy = Path("inspect_jacobian.png") if spy is None else spy
    _check_dir(plot if hessian else None, "--plot")
    _check_dir(spy if jacobian else None, "--spy")
    res = inspect_network(problem=problem, n=n, arch=arch, activation=activation,
                          output_activation=output_activation, init=init, seed=seed,
                          data_seed=data_seed, loss=loss, checks=modes, method=method, k=k, c=c,
                          plot=plot, spy=spy)
    if as_json:
        print(json.dumps(json_safe(res)))
    else:
        _print_tables(res, modes)
