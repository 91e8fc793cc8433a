"""The `seeds-lectures` suite: the experiments of lecture seeds 001, 003 and 004, reproduced.

`run_lectures(out_dir)` runs everything, stores the numbers in out_dir/lectures.json and calls
`build_report(out_dir)`, which draws the PNG figures and writes out_dir/report.md from that file
(so the report can be rebuilt without rerunning).  Every number in the report is computed here.

Seed 004 (van der Smagt, "optimisation in neural networks"):

- the three-point line fit {(0, 1), (1, 2.1), (2, 2.9)}, L(a, b) = sum_i (a x_i + b - z_i)^2:
  closed form (normal equations, a = 0.95, b = 1.05) and every iterative method of liftnn from
  (0, 0), with the distance to (0.95, 1.05) each reaches;
- the Gaussian bump y = a exp(-b (x - c)^2) + d (data set "gauss-bump") fitted from several
  starts with lm, gn, bfgs, newton and cg: which starts reach the best fit and which stop in a
  local minimum or on a plateau;
- gradient descent with a too small, a good and a too large step (relative to the bound
  2 / lambda_max of seed 003, exact for this quadratic) next to momentum with alpha + beta = 1.

Seed 001 (Moeller's report): BFGS with the strong Wolfe search, 20 iterations, on the 6-point
data with the 3-2 sigmoid network without bias (z = sigmoid(W^T y), W^T = x.reshape(3, 2) as in
the report's code) and the report's objective f = (1/m) sum_i ||z_i - z(y_i)||^2 (twice liftnn's
"mse", which averages over entries), initial weights x0 = s * N(0, I) with s = 0.01, 1, 100 (one
fixed draw, numpy default_rng(0)) and Wolfe pairs (mu, eta) = (1e-4, 0.1), (1e-5, 0.3),
(1e-6, 0.5): the report's three log-scale figures.  Then the same for its two-hidden-layer
network (liftnn.models.moeller.Moeller2Net, data set "moeller2"), which the report could not run.

Seed 003 (Belharbi, "On the optimization of neural networks"): newton, bfgs, cg, gn and lm (plus
lbfgs and newton-cg) on a small network (sin2, 1-4-1 tanh): iterations, evaluations and time side
by side; the Hessian spectrum and condition number at the start and at the end; the step bound
2 / lambda_max at the start.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

LINE_X = np.array([0.0, 1.0, 2.0])
LINE_Z = np.array([1.0, 2.1, 2.9])
WOLFE_PAIRS = [(1e-4, 0.1), (1e-5, 0.3), (1e-6, 0.5)]
SCALES = [0.01, 1.0, 100.0]
BUMP_STARTS = [(1.0, 1.0, 0.0, 0.0), (1.0, 0.1, -1.0, 0.0), (-1.0, 1.0, 1.0, 0.0),
               (3.0, 5.0, 2.0, 1.0), (0.5, 1.0, -2.0, 1.0), (1.0, 1.0, 3.0, 0.0),
               (1.0, 1.0, 5.0, 0.0)]
BUMP_METHODS = ["lm", "gn", "bfgs", "newton", "cg"]
SEED003_METHODS = ["newton", "bfgs", "cg", "gn", "lm", "lbfgs", "newton-cg"]
FIRST_ORDER_LINE = [  # method, options: fixed steps that converge on the line fit
    ("gd", {"lr": 0.1}), ("momentum", {"lr": 0.05, "beta": 0.95}),
    ("nesterov", {"lr": 0.05, "beta": 0.9}), ("adam", {"lr": 1e-2}),
    ("rmsprop", {"lr": 1e-3}), ("adadelta", {"lr": 1.0}), ("rprop", {"min_step": 1e-14}),
]


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


def _losses(res) -> list[float]:
    return [float(h["loss"]) for h in res.history]


def _run_row(res, **extra) -> dict:
    return {"status": res.status, "nit": int(res.nit), "nfev": int(res.nfev),
            "njev": int(res.njev), "nhev": int(res.get("nhev", 0)),
            "time_s": float(res.time_s), "message": str(res.message), **extra}


def _line_loss(w):
    """Seed 004: L(a, b) = sum_i (a x_i + b - z_i)^2."""
    return jnp.sum((w[0] * LINE_X + w[1] - LINE_Z) ** 2)


def _line_residual(w):
    return w[0] * LINE_X + w[1] - LINE_Z


# ---------------------------------------------------------------------------------------------
# seed 004
# ---------------------------------------------------------------------------------------------


def line_fit(quick: bool = False) -> dict:
    """Seed 004's line fit: closed form and every iterative method from (0, 0)."""
    from liftnn.solvers.api import least_squares, minimize

    A = np.stack([LINE_X, np.ones(3)], axis=1)
    closed = np.linalg.solve(A.T @ A, A.T @ LINE_Z)  # normal equations dL/da = dL/db = 0
    L_star = float(_line_loss(closed))
    rows = []
    methods = [("cg", {}), ("bfgs", {}), ("lbfgs", {}), ("newton", {}), ("newton-cg", {})]
    methods += FIRST_ORDER_LINE[:1] if quick else FIRST_ORDER_LINE
    for method, opts in methods:
        first_order = method not in ("cg", "bfgs", "lbfgs", "newton", "newton-cg")
        extra = {"patience": None, "max_iter": 2000 if quick else 20000} if first_order else {}
        r = minimize(_line_loss, [0.0, 0.0], method=method, gtol=1e-10, **extra, **opts)
        rows.append(_run_row(r, method=method, options=opts, a=float(r.x[0]), b=float(r.x[1]),
                             error=float(np.max(np.abs(r.x - closed))), losses=_losses(r)))
    for method in ("gn", "lm"):
        r = least_squares(_line_residual, [0.0, 0.0], method=method, gtol=1e-12)
        rows.append(_run_row(r, method=method, options={}, a=float(r.x[0]), b=float(r.x[1]),
                             error=float(np.max(np.abs(r.x - closed))),
                             losses=[2.0 * v for v in _losses(r)]))  # cost -> L = ||r||^2
    return {"closed_form": closed.tolist(), "loss_star": L_star, "rows": rows}


def step_sizes(quick: bool = False) -> dict:
    """Seed 004's step-size pictures on the line fit: gd with alpha = 0.03, 0.7 and 1.1 times
    2 / lambda_max (lambda_max of the constant Hessian 2 A^T A), and momentum with
    alpha + beta = 1."""
    from liftnn.solvers.api import minimize

    A = np.stack([LINE_X, np.ones(3)], axis=1)
    H = 2.0 * A.T @ A
    lam = np.linalg.eigvalsh(H)
    bound = 2.0 / float(lam[-1])
    closed = np.linalg.solve(A.T @ A, A.T @ LINE_Z)
    L_star = float(_line_loss(closed))
    n_iter = 3000  # enough for the too-large step to overflow (status diverged)
    runs = [("gd", "too small", {"lr": 0.03 * bound}), ("gd", "good", {"lr": 0.7 * bound}),
            ("gd", "too large", {"lr": 1.1 * bound}),
            ("momentum", "alpha + beta = 1", {"lr": 0.1, "beta": 0.9}),
            ("momentum", "alpha + beta = 1", {"lr": 0.02, "beta": 0.98})]
    rows = []
    for method, label, opts in runs:
        with np.errstate(over="ignore", invalid="ignore"):
            r = minimize(_line_loss, [0.0, 0.0], method=method, patience=None, max_iter=n_iter,
                         gtol=1e-12, **opts)
        rows.append(_run_row(r, method=method, label=label, options=opts,
                             lr_over_bound=opts["lr"] / bound,
                             error=float(np.max(np.abs(r.x_last - closed))),
                             losses=_losses(r)))
    return {"lambda": lam.tolist(), "bound": bound, "loss_star": L_star, "rows": rows}


def gauss_bump(quick: bool = False) -> dict:
    """Seed 004's Gaussian bump a exp(-b (x - c)^2) + d from several starts (data "gauss-bump")."""
    from liftnn.datasets import load
    from liftnn.solvers.api import least_squares, minimize

    ds = load("gauss-bump")
    X, Y = ds.x_train[:, 0], ds.y_train[:, 0]
    Xj, Yj = jnp.asarray(X), jnp.asarray(Y)

    def residual(w):
        return w[0] * jnp.exp(-w[1] * (Xj - w[2]) ** 2) + w[3] - Yj

    def loss(w):
        r = residual(w)
        return r @ r

    starts = BUMP_STARTS[:2] if quick else BUMP_STARTS
    methods = BUMP_METHODS[:2] if quick else BUMP_METHODS
    rows = []
    for i, s in enumerate(starts):
        for method in methods:
            with np.errstate(over="ignore", invalid="ignore"):
                if method in ("gn", "lm"):
                    r = least_squares(residual, s, method=method, max_iter=2000)
                    losses = [2.0 * v for v in _losses(r)]
                else:
                    r = minimize(loss, s, method=method, max_iter=2000)
                    losses = _losses(r)
            rows.append(_run_row(r, start=i, x0=list(s), method=method,
                                 x=[float(v) for v in r.x], loss=min(losses),  # loss at r.x
                                 losses=losses))
    best = min(row["loss"] for row in rows)
    for row in rows:
        row["best"] = bool(row["loss"] <= best * (1.0 + 1e-6))
    return {"x": X.tolist(), "y": Y.tolist(), "truth": [ds.meta[k] for k in "abcd"],
            "starts": [list(s) for s in starts], "methods": methods, "best_loss": best,
            "rows": rows}


# ---------------------------------------------------------------------------------------------
# seed 001
# ---------------------------------------------------------------------------------------------


def _moeller_objective(name: str):
    """The report's f = (1/m) sum_i ||z_i - z(y_i; x)||^2 for "moeller" (3-2 sigmoid, no bias,
    W^T = x.reshape(3, 2)) or "moeller2" (Moeller2Net, 62 weights); returns (f, n)."""
    from liftnn.datasets import load

    ds = load(name)
    Yin, Z = jnp.asarray(ds.x_train), jnp.asarray(ds.y_train)
    if name == "moeller":
        def f(x):
            z = jax.nn.sigmoid(Yin @ x.reshape(3, 2))
            return jnp.mean(jnp.sum((Z - z) ** 2, axis=1))
        return f, 6
    from liftnn.models.moeller import Moeller2Net

    net = Moeller2Net()

    def f2(x):
        return jnp.mean(jnp.sum((Z - net.apply(net.unflatten(x), Yin)) ** 2, axis=1))
    return f2, net.n_params


def moeller_bfgs(name: str = "moeller", quick: bool = False) -> dict:
    """Seed 001: BFGS, 20 iterations, x0 = s * N(0, I), every (scale, Wolfe pair)."""
    from liftnn.solvers.api import minimize

    f, n = _moeller_objective(name)
    base = np.random.default_rng(0).standard_normal(n)
    rows = []
    for scale in SCALES:
        for mu, eta in WOLFE_PAIRS:
            with np.errstate(over="ignore", invalid="ignore"):
                r = minimize(f, scale * base, method="bfgs", mu=mu, eta=eta, max_iter=20,
                             gtol=0.0)
            rows.append(_run_row(r, scale=scale, mu=mu, eta=eta, losses=_losses(r),
                                 final=float(r.fun), grad_norm=float(np.max(np.abs(r.jac)))))
    return {"network": name, "n_params": n, "rows": rows}


# ---------------------------------------------------------------------------------------------
# seed 003
# ---------------------------------------------------------------------------------------------


def seed003(quick: bool = False) -> dict:
    """Second-order methods on a small network: sin2 (n = 20), 1-4-1 tanh, init seed 0."""
    from liftnn.datasets import load
    from liftnn.diagnostics.curvature import condition_number
    from liftnn.models.mlp import MLP
    from liftnn.problem import TrainingProblem
    from liftnn.train import train

    ds = load("sin2", n=20)
    model = MLP("1-4-1", activation="tanh")
    problem = TrainingProblem(model, ds.x_train, ds.y_train)
    hess = jax.jit(jax.hessian(problem.fun))

    def spectrum(theta):
        lam = np.linalg.eigvalsh(np.asarray(hess(jnp.asarray(theta))))
        return lam, condition_number(lam)

    theta0 = np.asarray(problem.flatten(model.init(0)))
    lam0, cond0 = spectrum(theta0)
    rows = []
    methods = ["newton", "bfgs", "lm"] if quick else SEED003_METHODS
    for method in methods:
        opts = {"max_iter": 30} if quick else {}
        r = train(model, ds, method=method, seed=0, **opts)
        lam, cond = spectrum(r.x)
        rows.append(_run_row(r, method=method, loss=float(r.fun), train_mse=float(r.train_mse),
                             losses=_losses(r), eigenvalues=lam.tolist(), condition=cond,
                             lambda_min=float(lam[0]), lambda_max=float(lam[-1])))
    return {"network": "1-4-1 tanh", "dataset": "sin2 (n = 20)", "n_params": int(theta0.size),
            "eigenvalues0": lam0.tolist(), "condition0": cond0, "lambda_max0": float(lam0[-1]),
            "step_bound0": 2.0 / float(lam0[-1]) if lam0[-1] > 0 else math.inf, "rows": rows}


# ---------------------------------------------------------------------------------------------
# the suite
# ---------------------------------------------------------------------------------------------


def run_lectures(out_dir, quick: bool = False) -> dict:
    """Run the seeds-lectures experiments, store them in out_dir/lectures.json and write the
    figures and out_dir/report.md (build_report).  quick=True: a reduced version (fewer starts,
    methods and iterations) for tests.  Returns the stored data plus "report" and "figures"."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    data = {"suite": "seeds-lectures", "quick": bool(quick)}
    data["line_fit"] = line_fit(quick)
    data["step_sizes"] = step_sizes(quick)
    data["gauss_bump"] = gauss_bump(quick)
    data["moeller"] = moeller_bfgs("moeller", quick)
    data["moeller2"] = moeller_bfgs("moeller2", quick)
    data["seed003"] = seed003(quick)
    data["elapsed_s"] = time.perf_counter() - t0
    (out / "lectures.json").write_text(json.dumps(data, indent=1))
    data.update(build_report(out))
    return data


# ---------------------------------------------------------------------------------------------
# figures and report
# ---------------------------------------------------------------------------------------------


def _figure(w=6.4, h=4.2):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h))
    return fig, fig.subplots()


def _positive(values, floor=1e-300):
    v = np.asarray(values, dtype=float)
    return np.where(np.isfinite(v), np.maximum(v, floor), np.nan)


def _save(fig, out: Path, name: str, figures: list) -> str:
    fig.tight_layout()
    fig.savefig(out / name, dpi=110)
    figures.append(name)
    return name


def _fmt(v, digits=3) -> str:
    if v is None:
        return ""
    if isinstance(v, str):
        return v
    v = float(v)
    if not math.isfinite(v):
        return str(v)
    if v == 0.0:
        return "0"
    return f"{v:.{digits}g}" if 1e-3 <= abs(v) < 1e5 else f"{v:.{digits}e}"


def _table(head, body) -> list[str]:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in body]
    return lines + [""]


def _section(title: str, text: str, head: list, body: list) -> list[str]:
    """A report section's heading, its paragraph and its table."""
    return [f"## {title}", "", text, ""] + _table(head, body)


def _image(fig, ax, out: Path, name: str, figures: list, alt: str, **legend) -> list[str]:
    """Add the legend, save the figure and return the markdown that shows it."""
    ax.legend(**legend)
    return [f"![{alt}]({_save(fig, out, name, figures)})", ""]


def _fig_moeller(out, sec, figures, tag) -> list[str]:
    rows = sec["rows"]

    def pick(scale, mu, eta):
        return next(r for r in rows if r["scale"] == scale and r["mu"] == mu and r["eta"] == eta)

    names = []
    fig, ax = _figure()
    r = pick(0.01, *WOLFE_PAIRS[0])
    ax.semilogy(_positive(r["losses"]), "o-", label=r"$\mu=10^{-4}, \eta=0.1$")
    ax.set(xlabel="Iteration step", ylabel="Objective function value",
           title=f"Convergence history for BFGS (20 iterations), {tag}")
    ax.legend()
    names.append(_save(fig, out, f"{sec['network']}_bfgs.png", figures))
    fig, ax = _figure()
    for mu, eta in WOLFE_PAIRS:
        ax.semilogy(_positive(pick(0.01, mu, eta)["losses"]), "o-",
                    label=rf"$\mu={mu:g}, \eta={eta:g}$")
    ax.set(xlabel="Iteration step", ylabel="Objective function value",
           title=f"Stronger Wolfe conditions, {tag}")
    ax.legend(loc="lower left")
    names.append(_save(fig, out, f"{sec['network']}_wolfe.png", figures))
    fig, ax = _figure()
    for scale in SCALES:
        ax.semilogy(_positive(pick(scale, *WOLFE_PAIRS[0])["losses"]), "o-",
                    label=rf"$x_0 = {scale:g}\cdot N(0, I)$")
    ax.set(xlabel="Iteration step", ylabel="Objective function value",
           title=f"Different starting values, {tag}")
    ax.legend(loc="lower left")
    names.append(_save(fig, out, f"{sec['network']}_scales.png", figures))
    return names


def build_report(out_dir) -> dict:
    """Draw the figures and write report.md from out_dir/lectures.json (written by
    run_lectures); returns {"report": path, "figures": [file names]}."""
    out = Path(out_dir)
    data = json.loads((out / "lectures.json").read_text())
    figures: list[str] = []
    md = ["# seeds-lectures: the lecture-note experiments of seeds 001, 003 and 004", ""]
    if data.get("quick"):
        md += ["*Quick (reduced) run: fewer methods, starts and iterations.*", ""]
    md += [(f"Total run time {data['elapsed_s']:.1f} s.  Every number below is computed by "
            "`liftnn.bench.lectures` (rerun with `liftnn bench seeds-lectures`)."), ""]
    md += _md_line_fit(out, data, figures)
    md += _md_step_sizes(out, data, figures)
    md += _md_gauss_bump(out, data, figures)
    md += _md_seed001(out, data, figures)
    md += _md_seed003(out, data, figures)
    report = out / "report.md"
    report.write_text("\n".join(md))
    return {"report": str(report), "figures": figures}


def _md_line_fit(out: Path, data: dict, figures: list) -> list[str]:
    """Seed 004's line fit: the table of every method and its convergence figure."""
    lf = data["line_fit"]
    a, b = lf["closed_form"]
    text = ("L(a, b) = sum_i (a x_i + b - z_i)^2 on {(0, 1), (1, 2.1), (2, 2.9)}.  Closed form "
            f"(normal equations): a = {a:.12g}, b = {b:.12g}, L* = {lf['loss_star']:.6g}.  "
            "Every method starts at (0, 0); gtol = 1e-10 (1e-12 on J^T r for gn/lm).")
    body = []
    for r in lf["rows"]:
        opts = ", ".join(f"{k}={v:g}" for k, v in r["options"].items())
        body.append([r["method"] + (f" ({opts})" if opts else ""), f"{r['a']:.10f}",
                     f"{r['b']:.10f}", _fmt(r["error"]), "yes" if r["error"] <= 1e-8 else "no",
                     r["nit"], r["status"]])
    md = _section("Seed 004: the three-point line fit", text,
                  ["method", "a", "b", "max error", "<= 1e-8", "iterations", "status"], body)
    fig, ax = _figure(7, 4.4)
    for r in lf["rows"]:
        gap = np.asarray(r["losses"]) - lf["loss_star"]
        ax.loglog(np.arange(1, len(gap) + 1), _positive(gap, 1e-18), label=r["method"])
    ax.set(xlabel="iteration + 1", ylabel="L - L*", title="Line fit: convergence of every method")
    md += _image(fig, ax, out, "line_fit_convergence.png", figures, "line fit", fontsize=7, ncol=2)
    return md


def _md_step_sizes(out: Path, data: dict, figures: list) -> list[str]:
    """Seed 004's step sizes and momentum on the line fit."""
    ss = data["step_sizes"]
    text = (f"The line-fit Hessian 2 A^T A has eigenvalues {_fmt(ss['lambda'][0], 4)} and "
            f"{_fmt(ss['lambda'][1], 4)}, so fixed-step gradient descent is stable only for "
            f"alpha < 2 / lambda_max = {ss['bound']:.4g} (seed 003).")
    body = [[r["method"], r["label"], _fmt(r["options"]["lr"], 4),
             _fmt(r["options"].get("beta")), _fmt(r["lr_over_bound"]), r["nit"], r["status"],
             _fmt(r["error"])] for r in ss["rows"]]
    md = _section("Seed 004: the step size, and momentum", text,
                  ["method", "step", "alpha", "beta", "alpha / bound", "iterations", "status",
                   "final max-norm error of w"], body)
    fig, ax = _figure(7, 4.4)
    for r in ss["rows"]:
        gap = np.asarray(r["losses"]) - ss["loss_star"]
        lab = f"{r['method']} {r['label']} (alpha={r['options']['lr']:.3g}" + (
            f", beta={r['options']['beta']:g})" if "beta" in r["options"] else ")")
        ax.semilogy(np.minimum(_positive(gap, 1e-18), 1e40), label=lab)
    ax.set(xlabel="iteration", ylabel="L - L* (clipped to [1e-18, 1e40])", ylim=(1e-18, 1e41),
           title="Gradient descent step sizes vs momentum (line fit)")
    md += _image(fig, ax, out, "step_sizes.png", figures, "step sizes", fontsize=7)
    return md


def _md_gauss_bump(out: Path, data: dict, figures: list) -> list[str]:
    """Seed 004's Gaussian bump from several starts."""
    gb = data["gauss_bump"]
    truth = ", ".join(_fmt(v) for v in gb["truth"])
    text = (f"y = a exp(-b (x - c)^2) + d fitted to the `gauss-bump` data (truth a, b, c, d = "
            f"{truth}); best loss found {gb['best_loss']:.6g} (sum of squares).  'best' marks "
            "runs that reach it (within 1e-6 relative).")
    body = []
    for r in gb["rows"]:
        body.append([r["start"], "(" + ", ".join(_fmt(v) for v in r["x0"]) + ")", r["method"],
                     "(" + ", ".join(_fmt(v) for v in r["x"]) + ")", _fmt(r["loss"], 6),
                     "yes" if r["best"] else "no", r["nit"], r["status"]])
    md = _section("Seed 004: the Gaussian bump from several starts", text,
                  ["start", "x0 (a, b, c, d)", "method", "final (a, b, c, d)", "loss", "best",
                   "iterations", "status"], body)
    counts = {m: sum(r["best"] for r in gb["rows"] if r["method"] == m) for m in gb["methods"]}
    md += ["Runs reaching the best fit: " + ", ".join(
        f"{m} {c}/{len(gb['starts'])}" for m, c in counts.items()) + ".", ""]
    fig, ax = _figure(7, 4.4)
    x, y = np.asarray(gb["x"]), np.asarray(gb["y"])
    ax.plot(x, y, "k.", label="data")
    grid = np.linspace(x.min(), x.max(), 300)
    for r in gb["rows"]:
        if r["method"] != gb["methods"][0]:
            continue
        p = r["x"]
        with np.errstate(over="ignore", invalid="ignore"):
            ax.plot(grid, p[0] * np.exp(-p[1] * (grid - p[2]) ** 2) + p[3],
                    label=f"{r['method']} from start {r['start']} (loss {r['loss']:.3g})")
    ax.set(xlabel="x", ylabel="y", title=f"Gaussian bump: {gb['methods'][0]} from each start")
    md += _image(fig, ax, out, "gauss_bump_fits.png", figures, "bump fits", fontsize=7)
    fig, ax = _figure(7, 4.4)
    for r in gb["rows"]:
        if r["method"] == gb["methods"][0]:
            ax.semilogy(_positive(r["losses"]), label=f"start {r['start']}")
    ax.set(xlabel="iteration", ylabel="sum of squares",
           title=f"Gaussian bump: {gb['methods'][0]} convergence from each start")
    md += _image(fig, ax, out, "gauss_bump_convergence.png", figures, "bump convergence", fontsize=7)
    return md


BFGS_RUNS = ("20 BFGS iterations with the strong Wolfe search, f = (1/m) sum_i "
             "‖z_i - z(y_i)‖², B_0 = I, x0 = s N(0, I) (one draw), gtol = 0 (all 20 "
             "iterations unless the search fails or the gradient is exactly 0).")


def _md_seed001(out: Path, data: dict, figures: list) -> list[str]:
    """Seed 001's BFGS runs on the two Moeller networks."""
    md: list[str] = []
    two_layer = ("the two-hidden-layer network (62 weights), which the report could not run")
    for key, tag, what in (("moeller", "3-2 sigmoid", "the single-layer network (6 weights)"),
                           ("moeller2", "Moeller2Net", two_layer)):
        sec = data[key]
        body = [[_fmt(r["scale"]), _fmt(r["mu"]), _fmt(r["eta"]), _fmt(r["losses"][0], 4),
                 _fmt(r["final"], 4), _fmt(r["grad_norm"], 3), r["nit"], r["nfev"], r["status"]]
                for r in sec["rows"]]
        md += _section(f"Seed 001: BFGS on {what}", BFGS_RUNS,
                       ["scale s", "mu", "eta", "f(x0)", "f after the run", "max abs gradient",
                        "iterations", "f/grad evaluations", "status"], body)
        for name in _fig_moeller(out, sec, figures, tag):
            md += [f"![{name}]({name})", ""]
    return md


def _md_seed003(out: Path, data: dict, figures: list) -> list[str]:
    """Seed 003's second-order methods and the Hessian spectra."""
    s3 = data["seed003"]
    text = (f"{s3['dataset']}, {s3['network']} ({s3['n_params']} weights), `ln.train` with "
            "each method's network defaults (gtol = 1e-8), the same initial weights (seed 0).  "
            f"At the start: condition number {_fmt(s3['condition0'])}, lambda_max "
            f"{_fmt(s3['lambda_max0'])}, so a fixed gradient step must stay below "
            f"2 / lambda_max = {_fmt(s3['step_bound0'])}.")
    body = [[r["method"], _fmt(r["loss"], 6), r["nit"], r["nfev"], r["njev"], r["nhev"],
             _fmt(r["time_s"]), r["status"], _fmt(r["lambda_min"]), _fmt(r["lambda_max"]),
             _fmt(r["condition"])] for r in s3["rows"]]
    md = _section("Seed 003: second-order methods on a small network", text,
                  ["method", "final MSE", "iterations", "nfev", "njev", "nhev", "time (s)",
                   "status", "lambda_min (end)", "lambda_max (end)", "condition (end)"], body)
    fig, ax = _figure(7, 4.4)
    for r in s3["rows"]:
        ax.semilogy(_positive(r["losses"]), label=r["method"])
    ax.set(xlabel="iteration", ylabel="training MSE", title="Seed 003 methods on sin2 1-4-1 tanh")
    md += _image(fig, ax, out, "seed003_convergence.png", figures, "seed 003 convergence", fontsize=8)
    fig, ax = _figure(7, 4.4)
    lam0 = np.asarray(s3["eigenvalues0"])
    ax.semilogy(np.abs(lam0), "ko-", label=f"start (cond {_fmt(s3['condition0'])})")
    best = min(s3["rows"], key=lambda r: r["loss"])
    lam1 = np.asarray(best["eigenvalues"])
    ax.semilogy(np.abs(lam1), "s--", label=f"end, {best['method']} (cond {_fmt(best['condition'])})")
    for lam, style in ((lam0, "kx"), (lam1, "rx")):
        neg = np.flatnonzero(lam < 0)
        if neg.size:
            ax.semilogy(neg, np.abs(lam[neg]), style, ms=10)
    ax.set(xlabel="index (ascending eigenvalue)", ylabel="|eigenvalue| (x: negative)",
           title="Hessian spectrum at the start and at the end")
    md += _image(fig, ax, out, "seed003_spectrum.png", figures, "spectrum", fontsize=8)
    return md
