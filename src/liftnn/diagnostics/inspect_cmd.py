"""Curvature, lifted-Jacobian and gradient checks of one network at its initial weights: the work
behind `liftnn inspect` (the command itself, its flags and tables, is liftnn.cli.inspect).

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
--gradcheck: max relative errors between jax.grad, central finite differences and the explicit
delta recursion liftnn.models.backprop (seed 002).
With --json one JSON object holds the fields of every requested check (json_safe: non-finite
numbers as null).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from liftnn.errors import LiftnnError

CHECKS = ("hessian", "jacobian", "gradcheck")


def json_safe(x):
    """JSON-safe copy: numpy scalars -> Python, non-finite floats -> None."""
    if isinstance(x, dict):
        return {k: json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_safe(v) for v in x]
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        x = float(x)
        return x if math.isfinite(x) else None
    if isinstance(x, np.ndarray):
        return json_safe(x.tolist())
    if isinstance(x, Path):
        return str(x)
    return x


def _suffixed(path: Path, tag: str) -> Path:
    return path.with_name(f"{path.stem}{tag}{path.suffix or '.png'}")


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
    from liftnn.lifted.thesis import jacobian as jm
    from liftnn.lifted.thesis.residual import ThesisResidual

    lp = ThesisResidual(model, X, Y, penalty=c)
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
    """Max relative errors among jax.grad, central differences and liftnn.models.backprop."""
    import jax
    import jax.numpy as jnp

    from liftnn.models.backprop import backprop

    theta = problem.flatten(params)
    n = int(theta.size)
    g_ad = np.asarray(jax.jit(jax.grad(problem.fun))(theta))
    h = np.finfo(np.float64).eps ** (1 / 3) * np.maximum(1.0, np.abs(np.asarray(theta)))
    P = jnp.asarray(np.diag(h))
    fv = jax.jit(jax.vmap(problem.fun))
    g_fd = (np.asarray(fv(theta[None, :] + P)) - np.asarray(fv(theta[None, :] - P))) / (2 * h)
    out = {"gradcheck_n": n, "ad_vs_fd": _rel(g_ad, g_fd), "backprop_available": True,
           "backprop_vs_ad": None, "backprop_vs_fd": None, "backprop_loss": None}
    model, X, Y = problem.model, problem.X, problem.Y
    try:
        g_bp = _as_flat_grad(backprop(model, params, X, Y, loss=problem.loss), n)
    except Exception as exc:  # noqa: BLE001 - a failing check is reported, not raised
        out["backprop_note"] = f"backprop failed: {type(exc).__name__}: {exc}"
        return out
    out["backprop_loss"] = problem.loss
    out["backprop_vs_ad"] = _rel(g_bp, g_ad)
    out["backprop_vs_fd"] = _rel(g_bp, g_fd)
    out["backprop_note"] = f"compared with the gradient of the {problem.loss} loss"
    return out


def inspect_network(*, problem: str | None, n: int | None, arch: str, activation: str,
                    output_activation: str, init: str, seed: int, data_seed: int, loss: str,
                    checks: list[str], method: str, k: int | None, c: float, plot: Path,
                    spy: Path) -> dict:
    """Run the requested `checks` (a subset of CHECKS) on one network at model.init(seed).

    The data: data set `problem` (default sin2) with `n` points, or, for the Jacobian alone and
    no problem, N = n (default 7) standard-normal inputs/targets (the structure does not depend
    on the data).  Returns one dict with the network's description and every check's fields;
    raises LiftnnError on bad input.
    """
    import liftnn as ln

    model = ln.MLP(arch, activation=activation, output_activation=output_activation, init=init)
    if problem is None and checks == ["jacobian"]:
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
           "init": model.init_name, "seed": seed, "n": int(X.shape[0]), "checks": checks}
    title = f"Hessian spectrum, {pname} N={X.shape[0]}, {model.arch} {model.activation}"
    if "hessian" in checks:
        res.update(hessian_check(tp, params, method=method, k=k, seed=seed, plot=plot, title=title))
        res.pop("eigenvalues")
    if "jacobian" in checks:
        if model.n_layers < 2:
            raise LiftnnError("--jacobian needs at least one hidden layer (the lifted states)")
        res.update(jacobian_check(model, X, Y, seed=seed, c=c, spy_path=spy))
    if "gradcheck" in checks:
        res.update(gradient_check(tp, params))
    return res
