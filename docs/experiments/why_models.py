"""Why do alm's networks predict worse?  The measurements behind docs/why-models.md.

Run (from the repository root, a few minutes on 2 cores):

    PYTHONPATH=src MPLBACKEND=Agg LIFTNN_SANTAFE_DIR=/path/to/santafe \
        python docs/experiments/why_models.py [--seeds 5] [--out docs/experiments/why_models.json]

Parts (each writes into one JSON file and docs/figures/why-*.png):

1. "compare": alm (defaults) vs adam vs lm from the same initial weights (`model.init(seed)`,
   ln.train(..., seeds=range(K))): train / test MSE, weight norm ||theta||_2, sharpness (the
   largest Hessian eigenvalue of the training loss at the returned weights), iterations, and the
   test MSE of alm's best-so-far iterate along its outer iterations (callback).
2. "variants": alm with other option sets (damping, max_inner, penalty schedule, ReLU relaxation,
   stopping).  Selection is done on a validation split of the *training* set only: every variant
   is trained on 80 % of the training data and scored on the other 20 %; the test set is only
   read for the report columns.
3. "lifted-gn": the lifted constrained Gauss-Newton method (liftnn.lifted.lifted_gn) next to alm,
   adam and lm on sin^2 tanh 1-8-8-1, sin^2 relu 1-16-16-1 and diabetes 10-16-16-1 relu.

Timings are taken on a shared, loaded machine: compare only ratios within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import jax
import numpy as np

import liftnn as ln
from liftnn.bench.figures import save_figure
from liftnn.datasets.base import Dataset
from liftnn.diagnostics import curvature
from liftnn.problem import TrainingProblem

ROOT = Path(__file__).resolve().parents[2]
FIG = ROOT / "docs" / "figures"

ADAM = {"lr": 1e-3, "patience": 10, "max_iter": 4000}


def problems(only=None):
    """name -> (dataset, model factory, free-run?)."""
    out = {}
    if only is None or "sin2-relu" in only:
        out["sin2-relu"] = (ln.datasets.load("sin2", n=20), lambda: ln.MLP([1, 16, 16, 1], activation="relu"), False)
    if only is None or "sin2-tanh" in only:
        out["sin2-tanh"] = (ln.datasets.load("sin2", n=20), lambda: ln.MLP([1, 8, 8, 1], activation="tanh"), False)
    if only is None or "diabetes" in only:
        out["diabetes"] = (ln.datasets.load("diabetes"), lambda: ln.MLP([10, 16, 16, 1], activation="relu"), False)
    if (only is None or "santafe" in only) and os.environ.get("LIFTNN_SANTAFE_DIR"):
        out["santafe"] = (ln.datasets.load("santafe", n=600, lags=80),
                          lambda: ln.MLP([80, 48, 1], activation="tanh"), True)
    return out


def split_train(ds: Dataset, frac=0.2, seed=123) -> Dataset:
    """Hold out `frac` of the TRAINING rows as the 'test' set of a new Dataset (validation)."""
    m = len(ds.x_train)
    idx = np.random.default_rng(seed).permutation(m)
    nv = max(1, round(frac * m))
    va, tr = idx[:nv], idx[nv:]
    return Dataset(ds.x_train[tr], ds.y_train[tr], ds.x_train[va], ds.y_train[va], dict(ds.meta))


def theta_of(params):
    return np.concatenate([np.ravel(np.asarray(a)) for a in jax.tree_util.tree_leaves(params)])


def sharpness(model, ds, params):
    """Largest eigenvalue of the Hessian of the training MSE at params."""
    prob = TrainingProblem(model, ds.x_train, ds.y_train)
    th = prob.flatten(params)
    if th.shape[0] <= 1000:
        H = curvature.hessian(prob.fun, th)
        return float(np.linalg.eigvalsh(H)[-1])
    return float(curvature.lambda_max(prob.fun, th, max_iter=300, tol=1e-4).value)


def freerun(model, params, ds):
    from liftnn.bench.freerun import free_run_mse
    return free_run_mse(model, params, ds, steps=100)[0]


def run(method, model, ds, seeds, *, freerun_score=False, sharp=False, **opts):
    t0 = time.perf_counter()
    rs = ln.train(model, ds, method=method, seeds=list(seeds), **opts)
    wall = time.perf_counter() - t0
    rows = []
    for r in rs:
        row = {"method": method, "seed": r["seed"], "train_mse": float(r["train_mse"]),
                   "test_mse": float(r["test_mse"]), "nit": int(r["nit"]), "status": str(r["status"]),
                   "norm": float(np.linalg.norm(theta_of(r["params"]))), "time_s": wall / len(rs),
                   "outer": int(r.get("outer_iterations", 0) or 0)}
        if freerun_score:
            row["freerun_mse"] = freerun(model, r["params"], ds)
        if sharp:
            row["sharpness"] = sharpness(model, ds, r["params"])
        rows.append(row)
    return rows, rs


def med(rows, key):
    v = np.array([r[key] for r in rows if key in r], float)
    return float(np.median(v)) if len(v) else float("nan")


def mean(rows, key):
    v = np.array([r[key] for r in rows if key in r], float)
    return float(np.mean(v)) if len(v) else float("nan")


# ---------------------------------------------------------------------------------------------


def part_compare(seeds, out, names=("sin2-relu", "diabetes", "santafe"), peers=("adam", "lm")):
    res = out.setdefault("compare", {})
    for name, (ds, mk, fr) in problems(list(names)).items():
        model = mk()
        res[name] = {}
        for meth, opts in (("adam", ADAM), ("lm", {})):
            if meth not in peers:
                continue
            rows, _ = run(meth, model, ds, seeds, freerun_score=fr, sharp=True, **opts)
            res[name][meth] = rows
        # alm with a callback: test MSE of the best-so-far iterate per outer iteration
        trace = []

        def cb(k, best_params, best_loss, model=model, ds=ds, trace=trace):
            bp = jax.device_get(best_params)
            te = []
            for i in range(len(best_loss)):
                p = [(W[i], None if b is None else b[i]) for W, b in bp]
                te.append(float(np.mean((np.asarray(model.apply(p, ds.x_test)) - ds.y_test) ** 2)))
            trace.append({"k": k, "test": te, "train_loss": [float(x) for x in best_loss]})

        rows, rs = run("alm", model, ds, seeds, freerun_score=fr, sharp=True, callback=cb)
        res[name]["alm"] = rows
        res[name]["alm_trace"] = trace
        res[name]["alm_hist"] = [[{k: h.get(k) for k in ("iter", "train_mse", "h_inf", "beta", "gn_iters")}
                                  for h in r["history"]] for r in rs]
        print(name, {m: (med(res[name][m], "train_mse"), med(res[name][m], "test_mse"),
                         med(res[name][m], "norm"), med(res[name][m], "sharpness"))
                     for m in ("adam", "lm", "alm") if m in res[name]}, flush=True)
        out["compare"] = res
        save(out)
    return res


VARIANTS = {
    "default": {},
    "beta0_factor=1": {"beta0_factor": 1.0},
    "beta0_factor=10": {"beta0_factor": 10.0},
    "damping=1e-3": {"damping": 1e-3},
    "beta0_factor=1,damping=1e-3": {"beta0_factor": 1.0, "damping": 1e-3},
    "beta0_factor=1,max_inner=5": {"beta0_factor": 1.0, "max_inner": 5},
    "max_inner=3": {"max_inner": 3},
    "relu_mode=gd": {"relu_mode": "gd"},
}


def part_variants(seeds, out, names=None, probs=("sin2-relu", "diabetes", "santafe")):
    """Each variant is trained on 80 % of the training set; val_mse (the other 20 %) is the only
    number used for selection; test_mse is the untouched test set, for the report."""
    res = out.setdefault("variants", {})
    variants = {k: VARIANTS[k] for k in (names or VARIANTS)}
    for name, (ds, mk, fr) in problems(list(probs)).items():
        model = mk()
        dv = split_train(ds)
        res.setdefault(name, {})
        for vname, opts in variants.items():
            if "relu_mode" in opts and "relu" not in model.activations:
                continue
            rows, rs = run("alm", model, dv, seeds, freerun_score=fr, **opts)
            for row, r in zip(rows, rs):
                row["val_mse"] = row.pop("test_mse")
                row["test_mse"] = float(np.mean((np.asarray(model.apply(r["params"], ds.x_test))
                                                 - ds.y_test) ** 2))
            res[name][vname] = rows
            print(name, vname, "val", med(rows, "val_mse"), "train", med(rows, "train_mse"),
                  "test", med(rows, "test_mse"), "fr", med(rows, "freerun_mse"),
                  "nit", med(rows, "nit"), "t", med(rows, "time_s"), flush=True)
            save(out)
    return res


def part_liftedgn(seeds, out, alm_rec=None, labels=None, probs=("sin2-tanh", "sin2-relu", "diabetes")):
    res = out.setdefault("lifted_gn", {})
    for name, (ds, mk, fr) in problems(list(probs)).items():
        model = mk()
        res.setdefault(name, {})
        cfgs = [("adam", "adam", ADAM), ("lm", "lm", {}), ("alm", "alm", {}),
                ("lifted-gn", "lifted-gn", {})]
        if alm_rec:
            cfgs.insert(3, ("alm (recommended)", "alm", alm_rec))
        for label, meth, opts in cfgs:
            if labels and label not in labels:
                continue
            run(meth, model, ds, [0], **opts)  # warm: compile outside the timing
            rows, _ = run(meth, model, ds, seeds, **opts)
            res[name][label] = rows
            print(name, label, med(rows, "train_mse"), med(rows, "test_mse"), med(rows, "nit"),
                  med(rows, "time_s"), flush=True)
            save(out)
    return res


# ---------------------------------------------------------------------------------------------

OUT = ROOT / "docs" / "experiments" / "why_models.json"


def save(out):
    OUT.write_text(json.dumps(out, indent=1))


def figures(out):
    import matplotlib.pyplot as plt

    FIG.mkdir(parents=True, exist_ok=True)
    comp = out.get("compare", {})
    if comp:
        fig, axes = plt.subplots(1, len(comp), figsize=(3.3 * len(comp), 2.8))
        for ax, (name, r) in zip(np.atleast_1d(axes), comp.items()):
            tr = r["alm_trace"]
            ks = [t["k"] for t in tr]
            te = np.array([t["test"] for t in tr])
            for i in range(te.shape[1]):
                ax.semilogy(ks, te[:, i], color="C0", alpha=0.5)
            for meth, col in (("adam", "C1"), ("lm", "C2")):
                if meth not in r:
                    continue
                ax.axhline(med(r[meth], "test_mse"), color=col, ls="--", label=f"{meth} (median)")
            ax.set_title(name, fontsize=9)
            ax.set_xlabel("alm outer iteration")
            ax.set_ylabel("test MSE of best-so-far")
            ax.legend(fontsize=7)
        save_figure(fig, FIG / "why-test-along-outer.png", dpi=80)
        fig, axes = plt.subplots(1, len(comp), figsize=(3.3 * len(comp), 2.8))
        for ax, (name, r) in zip(np.atleast_1d(axes), comp.items()):
            for h in r["alm_hist"]:
                ax.semilogy([x["iter"] for x in h], [x["train_mse"] for x in h], color="C0", alpha=0.5)
            ax.axhline(r["alm_hist"][0][0]["train_mse"], color="k", ls=":", label="start")
            ax.set_title(name, fontsize=9)
            ax.set_xlabel("alm outer iteration")
            ax.set_ylabel("train MSE of the simulated network")
            ax.legend(fontsize=7)
        save_figure(fig, FIG / "why-simulated-train-mse.png", dpi=80)
        fig, axes = plt.subplots(1, 2, figsize=(6.6, 2.8))
        for j, key in enumerate(("norm", "sharpness")):
            ax = axes[j]
            for k, (name, r) in enumerate(comp.items()):
                for mi, meth in enumerate(("adam", "lm", "alm")):
                    v = [x[key] for x in r.get(meth, []) if key in x]
                    ax.scatter([k + 0.25 * (mi - 1)] * len(v), v, color=f"C{mi}", s=10,
                               label=meth if k == 0 else None)
            ax.set_yscale("log")
            ax.set_xticks(range(len(comp)), list(comp), fontsize=8)
            ax.set_title({"norm": "||theta||_2", "sharpness": "lambda_max(Hessian)"}[key], fontsize=9)
            ax.legend(fontsize=7)
        save_figure(fig, FIG / "why-norm-sharpness.png", dpi=80)


def main():
    global OUT
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--parts", default="compare,variants,lifted-gn")
    ap.add_argument("--variants", default=None, help="names from VARIANTS separated by ;")
    ap.add_argument("--recommended", default=None, help="JSON dict of alm options for part 3")
    ap.add_argument("--out", default=str(OUT), help="results JSON (read, updated, written)")
    ap.add_argument("--tables", nargs="*", help="only print markdown tables (and draw the figures) "
                    "from these JSON files")
    ap.add_argument("--problems", default="sin2-relu,diabetes,santafe", help="for parts compare and variants")
    ap.add_argument("--labels", default=None, help="part lifted-gn: only these rows (; separated)")
    ap.add_argument("--peers", default="adam,lm", help="for part compare")
    a = ap.parse_args()
    a.problems_given = any(x.startswith("--problems") for x in __import__("sys").argv)
    if a.tables:
        print(tables(a.tables))
        figures(merged(a.tables))
        return
    OUT = Path(a.out)
    seeds = range(a.seeds)
    out = json.loads(OUT.read_text()) if OUT.exists() else {}
    parts = a.parts.split(",")
    if "compare" in parts:
        part_compare(seeds, out, a.problems.split(","), a.peers.split(","))
    if "variants" in parts:
        part_variants(seeds, out, a.variants.split(";") if a.variants else None,
                      a.problems.split(","))
    if "lifted-gn" in parts:
        part_liftedgn(seeds, out, json.loads(a.recommended) if a.recommended else None,
                      a.labels.split(";") if a.labels else None,
                      a.problems.split(",") if a.problems_given else ("sin2-tanh", "sin2-relu", "diabetes"))
    save(out)
    figures(out)



def merged(paths):
    out = {}
    for p in paths:
        if Path(p).exists():
            for part, probs in json.loads(Path(p).read_text()).items():
                for name, rows in probs.items():
                    out.setdefault(part, {}).setdefault(name, {}).update(rows)
    return out


def tables(paths):
    """Markdown tables (medians over seeds; means of test MSE after the slash) from result files."""
    out = merged(paths)

    def cell(rows, key, fmt="{:.3g}"):
        v = [r[key] for r in rows if key in r]
        return fmt.format(np.median(v)) if v else "-"

    def test_cell(rows):
        return f"{cell(rows, 'test_mse')} / {np.mean([x['test_mse'] for x in rows]):.3g}"

    # part -> (first two column titles, the other columns as (title, function of the rows))
    its, secs = ("iterations", lambda r: cell(r, "nit", "{:.0f}")), lambda r: cell(r, "time_s", "{:.2f}")
    layouts = {
        "compare": (("problem", "method"), [
            ("train MSE", lambda r: cell(r, "train_mse")), ("test MSE (median / mean)", test_cell),
            ("free-run MSE", lambda r: cell(r, "freerun_mse")), ("weight norm", lambda r: cell(r, "norm")),
            ("sharpness (largest Hessian eigenvalue)", lambda r: cell(r, "sharpness")), its]),
        "variants": (("problem", "alm options"), [
            ("val MSE (selection)", lambda r: cell(r, "val_mse")),
            ("train MSE", lambda r: cell(r, "train_mse")), ("test MSE", lambda r: cell(r, "test_mse")),
            ("free-run MSE", lambda r: cell(r, "freerun_mse")), ("GN iterations", its[1]),
            ("time/run (s, loaded)", secs)]),
        "lifted_gn": (("problem", "method"), [
            ("train MSE", lambda r: cell(r, "train_mse")), ("test MSE (median / mean)", test_cell), its,
            ("time/run (s, loaded, incl. compiling the batch)", secs)]),
    }
    lines = []
    for part, (keys, cols) in layouts.items():
        if part not in out:
            continue
        titles = list(keys) + [t for t, _ in cols]
        lines += ["| " + " | ".join(titles) + " |", "|---" * len(titles) + "|"]
        for name, r in out[part].items():
            picked = ([(m, r[m]) for m in ("adam", "lm", "alm") if m in r] if part == "compare"
                      else r.items())  # compare's entries also hold alm's traces
            for label, rows in picked:
                lines.append("| " + " | ".join([name, label] + [f(rows) for _, f in cols]) + " |")
        lines.append("")
    return "\n".join(lines)

if __name__ == "__main__":
    main()
