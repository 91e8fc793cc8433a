"""`liftnn inspect`: curvature, lifted-Jacobian and gradient checks of one network at its initial
weights (registered in liftnn.cli).

    liftnn inspect --problem sin2 --n 40 --arch 1-16-16-1 --activation tanh --hessian [--json]
    liftnn inspect --jacobian --arch 2-3-3-2 --n 7 [--spy FILE.png] [--json]
    liftnn inspect --gradcheck --arch 1-8-8-1

--hessian (seeds 003/004): n_params, loss, gradient norm, lambda_max, lambda_min, condition number,
positive definiteness (Cholesky), the gradient-descent bound eta < 2 / lambda_max, per-layer
gradient norms, and a spectrum plot (--plot, default inspect_spectrum.png).
--jacobian (seed 000 sec. 3.2-3.4): the analytic sparse Jacobian of the lifted residual at the
feasible start: rows, cols, nnz, density, the thesis's dimension formula, max |J - J_autodiff|,
bandwidths, and the spy plots of figs. 3.2 (FILE.png) and 3.3 (FILE_banded.png).  Without
--problem it uses N random inputs/targets (the structure does not depend on the data).
--gradcheck: max relative errors between jax.grad, central finite differences and, when
liftnn.backprop exists, the explicit delta recursion (seed 002).
With --json one JSON object holds the fields of every requested check (non-finite numbers as null).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import typer


def _fail(msg: str):
    from liftnn.cli import fail  # imported here: liftnn.cli imports this module at its end

    fail(msg)


def _clean(x):
    """JSON-safe copy: numpy scalars -> Python, non-finite floats -> None."""
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        x = float(x)
        return x if math.isfinite(x) else None
    if isinstance(x, np.ndarray):
        return _clean(x.tolist())
    if isinstance(x, Path):
        return str(x)
    return x


def _suffixed(path: Path, tag: str) -> Path:
    return path.with_name(f"{path.stem}{tag}{path.suffix or '.png'}")


def _check_dir(path: Path | None, flag: str):
    if path is not None and path.parent and not path.parent.exists():
        _fail(f"{flag}: folder {path.parent} does not exist")


# ---- the three checks -------------------------------------------------------------------
def hessian_check(problem, params, *, method: str, k: int | None, seed: int, plot: Path,
                  title: str) -> dict:
    """Curvature report of problem at params, plus the spectrum plot."""
    from liftnn.diagnostics.curvature import curvature_report, plot_spectrum

    rep = curvature_report(problem, params, method=method, k=k, seed=seed)
    plot_spectrum(rep["eigenvalues"], plot, title=title)
    rep["plot"] = str(plot)
    return rep


def jacobian_check(model, X, Y, *, seed: int, c: float, spy_path: Path) -> dict:
    """Analytic lifted Jacobian at the feasible start of model.init(seed): sizes, formula,
    autodiff error, bandwidths, and the two spy plots."""
    from liftnn.lifted import jacobian as jm
    from liftnn.lifted.formulation import LiftedProblem

    lp = LiftedProblem(model, X, Y, c=c)
    lay = lp.layout
    u = np.asarray(lp.feasible_start(model.init(seed)))
    nat = jm.jacobian(lp, u, "natural")
    ban = jm.jacobian(lp, u, "banded")
    rows, cols = nat.J.shape
    hidden = model.sizes[1:-1]
    applies = model.bias and len(hidden) >= 1 and len(set(hidden)) == 1
    if applies:
        fr, fc = jm.jacobian_shape(model.d_in, model.d_out, hidden[0], len(hidden), lay.n)
    else:
        fr = fc = None
    # ReLU-type layers at a = 0 (e.g. x = 0 with zero biases): the generalised derivative 1[a > 0]
    # and autodiff's (jnp.maximum gives 1/2 there) legitimately differ in those rows only.
    kinky = {"relu", "leaky_relu"}
    at_kink = np.zeros(lay.n_rows, bool)
    for l, (a, act) in enumerate(zip(lp.pre_activations(u), model.activations)):
        if act in kinky:
            hit = np.abs(np.asarray(a)).T.ravel() < 1e-12          # (d_{l+1} N,), neuron-wise
            r0 = lay.row_offset(l)
            at_kink[r0:r0 + hit.size] |= hit
    J_ad = jm.autodiff_jacobian(lp, u)
    diff = np.abs(nat.J.toarray() - J_ad)
    D, N = len(hidden), lay.n
    shape_txt = (f"I={model.d_in}, O={model.d_out}, W={hidden[0]}, D={D}, N={N}" if applies
                 else f"{model.arch}, N={N}")
    jm.spy(nat.J, spy_path, f"Jacobian, natural ordering (fig. 3.2): {shape_txt}",
           row_blocks=nat.row_blocks, col_blocks=nat.col_blocks)
    banded_path = _suffixed(spy_path, "_banded")
    jm.spy(ban.J, banded_path, f"Jacobian, banded ordering (fig. 3.3): {shape_txt}",
           row_blocks=ban.row_blocks, col_blocks=ban.col_blocks)
    return {
        "rows": rows, "cols": cols, "nnz": int(nat.J.nnz),
        "density": nat.J.nnz / float(rows * cols),
        "formula_rows": fr, "formula_cols": fc,
        "formula_matches": (fr, fc) == (rows, cols) if applies else None,
        "max_abs_error": float(diff.max()),
        "max_abs_error_off_kinks": float(diff[~at_kink].max()) if (~at_kink).any() else 0.0,
        "bandwidth_natural": list(jm.bandwidth(nat.J)),
        "bandwidth_banded": list(jm.bandwidth(ban.J)),
        "bandwidth_banded_formula": list(jm.banded_bandwidth(lay)),
        "kinks": int(at_kink.sum()),
        "spy": str(spy_path), "spy_banded": str(banded_path),
    }


def _find_backprop():
    import importlib

    import liftnn

    bp = getattr(liftnn, "backprop", None)
    if bp is None:
        try:
            bp = importlib.import_module("liftnn.models.backprop").backprop
        except (ImportError, AttributeError):
            return None
    return bp


def _as_flat_grad(out, n: int):
    """Accept grads, (value, grads), a params-like list of (dW, db) or a flat vector."""
    from jax.flatten_util import ravel_pytree

    if isinstance(out, tuple) and len(out) == 2 and np.ndim(out[0]) == 0:
        out = out[1]
    flat = np.asarray(ravel_pytree(out)[0], np.float64)
    if flat.shape != (n,):
        raise ValueError(f"backprop returned {flat.size} gradient entries; expected {n}")
    return flat


def _rel(a, b) -> float:
    """max |a - b| / max |b| (a norm-wise relative error; 0 if both vanish)."""
    den = float(np.max(np.abs(b)))
    num = float(np.max(np.abs(a - b)))
    return num / den if den > 0 else num


def gradient_check(problem, params) -> dict:
    """Max relative errors among jax.grad, central differences and liftnn.backprop (if present)."""
    import inspect as _pyinspect

    import jax
    import jax.numpy as jnp

    from liftnn.problem import TrainingProblem

    theta = problem.flatten(params)
    n = int(theta.size)
    g_ad = np.asarray(jax.jit(jax.grad(problem.fun))(theta))
    h = np.finfo(np.float64).eps ** (1 / 3) * np.maximum(1.0, np.abs(np.asarray(theta)))
    P = jnp.asarray(np.diag(h))
    fv = jax.jit(jax.vmap(problem.fun))
    g_fd = (np.asarray(fv(theta[None, :] + P)) - np.asarray(fv(theta[None, :] - P))) / (2 * h)
    out = {"gradcheck_n": n, "ad_vs_fd": _rel(g_ad, g_fd), "backprop_available": False,
           "backprop_vs_ad": None, "backprop_vs_fd": None, "backprop_loss": None,
           "backprop_note": "liftnn.backprop not found; skipped"}
    bp = _find_backprop()
    if bp is None:
        return out
    out["backprop_available"] = True
    model, X, Y = problem.model, problem.X, problem.Y
    try:
        takes_loss = "loss" in _pyinspect.signature(bp).parameters
    except (TypeError, ValueError):
        takes_loss = False
    try:
        if takes_loss:
            g_bp = _as_flat_grad(bp(model, params, X, Y, loss=problem.loss), n)
            candidates = {problem.loss: g_ad}
        else:
            g_bp = _as_flat_grad(bp(model, params, X, Y), n)
            candidates = {}
            for loss in ("mse", "sse"):
                tp = TrainingProblem(model, X, Y, loss=loss)
                candidates[loss] = np.asarray(jax.grad(tp.fun)(theta))
    except Exception as exc:  # noqa: BLE001 - another module's failure is reported, not raised
        out["backprop_note"] = f"backprop failed: {type(exc).__name__}: {exc}"
        return out
    loss = min(candidates, key=lambda k: _rel(g_bp, candidates[k]))
    out["backprop_loss"] = loss
    out["backprop_vs_ad"] = _rel(g_bp, candidates[loss])
    if loss == problem.loss:
        out["backprop_vs_fd"] = _rel(g_bp, g_fd)
    out["backprop_note"] = (f"compared with the gradient of the {loss} loss"
                            + ("" if takes_loss else " (backprop takes no loss argument; closest match)"))
    return out


# ---- printing -----------------------------------------------------------------------------
def _fmt(x) -> str:
    if x is None:
        return "-"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, float):
        return "inf" if math.isinf(x) else f"{x:.6g}"
    return str(x)


def _print_tables(res: dict, modes: list[str]):
    from rich.console import Console
    from rich.table import Table

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
def inspect(
    problem: str | None = typer.Option(None, help="data set (default sin2; --jacobian alone: "
                                          "random data of the architecture's shape)"),
    n: int | None = typer.Option(None, help="number of training points N"),
    arch: str = typer.Option("1-16-16-1", help="layer sizes, e.g. 1-16-16-1"),
    activation: str = typer.Option("tanh", help="hidden activation"),
    output_activation: str = typer.Option("identity"),
    init: str = typer.Option("glorot_uniform", help="initialiser"),
    seed: int = typer.Option(0, help="initial-weight seed"),
    data_seed: int = typer.Option(0, help="data seed"),
    loss: str = typer.Option("mse", help="training loss (mse, sse, cross_entropy)"),
    hessian: bool = typer.Option(False, "--hessian", help="curvature at the initial weights"),
    jacobian: bool = typer.Option(False, "--jacobian", help="lifted Jacobian and its spy plots"),
    gradcheck: bool = typer.Option(False, "--gradcheck", help="backprop vs jax.grad vs finite differences"),
    method: str = typer.Option("auto", help="spectrum: auto, dense or lanczos"),
    k: int | None = typer.Option(None, help="Lanczos steps (method lanczos)"),
    c: float = typer.Option(1.0, help="lifted output-row scaling 1/sqrt(c)"),
    plot: Path | None = typer.Option(None, help="spectrum PNG (default inspect_spectrum.png)"),
    spy: Path | None = typer.Option(None, help="spy PNG (and FILE_banded.png); default "
                                       "inspect_jacobian.png"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
):
    """Hessian spectrum, condition number, lifted-Jacobian spy plots and gradient checks."""
    import liftnn as ln
    from liftnn.errors import LiftnnError

    modes = [m for m, on in (("hessian", hessian), ("jacobian", jacobian), ("gradcheck", gradcheck)) if on]
    if not modes:
        _fail("choose at least one of --hessian, --jacobian, --gradcheck")
    if n is not None and n < 1:
        _fail(f"--n must be >= 1; got {n}")
    if k is not None and k < 1:
        _fail(f"--k must be >= 1; got {k}")
    if method not in ("auto", "dense", "lanczos"):
        _fail(f"unknown --method {method!r}; choose one of: auto, dense, lanczos")
    if not (math.isfinite(c) and c > 0):
        _fail(f"--c must be > 0; got {c}")
    plot = Path("inspect_spectrum.png") if plot is None else plot
    spy = Path("inspect_jacobian.png") if spy is None else spy
    _check_dir(plot if hessian else None, "--plot")
    _check_dir(spy if jacobian else None, "--spy")
    try:
        model = ln.MLP(arch, activation=activation, output_activation=output_activation, init=init)
        if problem is None and modes == ["jacobian"]:
            N = 7 if n is None else n
            rng = np.random.default_rng(data_seed)
            X, Y = rng.standard_normal((N, model.d_in)), rng.standard_normal((N, model.d_out))
            pname = "random"
        else:
            pname = "sin2" if problem is None else problem
            data = ln.datasets.load(pname, seed=data_seed, **({"n": n} if n is not None else {}))
            X, Y = model.check_data(data.x_train, data.y_train)
        tp = ln.TrainingProblem(model, X, Y, loss=loss)
        params = model.init(seed)
        res = {"problem": pname, "arch": model.arch, "activation": model.activation,
               "init": model.init_name, "seed": seed, "n": int(X.shape[0]), "checks": modes}
        title = f"Hessian spectrum, {pname} N={X.shape[0]}, {model.arch} {model.activation}"
        if hessian:
            res.update(hessian_check(tp, params, method=method, k=k, seed=seed, plot=plot, title=title))
            res.pop("eigenvalues")
        if jacobian:
            if model.n_layers < 2:
                raise LiftnnError("--jacobian needs at least one hidden layer (the lifted states)")
            res.update(jacobian_check(model, X, Y, seed=seed, c=c, spy_path=spy))
        if gradcheck:
            res.update(gradient_check(tp, params))
    except LiftnnError as exc:
        _fail(str(exc))
    if as_json:
        print(json.dumps(_clean(res)))
    else:
        _print_tables(res, modes)
