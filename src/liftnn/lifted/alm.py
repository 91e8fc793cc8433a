"""method="alm": the lifted (multiple-shooting) trainer, augmented Lagrangian + Gauss-Newton.

The outer multiplier loop only (docs/lifted.md).  Its pieces live in their own modules:

- liftnn.lifted.inner: the inner damped Gauss-Newton solve of L_beta with an Armijo line search,
  jitted and vmapped over seeds (`inner.compiled`, one program per static `inner.InnerConfig`);
- liftnn.lifted.gauss_newton / liftnn.lifted.linsolve: the per-sample elimination of the states
  and the reduced weight solves;
- liftnn.lifted.schemes: the "evens" (default) and "ialm" multiplier / penalty / tolerance updates;
- liftnn.lifted.stopping: the stopping rules ("auto" = kkt or stall, "kkt", "thesis", "stall",
  "none"; plus max_outer, time_budget, line-search failures and non-finite values).

Each outer iteration solves the inner problem from the current lifted point, evaluates the
*simulated* network of the new weights (problem.objective: the states recomputed from the
weights, a feasible point), updates multipliers and penalty, restarts from the start point if
L_beta exceeds f(z_0) (evens, `restart`), and applies the stopping rules.  The returned weights
are those of the outer iterate whose simulated network has the lowest training loss (with
validation data, problem.X_val / Y_val: the lowest validation loss, recorded as "val_loss" in the
history, with early stopping after `val_patience` outer iterations without improvement), so a run
never returns an infeasible or non-finite network.

Several initialisations run in one call: `fit_many` stacks them and vmaps the inner solve; the
outer bookkeeping is vectorised over seeds, each with its own stop mask.
"""

from __future__ import annotations

import functools
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from liftnn import padding, sharding, xla_options
from liftnn._validate import check_choice, check_lifted_problem, check_positive
from liftnn.errors import LiftnnError
from liftnn.lifted import inner, linsolve, output, schemes, stopping
from liftnn.models.activations import RELU_MODES
from liftnn.models.losses import get_loss
from liftnn.models.losses import mse as mse_loss
from liftnn.solvers import result as R

DEFAULTS = {
    "scheme": "evens",
    "relu_mode": "complementarity",
    "linear_solver": "auto",
    "beta0": None,  # None: the scheme's default (evens: beta0_factor * f(z0); ialm: 10)
    # beta_0 = f(z_0) and damping 1e-3 (Evens et al.: 1e-3 f(z_0), damping ~0): with a penalty
    # far below the loss and an undamped reduced system the first inner solve decoupled the
    # layers and threw the weights far from the start (simulated MSE 1e2-1e3 on sin^2), and the
    # run settled in a large-norm, sharp minimum that predicted badly (docs/why-models.md)
    # None: 1, or CE_DECAY_BETA0_FACTOR for a cross-entropy lane with weight decay > 0
    "beta0_factor": None,
    "eps0": 1e-1,
    "eps_min": 1e-2,
    "eps_kkt": 1e-3,
    "gamma": 0.5,
    "xi": 2.0,
    "alpha": 2.0,
    "max_outer": 50,
    "max_inner": 20,
    "damping": 1e-3,
    "ls_factor": 0.8,
    "ls_sigma": 0.1,
    "max_ls": 40,
    "line_search": "interp",
    "stop": "auto",
    "thesis_eps": 1e-2,
    "patience": 3,
    "near_best": 1.5,
    "give_up": None,  # None: 2 * patience
    "settle_h": 1e-2,  # "settled" also needs ||h||_inf <= settle_h (the lifted point nearly feasible)
    "restart": True,
    "t0": 1.0,
    "t_decay": 0.7,
    "t_min": 1e-8,
    "time_budget": None,
    "callback": None,
    "progress": False,
    "max_iter": None,  # alias of max_outer (the common option name)
    "val_patience": 5,  # with validation data: stop after this many outer iterations without a new best
}


#: beta_0 / f(z_0) for a cross-entropy lane with weight decay > 0.  At the default 1 the first
#: inner solves let the decay shrink the weights while the free states carried the fit, and
#: the run settled on a near-linear network: the classify suite's moons / spirals 2-16-16-2 with
#: weight_decay="prior" ended at objective 0.265 / 0.468 (train accuracy 0.89 / 0.73) where lbfgs
#: reaches 0.104 / 0.158; 10 reached 0.104 / 0.172, 100 0.104 / 0.143 (5 seeds; iris, wine,
#: breast cancer the same objective at 1, 10 and 100)
CE_DECAY_BETA0_FACTOR = 100.0


def _check_options(opts: dict, problem) -> dict:
    unknown = set(opts) - set(DEFAULTS)
    if unknown:
        raise LiftnnError(f"unknown option(s) for alm: {', '.join(sorted(unknown))}; valid: "
                          f"{', '.join(sorted(DEFAULTS))}")
    o = {**DEFAULTS, **opts}
    if o["max_iter"] is not None:
        o["max_outer"] = int(o["max_iter"])
    check_choice("outer scheme", o["scheme"], schemes.SCHEMES)
    check_choice("ReLU mode", o["relu_mode"], RELU_MODES)
    check_choice("linear solver", o["linear_solver"], linsolve.SOLVERS)
    check_choice("stopping rule", o["stop"], stopping.STOPS)
    check_choice("line search", o["line_search"], ("interp", "backtrack"))
    if o["beta0"] is not None:
        check_positive("beta0", o["beta0"])
        if o["scheme"] == "ialm" and o["beta0"] <= 1:
            raise LiftnnError(f"ialm needs beta0 > 1 (beta_k = beta0^k); got {o['beta0']}")
    if o["beta0_factor"] is not None:
        check_positive("beta0_factor", o["beta0_factor"])
    for k in ("eps0", "eps_min", "xi", "t0", "t_decay", "near_best"):
        check_positive(k, o[k])
    if not (isinstance(o["settle_h"], (int, float)) and o["settle_h"] > 0):
        raise LiftnnError(f"settle_h must be a number > 0 (inf: no feasibility test); got "
                          f"{o['settle_h']!r}")
    for k in ("eps_kkt", "damping", "alpha", "t_min", "thesis_eps"):
        check_positive(k, o[k], strict=False)
    if not 0 < o["gamma"] < 1 or not 0 < o["ls_factor"] < 1 or not 0 < o["ls_sigma"] < 1:
        raise LiftnnError("gamma, ls_factor and ls_sigma must lie in (0, 1)")
    if o["give_up"] is None:
        o["give_up"] = 2 * int(o["patience"])
    for k in ("max_outer", "max_inner", "max_ls", "patience", "give_up", "val_patience"):
        if int(o[k]) < 1:
            raise LiftnnError(f"{k} must be >= 1; got {o[k]}")
    if o["time_budget"] is not None:
        check_positive("time_budget", o["time_budget"])
    check_lifted_problem(problem, "alm")
    return o


def _inner_config(problem, o: dict, P: int, decay: bool, rows: int) -> inner.InnerConfig:
    """The inner solve's configuration; the linear solver is chosen for the `rows` the program
    sees (the padded size), c and m are the real data's."""
    m, O = int(problem.Y.shape[0]), int(problem.Y.shape[1])
    return inner.InnerConfig(
        problem.model, o["relu_mode"],
        linsolve.choose(o["linear_solver"], rows, O, P, problem.loss == output.CROSS_ENTROPY),
        output.scale(problem.loss, m, O), m, decay,
        float(o["damping"]), int(o["max_inner"]),
        inner.LineSearch(float(o["ls_factor"]), float(o["ls_sigma"]), int(o["max_ls"]),
                         o["line_search"] == "interp"), problem.loss == output.CROSS_ENTROPY)


def _stop_settings(o: dict) -> stopping.StopSettings:
    return stopping.StopSettings(o["stop"], o["eps_kkt"], o["thesis_eps"], o["patience"],
                                 o["near_best"], o["give_up"], o["settle_h"], int(o["val_patience"]))


_EVALUATORS: dict = {}


def _beta0_factor(o: dict, problem, mu_w: np.ndarray):
    """The evens scheme's beta_0 / f(z_0), per lane: the option when given; else 1, and
    CE_DECAY_BETA0_FACTOR for the cross-entropy with weight decay > 0 (docs/lifted.md
    "Classification")."""
    if o["beta0_factor"] is not None:
        return o["beta0_factor"]
    ce = problem.loss == output.CROSS_ENTROPY
    return np.where(ce & (np.asarray(mu_w) > 0), CE_DECAY_BETA0_FACTOR, 1.0)


def _evaluator(problem, mu_w: np.ndarray):
    """jit(vmap) over seeds of (problem.objective, problem.data_loss, MSE) of the simulated
    network on (X, Y) (the training data, or the validation data), with weight decay mu_w[k]
    for seed k, mu_w: (K,); over the real rows of padded data (liftnn.padding.masked_loss).

    One compiled function per (model, loss, weight decay or none): the traced function uses only
    those fields of `problem` (X, Y and the weight decays' values are arguments), so problems
    that share them share it.  The objective is problem.objective's formula (liftnn.problem
    .objective_value)."""
    decay = bool(np.any(mu_w > 0))
    key = (problem.model, problem.loss, decay)
    if key not in _EVALUATORS:
        if len(_EVALUATORS) >= 64:  # bounded, like inner.compiled's cache
            _EVALUATORS.clear()
        model, loss = problem.model, problem.loss
        loss_fn = get_loss(loss)

        def evaluate(params, X, Y, mu_w, rows, m):
            out = model.apply(params, X)
            data = padding.masked_loss(loss_fn, loss, out, Y, rows, m)
            obj = data
            if decay:
                obj = obj + 0.5 * mu_w * jnp.sum(ravel_pytree(params)[0] ** 2)  # objective_value's
            return obj, data, padding.masked_loss(mse_loss, "mse", out, Y, rows, m)

        _EVALUATORS[key] = xla_options.jit(jax.vmap(evaluate, in_axes=(0, None, None, 0, None, None)))
    wd = np.asarray(mu_w, dtype=np.float64)
    compiled = _EVALUATORS[key]

    def run(params, X, Y, rows=None, m=None):
        """(objective, data loss, MSE) per seed on (X, Y); rows: the row weights of padded data
        (None: every row), m: the real number of samples (None: X's rows)."""
        n = X.shape[0]
        return compiled(params, X, Y, wd, np.ones(n) if rows is None else rows,
                        np.float64(n if m is None else m))

    return run


def _stack(trees):
    """Stack K parameter pytrees along a new leading axis, on the host (one transfer per leaf,
    no per-shape XLA compilation of eager stack ops)."""
    return jax.tree_util.tree_map(lambda *xs: jax.device_put(np.stack([np.asarray(x) for x in xs])),
                                  *trees)


def _where(mask, a, b):
    """Per-seed select on batched pytrees (mask shape (K,))."""
    return jax.tree_util.tree_map(
        lambda x, y: jnp.where(mask.reshape((-1,) + (1,) * (x.ndim - 1)), x, y), a, b)


def _advance(*args):
    """_advance_body, compiled on first use (not at import: the backend is not started then)."""
    return _advance_program()(*args)


@functools.cache
def _advance_program():
    return xla_options.jit(_advance_body)


def _advance_body(params, Z, lam, p_new, z_new, hs, lam_coef, keep, restart, p0, z0, better, best):
    """One outer update for all seeds: accept the inner result where `keep`, lambda += coef * h,
    restart from z0 where `restart` (Evens), and record the best simulated iterate."""
    lam_new = [lj + lam_coef.reshape(-1, 1, 1) * hj for lj, hj in zip(lam, hs)]
    params = _where(keep, p_new, params)
    Z = _where(keep, z_new, Z)
    lam = [jnp.where(keep.reshape(-1, 1, 1), a, b) for a, b in zip(lam_new, lam)]
    params = _where(restart, p0, params)
    Z = _where(restart, z0, Z)
    return params, Z, lam, _where(better, p_new, best)


class _Outer(NamedTuple):
    """The outer iterate of all K seeds (device arrays batched over seeds) and its bookkeeping."""

    params: list
    Z: list
    lam: list
    best_params: list
    t: np.ndarray  # ReLU relaxation parameter per seed
    penalty: schemes.PenaltyState
    watch: stopping.Watch
    counts: dict  # per-seed (K,) totals: outer, gn, lin, ls
    ret_loss: np.ndarray  # training objective of best_params (the iterate to return)
    best_iter: np.ndarray  # outer iteration of best_params (0 = the start)


class _Context(NamedTuple):
    """What stays fixed during one fit_many call."""

    o: dict
    kernels: inner.Kernels
    evaluate: object  # _evaluator(problem)
    X: jax.Array
    Y: jax.Array
    u0: tuple  # (params, Z) at the start (Evens' restart point)
    f0: np.ndarray  # start losses
    smooth: bool  # ReLU relaxation in use (t decays)
    t_start: float
    hist: list  # per seed, the history rows (appended to)
    val: tuple | None  # (X_val, Y_val) or None
    train: tuple  # (X, Y, row weights or None, real m): the evaluator's training arguments


def _history_row(n_outer, loss, mse, res, beta, counts, i, now, status) -> dict:
    return {"iter": int(n_outer), "loss": float(loss), "train_mse": float(mse),
            "h_inf": float(res.h_inf[i]), "grad_norm": float(res.grad_norm[i]), "beta": float(beta),
            "gn_iters": int(res.gn_iters[i]), "lin_iters": int(res.lin_iters[i]), "step": float("nan"),
            "nfev": int(counts["ls"][i] + counts["outer"][i]), "njev": int(counts["gn"][i]), "nhev": 0,
            "time": now, "inner_status": status}


def fit(problem, params0, **options):
    """Train one initialisation with the lifted ALM (see fit_many)."""
    return fit_many(problem, [params0], **options)[0]


def fit_many(problem, params0_list, *, devices=None, weight_decays=None, pad_to=None, **options):
    """Train several initialisations in one vectorised call; one Result per initialisation.

    problem: a liftnn.problem.TrainingProblem with a least-squares loss or the softmax
    cross-entropy (one-hot targets; liftnn.lifted.output) and an MLP with at least one hidden layer; params0_list: K initial parameter lists; options: see DEFAULTS.
    devices: split the samples (X, Y, the states and the multipliers) over that many devices
    (liftnn.sharding, docs/devices.md; None or 1: one device).  weight_decays: one mu_w >= 0
    per initialisation in place of problem.weight_decay (liftnn.bayes trains each start with
    its own).  pad_to: run in that many lanes (>= K; None: K), the extra ones idle copies of the
    first initialisation that are stopped from the start (one evaluation per outer iteration), so
    that calls with fewer initialisations reuse the program compiled for pad_to lanes (liftnn.bayes's
    later cycles train only the starts that have not settled)."""
    o = _check_options(options, problem)
    problem, mesh = sharding.shard_problem(problem, devices)
    K = len(params0_list)
    mu_w = np.broadcast_to(np.asarray(problem.weight_decay if weight_decays is None
                                      else weight_decays, dtype=np.float64), (K,)).copy()
    if not np.all(np.isfinite(mu_w) & (mu_w >= 0)):
        raise LiftnnError(f"weight_decays must be K = {K} numbers >= 0; got {weight_decays!r}")
    n_idle = 0 if pad_to is None else int(pad_to) - K
    if n_idle < 0:
        raise LiftnnError(f"pad_to = {pad_to} is fewer lanes than the K = {K} initialisations")
    if n_idle:
        params0_list = list(params0_list) + [params0_list[0]] * n_idle
        mu_w = np.concatenate([mu_w, np.full(n_idle, mu_w[0])])
        K = K + n_idle
    m = int(problem.Y.shape[0])
    size = padding.size_for(m) if mesh is None else m  # sharded data are not padded
    X, Y, rows = problem.X, problem.Y, None
    if size > m:  # zero rows of weight 0 up to the bucket size (liftnn.padding)
        X, Y, rows = padding.pad_rows(X, size), padding.pad_rows(Y, size), padding.row_weights(m, size)
    cfg = _inner_config(problem, o, sum(int(np.size(a)) for a in jax.tree_util.tree_leaves(params0_list[0])),
                        bool(np.any(mu_w > 0)), size)
    kernels, evaluate = inner.kernels_for(cfg, mu_w, rows), _evaluator(problem, mu_w)
    t_start = time.perf_counter()
    smooth = o["relu_mode"] != "gd" and "relu" in problem.model.activations[:-1]
    params = _stack([[(W, b) for W, b in p] for p in params0_list])
    t = np.full((K,), float(o["t0"]) if smooth else 1.0)
    Z = kernels.start(params, X, t)
    f0, _, mse0 = (np.asarray(a) for a in evaluate(params, X, Y, rows, m))
    if not np.all(np.isfinite(f0)):
        raise LiftnnError("the loss is not finite at the initial weights")
    val = None if problem.X_val is None else (problem.X_val, problem.Y_val)
    val0 = None if val is None else np.asarray(evaluate(params, *val)[1])
    pen = schemes.init(o["scheme"], f0, beta0=o["beta0"], beta0_factor=_beta0_factor(o, problem, mu_w),
                       eps0=o["eps0"])
    Z, lam = sharding.shard_states(Z, [jax.device_put(np.zeros(z.shape)) for z in Z], mesh)
    st = _Outer(params, Z, lam, params, t, pen,
                stopping.start(f0, val0), {k: np.zeros(K, int) for k in ("outer", "gn", "lin", "ls")},
                f0.copy(), np.zeros(K, int))
    hist = [[{"iter": 0, "loss": float(f0[i]), "train_mse": float(mse0[i]), "h_inf": 0.0,
              "grad_norm": float("nan"), "beta": float(pen.beta[i]), "gn_iters": 0, "lin_iters": 0,
              "step": float("nan"), "nfev": 1, "njev": 0, "nhev": 0, "time": time.perf_counter() - t_start,
              **({} if val is None else {"val_loss": float(val0[i])})}]
            for i in range(K)]
    ctx = _Context(o, kernels, evaluate, X, Y, (params, Z), f0, smooth, t_start, hist, val,
                   (X, Y, rows, m))
    done = np.zeros(K, bool)
    done[K - n_idle:] = True  # the idle lanes of pad_to
    status = np.array([R.MAX_ITER] * K, dtype=object)
    message = np.array([""] * K, dtype=object)
    interrupted = False
    progress = _progress(o["progress"], o["max_outer"])
    try:
        for k in range(1, int(o["max_outer"]) + 1):
            st, verdict, now = _outer_iteration(ctx, st, k, done)
            for i in np.flatnonzero(verdict.status != ""):
                done[i], status[i], message[i] = True, verdict.status[i], verdict.message[i]
            if o["callback"] is not None:
                o["callback"](k, st.best_params, st.ret_loss)
            progress(k, int(done.sum()) - n_idle, K - n_idle)
            if done.all():
                break
            why = stopping.budget(k, now, int(o["max_outer"]), o["time_budget"])
            if why:
                status[~done], message[~done] = R.MAX_ITER, why
                break
    except KeyboardInterrupt:
        interrupted = True
        status[~done], message[~done] = R.INTERRUPTED, stopping.INTERRUPTED_MESSAGE
    finally:
        progress(None, None, None)
    return _results(st, status, message, hist, cfg, o, t_start, interrupted, val)[:K - n_idle]


def _outer_iteration(ctx: _Context, st: _Outer, k: int, done):
    """Inner solve, simulated-network evaluation, multiplier / penalty update, restart and the
    stopping rules for outer iteration k; appends the history rows of the active seeds.
    Returns (new state, stopping.Verdict, elapsed seconds)."""
    o, X, Y = ctx.o, ctx.X, ctx.Y
    active = ~done
    eps_run = np.where(done, np.inf, st.penalty.eps)
    # host arrays straight into the jitted programs: jnp.asarray would compile a copy per shape
    res = ctx.kernels.solve(st.params, st.Z, st.lam, np.asarray(st.penalty.beta, np.float64),
                            np.asarray(eps_run, np.float64), np.asarray(st.t, np.float64), X, Y)
    res = res._replace(**{f: np.asarray(getattr(res, f)) for f in
                          ("gn_iters", "lin_iters", "ls_evals", "status", "grad_norm", "lagrangian", "h_inf")})
    counts = {"outer": st.counts["outer"] + active,
              "gn": st.counts["gn"] + np.where(active, res.gn_iters, 0),
              "lin": st.counts["lin"] + np.where(active, res.lin_iters, 0),
              "ls": st.counts["ls"] + np.where(active, res.ls_evals, 0)}
    loss, _, mse = (np.asarray(a) for a in ctx.evaluate(res.params, *ctx.train))
    val_loss = None if ctx.val is None else np.asarray(ctx.evaluate(res.params, *ctx.val)[1])
    finite = np.isfinite(loss) & np.isfinite(res.lagrangian) & np.isfinite(res.h_inf)
    keep = active & finite
    lam_coef, proposed = schemes.update(o["scheme"], st.penalty, res.h_inf, k,
                                        schemes.EvensSettings(o["gamma"], o["xi"], o["alpha"], o["eps_min"]))
    names = np.array(inner.status_names(res.status))
    obs = stopping.Observation(loss, res.grad_norm, res.h_inf, st.penalty.h_prev,
                               names == "line_search_failed", active, finite, val_loss)
    verdict = stopping.judge(st.watch, obs, k, _stop_settings(o))
    restart = (keep & (res.lagrangian > ctx.f0) if (o["restart"] and o["scheme"] == "evens")
               else np.zeros(len(done), bool))
    params, Z, lam, best_params = _advance(
        st.params, st.Z, st.lam, res.params, res.Z, res.h, np.asarray(lam_coef, np.float64),
        np.asarray(keep, bool), np.asarray(restart, bool), ctx.u0[0], ctx.u0[1],
        np.asarray(verdict.better, bool), st.best_params)
    penalty = schemes.accept(st.penalty, proposed, keep)
    t = np.where(active, np.maximum(st.t * o["t_decay"], o["t_min"]), st.t) if ctx.smooth else st.t
    now = time.perf_counter() - ctx.t_start
    for i in np.flatnonzero(active):
        ctx.hist[i].append(_history_row(counts["outer"][i], loss[i], mse[i], res, penalty.beta[i], counts, i,
                                        now, str(names[i])))
        if val_loss is not None:
            ctx.hist[i][-1]["val_loss"] = float(val_loss[i])
    better = verdict.better
    return _Outer(params, Z, lam, best_params, t, penalty, verdict.watch, counts,
                  np.where(better, loss, st.ret_loss), np.where(better, counts["outer"], st.best_iter)), verdict, now


def _results(st: _Outer, status, message, hist, cfg, o, t_start, interrupted, o_val) -> list:
    """One Result per seed; with validation data also val_loss (of the returned iterate)."""
    results = []
    best_host = jax.device_get(st.best_params)  # one transfer; slicing and ravelling on the host
    c = st.counts
    for i in range(len(status)):
        p = [(jax.device_put(W[i]), None if b is None else jax.device_put(b[i])) for W, b in best_host]
        theta = np.concatenate([np.ravel(a[i]) for a in jax.tree_util.tree_leaves(best_host)])
        results.append(R.Result(
            params=p, x=theta, fun=float(st.ret_loss[i]), nit=int(c["gn"][i]),
            outer_iterations=int(c["outer"][i]), nfev=int(c["ls"][i] + c["outer"][i] + 1),
            njev=int(c["gn"][i]), nhev=0, lin_iters=int(c["lin"][i]), status=str(status[i]),
            success=str(status[i]) == R.CONVERGED, message=str(message[i]), history=hist[i],
            linear_solver=cfg.linear_solver, scheme=o["scheme"], relu_mode=o["relu_mode"],
            time_s=time.perf_counter() - t_start, interrupted=interrupted, best_iter=int(st.best_iter[i]),
            **({} if o_val is None else {"val_loss": float(st.watch.best_val[i])}),
        ))
    return results


def _progress(enabled, total):
    """A rich progress bar over outer iterations (no-op unless enabled)."""
    if not enabled:
        return lambda *a: None
    from rich.progress import Progress

    prog = Progress(transient=True)
    task = prog.add_task("alm outer iterations", total=total)
    prog.start()

    def update(k, ndone, K):
        if k is None:
            prog.stop()
            return
        prog.update(task, completed=k, description=f"alm: {ndone}/{K} runs done")

    return update
