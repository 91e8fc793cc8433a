"""method="alm": the lifted (multiple-shooting) trainer, augmented Lagrangian + Gauss-Newton.

Three separable pieces (STYLE.md): the outer multiplier loop (this module), the inner Gauss-Newton
solve with an Armijo line search (`_inner`, jitted), and the structured linear solve
(liftnn.lifted.linsolve, states eliminated per sample in liftnn.lifted.gauss_newton).

Outer schemes (DESIGN.md §1):

- "evens" (default; Evens et al. 2021): feasible start (states by simulating the network from the
  same initial weights every method receives), lambda_0 = 0, beta_0 = beta0_factor * f(z_0);
  inner tolerance eps_k = max(eps_min, 0.5 eps_{k-1}), eps_0 = 1e-1, on the (scaled) gradient of
  L_beta; lambda <- lambda + beta h; beta is kept if ||h||_inf shrank by gamma = 0.5, else
  beta <- max(xi beta, beta_0 (k+1)^alpha), xi = 2, alpha = 2; if L_beta at the new point exceeds
  f(z_0) the next inner solve restarts from z_0.  GN line search: Armijo with sufficient decrease
  ls_sigma = 0.1 against the linearised model's slope; line_search="backtrack" shrinks the step by
  ls_factor = 0.8 (Evens), "interp" (default) by the minimiser of the quadratic through Phi(0),
  Phi'(0), Phi(t), safeguarded to [0.1, ls_factor] times the last step (fewer evaluations).
- "ialm" (thesis / Sahin et al. 2019): beta_k = beta0^k, inner tolerance 1/beta_k, dual step
  sigma_k = min(||h(u_1)|| log^2 2 / (||h(u_k)|| k log^2(k+1)), 1).

Stopping (`stop`): "kkt" (Evens' eps-KKT: scaled ||grad L_beta||_inf <= eps and ||h||_inf <= eps),
"thesis" ((1 + thesis_eps) C_{k+1} > C_k, C = training loss of the simulated network), "stall"
(the best simulated loss has not improved by a factor (1 - thesis_eps) for `patience` outer
iterations while the current simulated loss stays within `near_best` times the best, i.e. the
iterate has settled rather than still travelling, and ||h||_inf <= settle_h (default 1e-2: a
lifted point still far from feasible has not settled, however flat its simulated loss); counted
only once the simulated loss has improved on the start at least once, since the first outer
iterations often trade loss for feasibility; and, with status "stalled", `give_up` (default
2 patience) outer iterations that improved neither the best simulated loss nor ||h||_inf,
wherever the iterate is, so a run that wandered off its best stops), "auto" (default: kkt or
stall, whichever comes first); plus max_outer and time_budget.  The returned weights are those
of the outer iterate whose *simulated* network (the states recomputed from the weights, i.e. a
feasible point) has the lowest training loss, so a run never returns an infeasible or
non-finite network.

Several initialisations run in one call: `fit_many` stacks them and vmaps the jitted inner solve;
the outer bookkeeping is vectorised over seeds, each with its own stop mask.
"""

from __future__ import annotations

import functools
import math
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from liftnn._validate import check_choice, check_positive
from liftnn.errors import LiftnnError
from liftnn.lifted import gauss_newton as gnm
from liftnn.lifted import linsolve
from liftnn.models.activations import get_activation
from liftnn.models.losses import residual_scale
from liftnn.solvers import result as R

#: XLA CPU option for the jitted inner solve, whose compilation dominates short runs: skipping
#: LLVM's most expensive passes (measured as XLA_FLAGS on sin2 ReLU 1-16-16-1, n = 40, 20 seeds:
#: compilation 4.9 -> 4.2 s, the loop itself not slower)
FAST_COMPILE = {"xla_llvm_disable_expensive_passes": True}

SCHEMES = ("evens", "ialm")
STOPS = ("auto", "kkt", "thesis", "stall", "none")
DEFAULTS = dict(
    scheme="evens",
    relu_mode="complementarity",
    linear_solver="auto",
    beta0=None,  # None: the scheme's default (evens: beta0_factor * f(z0); ialm: 10)
    beta0_factor=1e-3,
    eps0=1e-1,
    eps_min=1e-2,
    eps_kkt=1e-3,
    gamma=0.5,
    xi=2.0,
    alpha=2.0,
    max_outer=50,
    max_inner=20,
    damping=1e-9,
    ls_factor=0.8,
    ls_sigma=0.1,
    max_ls=40,
    line_search="interp",
    stop="auto",
    thesis_eps=1e-2,
    patience=3,
    near_best=1.5,
    give_up=None,  # None: 2 * patience
    settle_h=1e-2,  # "settled" also needs ||h||_inf <= settle_h (the lifted point nearly feasible)
    restart=True,
    t0=1.0,
    t_decay=0.7,
    t_min=1e-8,
    time_budget=None,
    callback=None,
    progress=False,
    max_iter=None,  # alias of max_outer (the common option name)
)


def _check_options(opts: dict, problem) -> dict:
    unknown = set(opts) - set(DEFAULTS)
    if unknown:
        raise LiftnnError(f"unknown option(s) for alm: {', '.join(sorted(unknown))}; valid: "
                          f"{', '.join(sorted(DEFAULTS))}")
    o = {**DEFAULTS, **opts}
    if o["max_iter"] is not None:
        o["max_outer"] = int(o["max_iter"])
    check_choice("outer scheme", o["scheme"], SCHEMES)
    check_choice("ReLU mode", o["relu_mode"], gnm.RELU_MODES)
    check_choice("linear solver", o["linear_solver"], linsolve.SOLVERS)
    check_choice("stopping rule", o["stop"], STOPS)
    check_choice("line search", o["line_search"], ("interp", "backtrack"))
    if o["beta0"] is not None:
        check_positive("beta0", o["beta0"])
        if o["scheme"] == "ialm" and o["beta0"] <= 1:
            raise LiftnnError(f"ialm needs beta0 > 1 (beta_k = beta0^k); got {o['beta0']}")
    for k in ("beta0_factor", "eps0", "eps_min", "xi", "t0", "t_decay", "near_best"):
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
    for k in ("max_outer", "max_inner", "max_ls", "patience", "give_up"):
        if int(o[k]) < 1:
            raise LiftnnError(f"{k} must be >= 1; got {o[k]}")
    if o["time_budget"] is not None:
        check_positive("time_budget", o["time_budget"])
    if problem.loss not in ("mse", "sse"):
        raise LiftnnError(f"alm needs a least-squares loss (mse or sse); got {problem.loss!r}")
    if not hasattr(problem.model, "activations") or not hasattr(problem.model, "sizes"):
        raise LiftnnError("alm trains MLPs (ln.MLP)")
    if len(problem.model.sizes) < 3:
        raise LiftnnError("alm needs at least one hidden layer (there are no states to lift)")
    return o


# ---------------------------------------------------------------------------------------------
# jitted pieces, cached per static configuration
# ---------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=64)
def _compiled(model, relu_mode, mode, c, m, mu_w, damping, max_inner, ls_factor, ls_sigma, max_ls,
              interp=True):
    out_act = get_activation(model.activations[-1])
    sqm = math.sqrt(m)

    def inner(params, Z, lam, beta, eps, tr, X, Y):
        acts = gnm.hidden_activations(model, relu_mode, tr)
        s2 = beta / m
        omega = [lj * sqm / beta for lj in lam]
        _, unravel = ravel_pytree(params)

        def phi(p, z):
            return gnm.merit(p, z, X, Y, omega, s2, mu_w, acts, out_act, c)

        def gnorm(gp, gz):  # the scaled ||grad Phi||_inf of the inner stopping test
            a = jnp.max(jnp.stack([jnp.max(jnp.abs(x)) for x in jax.tree_util.tree_leaves(gp)]))
            b = jnp.max(jnp.stack([jnp.max(jnp.abs(x)) for x in gz]))
            return jnp.maximum(a, m * b)

        # Evaluate-first loop: each pass measures (Phi, scaled ||grad Phi||_inf) at the current
        # point, stops there if it is below eps, else takes one damped GN step with an Armijo
        # backtracking line search.  gn is the value at the point where the last test was made.
        def cond(s):
            return (s[4] < max_inner) & (s[7] == 0)

        def body(s):
            p, z, f, gn, k, nlin, nls, status = s
            tt = gnm.terms(p, z, X, Y, acts, out_act, c)
            E = [h + o for h, o in zip(tt.H, omega)]
            f, gp, gz = gnm.merit_value_and_grad(p, z, X, tt, E, s2, mu_w, c)
            gn = gnorm(gp, gz)
            cd = gnm.condense(p, z, tt, E, s2, c)
            theta = ravel_pytree(p)[0]
            dth, it = linsolve.reduced_step(mode, p, z, X, tt, cd, c, theta, mu_w, damping)
            dp = unravel(dth)
            Jd = gnm.jh_matvec(p, z, X, tt, cd, c, dp)
            dZ, ci = gnm.back_substitute(p, z, X, tt, cd, E, s2, c, dp, Jd)
            slope = jnp.sum(cd.rh * ci) - jnp.sum(cd.Rsq) + mu_w * jnp.vdot(theta, dth)

            def at(tstep):
                pn = jax.tree_util.tree_map(lambda a, d: a + tstep * d, p, dp)
                zn = [a + tstep * d for a, d in zip(z, dZ)]
                return pn, zn

            def ls_cond(ls):
                tstep, fn, j = ls
                return ~(fn <= f + ls_sigma * tstep * slope) & (j < max_ls)

            def ls_body(ls):
                tstep, fn, j = ls
                if interp:  # minimiser of the quadratic through Phi(0), Phi'(0), Phi(t)
                    curv = fn - f - slope * tstep
                    tq = -slope * tstep * tstep / (2.0 * jnp.where(curv > 0, curv, 1.0))
                    tq = jnp.where((curv > 0) & jnp.isfinite(fn), tq, 0.1 * tstep)
                    tnew = jnp.where(j == 0, 1.0, jnp.clip(tq, 0.1 * tstep, ls_factor * tstep))
                else:
                    tnew = jnp.where(j == 0, 1.0, ls_factor * tstep)
                return tnew, phi(*at(tnew)), j + 1

            tstep, fn, j = jax.lax.while_loop(ls_cond, ls_body, (1.0, jnp.inf, 0))
            conv = gn <= eps
            ok = (fn <= f + ls_sigma * tstep * slope) & jnp.isfinite(fn) & (slope < 0) & ~conv
            pn, zn = at(tstep)
            pn = jax.tree_util.tree_map(lambda a, b: jnp.where(ok, a, b), pn, p)
            zn = [jnp.where(ok, a, b) for a, b in zip(zn, z)]
            status = jnp.where(conv, jnp.int32(3), jnp.where(ok, jnp.int32(0), jnp.int32(2)))
            return (pn, zn, jnp.where(ok, fn, f), gn, k + jnp.where(conv, 0, 1),
                    nlin + jnp.where(conv, 0, it), nls + jnp.where(conv, 0, j), status)

        s = (params, Z, jnp.inf, jnp.inf, jnp.int32(0), jnp.int32(0), jnp.int32(0), jnp.int32(0))
        p, z, f, gn, k, nlin, nls, status = jax.lax.while_loop(cond, body, s)
        # status: 0 -> max_inner reached (1), 3 -> converged (0), 2 -> line search failed
        status = jnp.where(status == 3, 0, jnp.where(status == 0, 1, status))
        # L_beta at the new point (for the restart test) and ||H||_inf
        tt = gnm.terms(p, z, X, Y, acts, out_act, c)
        lag = f - sum(jnp.sum(lj ** 2) for lj in lam) / (2.0 * beta)
        hinf = jnp.max(jnp.stack([jnp.max(jnp.abs(h)) for h in tt.H]))
        return p, z, k, nlin, nls, status, gn, lag, hinf, [h / sqm for h in tt.H]

    def evaluate(params, X, Y):
        """Simulated network (exact activations): objective and feasible states."""
        out = X
        for (W, b), name in zip(params, model.activations):
            out = get_activation(name).f(gnm._affine(out, W, b))
        mse = jnp.mean((out - Y) ** 2)
        loss = 0.5 * c * c * jnp.sum((out - Y) ** 2)
        if mu_w:
            loss = loss + 0.5 * mu_w * sum(jnp.sum(q ** 2) for q in jax.tree_util.tree_leaves(params))
        return loss, mse

    def start(params, X, tr):
        return gnm.simulate(params, X, gnm.hidden_activations(model, relu_mode, tr))

    vin = jax.jit(jax.vmap(inner, in_axes=(0, 0, 0, 0, 0, 0, None, None)),
                  compiler_options=FAST_COMPILE)
    vev = jax.jit(jax.vmap(evaluate, in_axes=(0, None, None)))
    vst = jax.jit(jax.vmap(start, in_axes=(0, None, 0)))
    return vin, vev, vst


def _stack(trees):
    """Stack K parameter pytrees along a new leading axis, on the host (one transfer per leaf,
    no per-shape XLA compilation of eager stack ops)."""
    return jax.tree_util.tree_map(lambda *xs: jnp.asarray(np.stack([np.asarray(x) for x in xs])),
                                  *trees)


def _where(mask, a, b):
    """Per-seed select on batched pytrees (mask shape (K,))."""
    return jax.tree_util.tree_map(
        lambda x, y: jnp.where(mask.reshape((-1,) + (1,) * (x.ndim - 1)), x, y), a, b)


@jax.jit
def _advance(params, Z, lam, p_new, z_new, hs, lam_coef, keep, restart, p0, z0, better, best):
    """One outer update for all seeds: accept the inner result where `keep`, lambda += coef * h,
    restart from z0 where `restart` (Evens), and record the best simulated iterate."""
    lam_new = [lj + lam_coef.reshape(-1, 1, 1) * hj for lj, hj in zip(lam, hs)]
    params = _where(keep, p_new, params)
    Z = _where(keep, z_new, Z)
    lam = [jnp.where(keep.reshape(-1, 1, 1), a, b) for a, b in zip(lam_new, lam)]
    params = _where(restart, p0, params)
    Z = _where(restart, z0, Z)
    return params, Z, lam, _where(better, p_new, best)


def fit(problem, params0, *, method="alm", **options):
    """Train one initialisation with the lifted ALM (see fit_many)."""
    return fit_many(problem, [params0], method=method, **options)[0]


def fit_many(problem, params0_list, *, method="alm", **options):
    """Train several initialisations in one vectorised call; one Result per initialisation."""
    o = _check_options(options, problem)
    model = problem.model
    X, Y = problem.X, problem.Y
    m, O = int(Y.shape[0]), int(Y.shape[1])
    c = residual_scale(problem.loss, m * O)
    mu_w = float(problem.weight_decay)
    P = int(ravel_pytree(params0_list[0])[0].shape[0])
    mode = linsolve.choose(o["linear_solver"], m, O, P)
    vin, vev, vst = _compiled(model, o["relu_mode"], mode, float(c), m, mu_w, float(o["damping"]),
                              int(o["max_inner"]), float(o["ls_factor"]), float(o["ls_sigma"]),
                              int(o["max_ls"]), o["line_search"] == "interp")
    K = len(params0_list)
    t_start = time.perf_counter()
    smooth = o["relu_mode"] != "gd" and "relu" in model.activations[:-1]
    tr = np.full((K,), float(o["t0"]) if smooth else 1.0)

    params = _stack([[(W, b) for W, b in p] for p in params0_list])
    Z = vst(params, X, jnp.asarray(tr))
    f0, mse0 = vev(params, X, Y)
    f0 = np.asarray(f0)
    if not np.all(np.isfinite(f0)):
        raise LiftnnError("the loss is not finite at the initial weights")
    lam = [jnp.asarray(np.zeros(z.shape)) for z in Z]
    if o["scheme"] == "evens":
        beta0 = np.full(K, o["beta0"]) if o["beta0"] is not None else o["beta0_factor"] * np.maximum(f0, 1e-12)
        beta = beta0.copy()
        eps = np.full(K, o["eps0"])
    else:
        b0 = o["beta0"] if o["beta0"] is not None else 10.0
        beta0 = np.full(K, b0)
        beta = beta0.copy()
        eps = 1.0 / beta
    u0 = (params, Z)
    best_params = params
    best_loss = f0.copy()
    best_mse = np.asarray(mse0).copy()
    prev_loss = f0.copy()
    h_prev = np.full(K, np.inf)
    h_first = np.full(K, np.nan)
    done = np.zeros(K, bool)
    status = np.array([R.MAX_ITER] * K, dtype=object)
    message = np.array([""] * K, dtype=object)
    n_outer = np.zeros(K, int)
    n_gn = np.zeros(K, int)
    n_lin = np.zeros(K, int)
    n_ls = np.zeros(K, int)
    ls_fail = np.zeros(K, int)
    stall = np.zeros(K, int)
    since_best = np.zeros(K, int)  # outer iterations improving neither the best loss nor ||h||
    moved = np.zeros(K, bool)  # the simulated loss has improved on the start at least once
    hist = [[{"iter": 0, "loss": float(f0[i]), "train_mse": float(mse0[i]), "h_inf": 0.0,
              "grad_norm": float("nan"), "beta": float(beta[i]), "gn_iters": 0, "lin_iters": 0,
              "step": float("nan"), "nfev": 1, "njev": 0, "nhev": 0,
              "time": time.perf_counter() - t_start}] for i in range(K)]
    interrupted = False
    progress = _progress(o["progress"], o["max_outer"])
    try:
        for k in range(1, int(o["max_outer"]) + 1):
            eps_run = np.where(done, np.inf, eps)
            p_new, z_new, k_in, nlin, nls, st, gn, lag, hinf, hs = vin(
                params, Z, lam, jnp.asarray(beta), jnp.asarray(eps_run), jnp.asarray(tr), X, Y)
            k_in, nlin, nls, st = (np.asarray(a) for a in (k_in, nlin, nls, st))
            gn, lag, hinf = np.asarray(gn), np.asarray(lag), np.asarray(hinf)
            active = ~done
            n_gn += np.where(active, k_in, 0)
            n_lin += np.where(active, nlin, 0)
            n_ls += np.where(active, nls, 0)
            n_outer += active
            loss_k, mse_k = (np.asarray(a) for a in vev(p_new, X, Y))
            finite = np.isfinite(loss_k) & np.isfinite(lag) & np.isfinite(hinf)
            # multipliers and penalty (per seed, frozen once done)
            if o["scheme"] == "evens":
                lam_coef = beta
                grow = ~(hinf <= o["gamma"] * h_prev)
                beta_new = np.where(grow, np.maximum(o["xi"] * beta, beta0 * (k + 1) ** o["alpha"]), beta)
                eps_new = np.maximum(o["eps_min"], 0.5 * eps)
            else:
                h_first = np.where(np.isnan(h_first), np.maximum(hinf, 1e-300), h_first)
                sig = np.minimum(h_first * math.log(2) ** 2 /
                                 (np.maximum(hinf, 1e-300) * k * math.log(k + 1) ** 2), 1.0)
                lam_coef = sig * beta
                beta_new = beta0 ** (k + 1)
                eps_new = 1.0 / beta_new
            keep = active & finite
            rs = keep & (lag > f0) if (o["restart"] and o["scheme"] == "evens") else np.zeros(K, bool)
            better = keep & (loss_k < best_loss)
            params, Z, lam, best_params = _advance(
                params, Z, lam, p_new, z_new, hs, jnp.asarray(lam_coef), jnp.asarray(keep),
                jnp.asarray(rs), u0[0], u0[1], jnp.asarray(better), best_params)
            beta = np.where(active & finite, beta_new, beta)
            eps = np.where(active & finite, eps_new, eps)
            h_prev_k = h_prev
            h_prev = np.where(active & finite, hinf, h_prev)
            if smooth:
                tr = np.where(active, np.maximum(tr * o["t_decay"], o["t_min"]), tr)
            # best simulated (feasible) network
            improved = active & finite & (loss_k < (1.0 - o["thesis_eps"]) * best_loss)
            moved = moved | improved  # the start is not a place to settle in: count only after
            settled = (active & finite & moved & ~improved & (loss_k <= o["near_best"] * best_loss)
                       & (hinf <= o["settle_h"]))
            stall = np.where(improved | ~settled, 0, stall + 1)
            # give_up counts outer iterations that improved neither the best loss nor feasibility
            h_down = hinf < h_prev_k
            since_best = np.where(improved | ~moved, 0, since_best + (active & ~h_down))
            best_loss = np.where(better, loss_k, best_loss)
            best_mse = np.where(better, mse_k, best_mse)
            now = time.perf_counter() - t_start
            for i in np.flatnonzero(active):
                hist[i].append({
                    "iter": int(n_outer[i]), "loss": float(loss_k[i]), "train_mse": float(mse_k[i]),
                    "h_inf": float(hinf[i]), "grad_norm": float(gn[i]), "beta": float(beta[i]),
                    "gn_iters": int(k_in[i]), "lin_iters": int(nlin[i]), "step": float("nan"),
                    "nfev": int(n_ls[i] + n_outer[i]), "njev": int(n_gn[i]), "nhev": 0, "time": now,
                    "inner_status": ["ok", "max_inner", "line_search_failed"][int(st[i])],
                })
            # stopping, per seed
            ls_fail = np.where(active & (st == 2), ls_fail + 1, np.where(active, 0, ls_fail))
            kkt = (gn <= o["eps_kkt"]) & (hinf <= o["eps_kkt"])
            thesis = (1.0 + o["thesis_eps"]) * loss_k > prev_loss
            for i in np.flatnonzero(active):
                if not finite[i]:
                    done[i], status[i] = True, R.DIVERGED
                    message[i] = "non-finite values in the inner solve; returned the best feasible iterate"
                elif o["stop"] in ("kkt", "auto") and kkt[i]:
                    done[i], status[i] = True, R.CONVERGED
                    message[i] = f"eps-KKT point (eps = {o['eps_kkt']:g})"
                elif o["stop"] == "thesis" and thesis[i] and k > 1:
                    done[i], status[i] = True, R.CONVERGED
                    message[i] = f"thesis rule (1 + {o['thesis_eps']:g}) C_k+1 > C_k"
                elif o["stop"] in ("stall", "auto") and stall[i] >= o["patience"]:
                    done[i], status[i] = True, R.CONVERGED
                    message[i] = (f"settled: no {o['thesis_eps']:g} relative improvement of the simulated "
                                  f"loss in {o['patience']} outer iterations")
                elif o["stop"] in ("stall", "auto") and since_best[i] >= o["give_up"]:
                    done[i], status[i] = True, R.STALLED
                    message[i] = (f"the best simulated loss did not improve by {o['thesis_eps']:g} "
                                  f"in {o['give_up']} outer iterations (the iterate moved away "
                                  f"from it); returned the best")
                elif ls_fail[i] >= 2:
                    done[i], status[i] = True, R.LINE_SEARCH_FAILED
                    message[i] = "the Gauss-Newton line search failed twice in a row"
            prev_loss = np.where(active & finite, loss_k, prev_loss)
            if o["callback"] is not None:
                o["callback"](k, best_params, best_loss)
            progress(k, int(done.sum()), K)
            if done.all():
                break
            if o["time_budget"] is not None and now > o["time_budget"]:
                for i in np.flatnonzero(~done):
                    status[i] = R.MAX_ITER
                    message[i] = f"time budget of {o['time_budget']:g} s reached"
                break
        else:
            for i in np.flatnonzero(~done):
                message[i] = f"max_outer = {o['max_outer']} outer iterations reached"
    except KeyboardInterrupt:
        interrupted = True
        for i in np.flatnonzero(~done):
            status[i] = R.INTERRUPTED
            message[i] = "interrupted; returned the best feasible iterate so far"
    finally:
        progress(None, None, None)
    results = []
    best_host = jax.device_get(best_params)  # one transfer; slicing and ravelling on the host
    for i in range(K):
        p = [(jnp.asarray(W[i]), None if b is None else jnp.asarray(b[i])) for W, b in best_host]
        theta = np.concatenate([np.ravel(a[i]) for a in jax.tree_util.tree_leaves(best_host)])
        results.append(R.Result(
            params=p, x=theta, fun=float(best_loss[i]), nit=int(n_gn[i]),
            outer_iterations=int(n_outer[i]), nfev=int(n_ls[i] + n_outer[i] + 1), njev=int(n_gn[i]),
            nhev=0, lin_iters=int(n_lin[i]), status=str(status[i]),
            success=str(status[i]) == R.CONVERGED, message=str(message[i]), history=hist[i],
            linear_solver=mode, scheme=o["scheme"], relu_mode=o["relu_mode"],
            time_s=time.perf_counter() - t_start, interrupted=interrupted,
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
