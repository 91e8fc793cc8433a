"""Levenberg-Marquardt (and Gauss-Newton) for networks as one compiled program over initialisations.

`fit_many(problem, params0_list, weight_decays=None, **options)` trains K initialisations of a
TrainingProblem with a least-squares loss ("mse", "sse") by the same algorithm as the Python
"lm" (liftnn.solvers.least_squares.make_lm driven by liftnn.solvers.driver.run: MATLAB trainlm's
mu rules, the same options, defaults, statuses and counters), but as one `jax.jit` of a
`jax.lax.while_loop` over iterations for each of the K lanes (stacked flat theta vectors):
`jax.vmap`ped (lanes="vmap", lock-step: the accelerators' default) or `jax.lax.map`ped
(lanes="map", each lane its own while_loop, a finished lane costs nothing: the CPU's default,
where vmap buys no parallelism).  Each lane keeps theta, r, J, the cost, grad, mu, its counters,
a status and fixed-size (max_iter + 1) history columns; the host builds the Results afterwards.

Per lane and iteration: r and J of the single-shooting residual r_e = c (f_theta(X) - Y)
(c = residual_scale; for an MLP J comes from backpropagation written out for all samples
at once, mlp_jacobian, and the dual Gram J J^T from a sum of Hadamard products, _mlp_gram;
for other models J from jax.jacfwd / jacrev), then trials d(mu) with the damped system solved
by Cholesky of the smaller one:

    lam = mu * mu_scale + mu_w            (mu_w: the lane's weight decay, treated analytically:
                                           the sqrt(mu_w) theta rows add mu_w I to J^T J and
                                           mu_w theta to the gradient g = J_e^T r_e + mu_w theta)
    primal (P <= N):  (J_e^T J_e + lam I) d = -g
    dual   (P >  N):  d = -J_e^T y - (mu_w / lam) theta,  (J_e J_e^T + lam I) y = r_e - (mu_w / lam) J_e theta

(the dual form is the primal one through (J^T J + lam I)^-1 J^T = J^T (J J^T + lam I)^-1 and the
Woodbury identity for the mu_w theta part).  A trial with a lower cost is accepted (mu <- max(mu
mu_dec, mu_min), new r and J); otherwise mu <- mu mu_inc and the next trial reuses J and J^T J
(an inner while_loop); mu > mu_max ends the lane "stalled".  A non-finite trial (or a failed
Cholesky, which gives NaN) is a failed trial; a non-finite J at an accepted point ends the lane
"diverged" at the last finite iterate, as the driver does.  Convergence tests after each accepted
step as in liftnn.solvers.driver: gtol (||g||_inf), ftol, xtol, then max_iter.

"gn" (fit_many(..., method="gn")): the Gauss-Newton direction from the same systems with lam =
mu_w + a jitter (eps * system size * max diag G, Cholesky's backward-error scale), then Armijo
backtracking from a = 1 (options mu, shrink, max_ls of liftnn.solvers.least_squares) and gn's
stall rule (stall_iters iterations in a row lowering the cost by less than 1e-12 of itself), with
the Python gn's statuses and messages (the stall message without the rank, which no SVD here
gives; no min_rank field, no history "rank").  Only when every lane has weight decay mu_w > 0:
J^T J + mu_w I is then positive definite and its solution is lstsq's to rounding; without decay
J^T J of a network is typically singular, lstsq's minimum-norm step and any jittered Cholesky
step part ways (measured: different statuses on 1-5-1 tanh), so gn without decay, and gn with
line_search="wolfe", keep the Python path.

Differences from the Python lm, all at rounding level or in degenerate cases: the Python lm
solves through a thin SVD (dropping singular values below rcond * s_max), here Cholesky (no
truncation); so the option rcond, and the options no compiled loop can honour (callback,
time_budget, patience, devices > 1) and validation data (problem.X_val) send the call to the
per-seed Python path (network.fit), which also serves non-least-squares losses.  A failed trial at
mu = 0 (only possible with mu_min = 0) restarts mu at the smallest normal float instead of
staying at 0.

Results as network.fit's: params (= params_last, the final iterate: lm's cost only decreases),
x, x_last, fun = cost = 1/2 ||r||^2, fun_last, residual (with the decay rows), jac, grad,
optimality, nit, nfev, njev, nhev = 0, status, success, message, mu (final damping), history
(iter, loss, grad_norm, step = ||d||_2, nfev, njev, nhev, mu, trials, time) plus compile_s
(lower + compile of the program in this call; 0.0 when an earlier call with the same shapes
compiled it, compile_cached True; after compile_ahead, the seconds this call waited for the
background compilation), loop_s (the compiled program's run, all lanes), lanes and
solver = "lm_compiled".  History "time" is an estimate, not a per-iteration measurement: loop_s
spread evenly over the outer steps (vmap: step k is iteration k of every running lane; map:
the lanes' steps one after another), after compile_s.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import math
import threading
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from liftnn import padding, xla_options
from liftnn.blas_threads import limit_blas
from liftnn.errors import LiftnnError
from liftnn.models.activations import get_activation
from liftnn.models.losses import is_least_squares, residual_scale
from liftnn.models.mlp import MLP
from liftnn.problem import host_unflat, layout
from liftnn.solvers import result as R
from liftnn.solvers.driver import common_options, network_theta0
from liftnn.solvers.least_squares import GN_DEFAULTS, GN_NEGLIGIBLE, LM_DEFAULTS, validate
from liftnn.solvers.linesearch import _rounding_note
from liftnn.solvers.result import Result

#: network lm's default max_iter (liftnn.solvers.api)
MAX_ITER = 500

# lane status codes (host side: _message)
_RUNNING, _GTOL, _FTOL, _XTOL, _MAXIT, _STALLED, _DIVERGED, _GTOL0, _MAXIT0 = range(9)
_BAD_R, _BAD_J, _BAD_COST = 9, 10, 11
_STALL_DIR, _LS_FAILED, _STALL_IDLE = 12, 13, 14  # gn's own stops
_STATUS = {_GTOL: R.CONVERGED, _FTOL: R.CONVERGED, _XTOL: R.CONVERGED, _GTOL0: R.CONVERGED,
           _MAXIT: R.MAX_ITER, _MAXIT0: R.MAX_ITER, _STALLED: R.STALLED, _DIVERGED: R.DIVERGED,
           _STALL_DIR: R.STALLED, _LS_FAILED: R.LINE_SEARCH_FAILED, _STALL_IDLE: R.STALLED}
#: gn: the Cholesky jitter, this * (system size) * max diag(G) (Cholesky's backward-error scale)
GN_JITTER = np.finfo(np.float64).eps
#: the scalar options passed to the program as traced values (one program for all their values)
_SCALARS = {"lm": ("mu", "mu_dec", "mu_inc", "mu_max", "mu_min", "mu_scale", "gtol", "ftol",
                   "xtol"),
            "gn": ("mu", "shrink", "max_ls", "stall_iters", "jitter", "gtol", "ftol", "xtol")}


def fallback_reason(problem, options: dict, devices=None, method: str = "lm",
                    weight_decays=None) -> str | None:
    """Why fit_many must use the per-seed Python path (None: the compiled loop serves it).
    weight_decays: the lanes' mu_w (default problem.weight_decay)."""
    if problem.X_val is not None:
        return "validation data (val_loss monitoring and val_patience)"
    if callable(problem.loss) or not is_least_squares(problem.loss):
        return f"loss {problem.loss!r} is not least squares"
    if devices is not None and devices != 1:
        return "devices > 1"
    for name in ("callback", "time_budget", "patience", "rcond"):
        if options.get(name) is not None:
            return f"option {name}"
    if method == "gn" and options.get("line_search", "armijo") != "armijo":
        return "line_search other than armijo"
    mu_w = problem.weight_decay if weight_decays is None else weight_decays
    if method == "gn" and not np.all(np.asarray(mu_w) > 0):
        return ("gn without weight decay (J^T J singular: the Python path's minimum-norm "
                "least-squares step)")
    return None


def fit_many(problem, params0_list, *, method: str = "lm", weight_decays=None, devices=None,
             lanes=None, pad_to=None, _ahead: bool = False, **options) -> list:
    """Train K initialisations with Levenberg-Marquardt (method="lm") or Gauss-Newton ("gn");
    one Result per initialisation.

    problem: a liftnn.problem.TrainingProblem; params0_list: K initial params; weight_decays:
    K numbers >= 0, lane k's mu_w in place of problem.weight_decay (liftnn.bayes trains each
    start with its own); lanes: "vmap" (the K lanes in lock-step, one vmapped loop: the
    accelerators' choice), "map" (one compiled loop over the lanes, each lane its own
    while_loop, so a finished lane costs nothing more: the CPU's choice, where batching buys no
    parallelism) or None (by jax.default_backend()); pad_to: run in that many lanes (>= K), the
    extra ones idle from the start, so that calls with fewer initialisations reuse one compiled
    program (liftnn.bayes's later cycles); options: the method's
    (liftnn.solvers.api.method_options).  Runs the compiled loop (module docstring) unless
    fallback_reason says otherwise, in which case each initialisation goes through
    network.fit(method=method) with its own weight decay.  A KeyboardInterrupt during the
    compiled loop is not turned into "interrupted" Results (XLA cannot stop mid-program): it
    propagates once the loop returns.
    """
    K = len(params0_list)
    if K == 0:
        raise LiftnnError("params0_list is empty")
    try:
        mu_w = np.broadcast_to(np.asarray(problem.weight_decay if weight_decays is None
                                          else weight_decays, dtype=np.float64), (K,)).copy()
    except (TypeError, ValueError):
        mu_w = np.array([np.nan])
    if not np.all(np.isfinite(mu_w) & (mu_w >= 0)):
        raise LiftnnError(f"weight_decays must be K = {K} numbers >= 0; got {weight_decays!r}")
    if method not in _SCALARS:
        raise LiftnnError(f"lm_compiled serves 'lm' and 'gn', not {method!r}")
    if fallback_reason(problem, options, devices, method, mu_w) is not None:
        if _ahead:  # compile_ahead: no compiled loop to prepare
            return []
        from liftnn.solvers import network

        out = []
        for mu, p in zip(mu_w, params0_list):
            pr = problem if mu == problem.weight_decay else dataclasses.replace(
                problem, weight_decay=float(mu))
            out.append(network.fit(pr, p, method=method, devices=devices, **options))
        return out
    if lanes is None:
        lanes = "map" if jax.default_backend() == "cpu" else "vmap"
    if lanes not in ("vmap", "map"):
        raise LiftnnError(f"lanes must be 'vmap', 'map' or None; got {lanes!r}")
    n_idle = 0 if pad_to is None else int(pad_to) - K
    if n_idle < 0:
        raise LiftnnError(f"pad_to = {pad_to} is fewer lanes than the K = {K} initialisations")
    params0_list = list(params0_list) + [params0_list[0]] * n_idle
    mu_w = np.concatenate([mu_w, np.full(n_idle, mu_w[0])])
    idle = np.arange(K + n_idle) >= K
    return _fit_compiled(method, problem, params0_list, mu_w, idle, options, lanes,
                         run=not _ahead)[:K]


def compile_ahead(problem, params0_list, **kwargs) -> None:
    """Prepare the executable that fit_many(problem, params0_list, **kwargs) will run (the same
    shapes and static options; the weights and weight decays may differ): trace and lower it
    here, and leave XLA's compilation, which runs without the GIL, to a background thread, so
    that on two or more cores it overlaps what the caller does next (liftnn.bayes: the refining
    cycles' lm compiles while the lifted method trains the first cycle).  The later fit_many
    waits for it if it has not finished.  Nothing happens where fit_many would not run the
    compiled loop (fallback_reason)."""
    fit_many(problem, params0_list, _ahead=True, **kwargs)


# ---------------------------------------------------------------------------------------------
# the compiled program
# ---------------------------------------------------------------------------------------------


class _Lane(NamedTuple):
    theta: jax.Array  # (P,)
    r: jax.Array  # (N,) data residuals
    J: jax.Array  # (N, P)
    cost: jax.Array
    g: jax.Array  # (P,)
    mu: jax.Array
    nit: jax.Array
    nfev: jax.Array
    njev: jax.Array
    steps: jax.Array  # outer steps this lane took part in
    status: jax.Array
    idle: jax.Array  # gn: iterations in a row with a negligible decrease
    aux: jax.Array  # gn: the last line search's spread max |f(x + a d) - f(x)|
    h_loss: jax.Array  # (H,)
    h_gnorm: jax.Array
    h_step: jax.Array
    h_mu: jax.Array
    h_trials: jax.Array


def _mlp_backprop(model, unflatten):
    """theta, X, k -> (Zs, deltas) of an MLP for all samples at once: with A_j = Z_{j-1} W_j^T +
    b_j and Z_j = sigma_j(A_j), Zs[j] = Z_{j-1} (n, in_j) and deltas[j][i, o, p] =
    d f(x_i)_o / d A_j[i, p] (n, k, out_j) (delta_L = diag sigma_L'(A_L),
    delta_j = (delta_{j+1} W_{j+1}) * sigma_j'(A_j)).  sigma' is autodiff's (jax.jvp of sigma,
    as jax.jacfwd of the residual would give: 1/2 for relu at exactly 0)."""
    acts = [get_activation(a).f for a in model.activations]

    def backprop(theta, X, k):
        params = unflatten(theta)
        Z, Zs, dfs = X, [], []
        for (W, b), f in zip(params, acts):
            A = Z @ W.T + (b if b is not None else 0.0)
            Zs.append(Z)
            Z, dA = jax.jvp(f, (A,), (jnp.ones_like(A),))
            dfs.append(dA)
        delta = dfs[-1][:, :, None] * jnp.eye(k, dtype=X.dtype)[None]  # (n, k, k): [i, o, p]
        deltas = [delta]
        for j in range(len(params) - 1, 0, -1):
            delta = (delta @ params[j][0]) * dfs[j - 1][:, None, :]
            deltas.insert(0, delta)
        return params, Zs, deltas

    return backprop


def mlp_jacobian(model, unflatten, c: float):
    """J = d r / d theta of an MLP's residual c (f_theta(X) - Y).reshape(-1) by backpropagation
    written out for all samples at once (_mlp_backprop): the columns of W_j are
    delta_j[i, o, p] Z_{j-1}[i, q] and those of b_j delta_j[i, o, p], in problem.flatten's order
    (W_1, b_1, W_2, ...).  Compiles in a fraction of the time of a vmapped per-sample
    jax.jacrev and runs faster."""
    backprop = _mlp_backprop(model, unflatten)

    def jac(theta, X, Y):
        n, k = Y.shape
        params, Zs, deltas = backprop(theta, X, k)
        blocks = []
        for (_, b), Z, delta in zip(params, Zs, deltas):
            blocks.append((delta[:, :, :, None] * Z[:, None, None, :]).reshape(n * k, -1))
            if b is not None:
                blocks.append(delta.reshape(n * k, -1))
        return c * jnp.concatenate(blocks, axis=1)

    return jac


def _mlp_gram(model, unflatten, c: float):
    """J J^T (N x N, N = n k) of an MLP without forming it from J: J's block of layer j is a
    row-wise Kronecker product (rows delta_j[i, o, :] (x) [Z_{j-1}[i, :], 1]), so
    J J^T = c^2 sum_j (D_j D_j^T) * (Z_{j-1} Z_{j-1}^T + 1) (Hadamard product; the 1 for the
    bias columns; each sample's Z row repeated for its k outputs): N^2 (out_j + in_j) per layer
    instead of N^2 out_j in_j."""
    backprop = _mlp_backprop(model, unflatten)

    def gram(theta, X, Y):
        n, k = Y.shape
        params, Zs, deltas = backprop(theta, X, k)
        G = jnp.zeros((n * k, n * k), X.dtype)
        for (_, b), Z, delta in zip(params, Zs, deltas):
            D = delta.reshape(n * k, -1)
            ZZ = Z @ Z.T + (1.0 if b is not None else 0.0)
            if k > 1:
                ZZ = jnp.repeat(jnp.repeat(ZZ, k, axis=0), k, axis=1)
            G = G + (D @ D.T) * ZZ
        return (c * c) * G

    return gram


def _residual_fns(model, unflatten, c: float, P: int, N: int, per_sample: bool):
    def resid(theta, X, Y):
        return c * (model.apply(unflatten(theta), X) - Y).reshape(-1)

    if per_sample:  # an MLP: backpropagation for every sample at once
        jac, gram = mlp_jacobian(model, unflatten, c), _mlp_gram(model, unflatten, c)
    else:
        def jac(theta, X, Y):
            return (jax.jacfwd if P <= N else jax.jacrev)(resid)(theta, X, Y)
        gram = None
    return resid, jac, gram


def _build(method: str, model, unflatten, N: int, P: int, max_iter: int,
           per_sample: bool, lanes: str):
    """The jitted solver of `method` ("lm" or "gn"): (theta0s (K, P), mu_w (K,), idle (K,), X,
    Y, scalars, sc (N,)) -> _Lane (K, ...); sc: the residual scale c per residual row, times
    the row weight (0 for the padded rows of liftnn.padding); N the (padded) number of residual
    rows; lanes "vmap" (lock-step) or "map" (one lane after another, each with its own
    while_loop)."""
    resid1, jac1, gram1 = _residual_fns(model, unflatten, 1.0, P, N, per_sample)
    primal = P <= N
    H = max_iter + 1
    f64 = jnp.float64

    def lane(theta0, mu_w, idle, X, Y, s, sc):
        def resid(theta, X, Y):
            return sc * resid1(theta, X, Y)

        def jac(theta, X, Y):
            return sc[:, None] * jac1(theta, X, Y)

        gram = None if gram1 is None else (
            lambda theta, X, Y: (sc[:, None] * sc[None, :]) * gram1(theta, X, Y))

        def cost_of(theta, r):
            return 0.5 * (r @ r) + 0.5 * mu_w * (theta @ theta)

        def evaluate(theta):
            r, J = resid(theta, X, Y), jac(theta, X, Y)
            return r, J, cost_of(theta, r), J.T @ r + mu_w * theta

        def trial_cost(theta):
            r = resid(theta, X, Y)
            ok = jnp.all(jnp.isfinite(r)) & jnp.all(jnp.isfinite(theta))
            cst = cost_of(theta, r)
            return jnp.where(ok & ~jnp.isnan(cst), cst, jnp.nan)

        r0, J0, c0, g0 = evaluate(theta0)
        gmax0 = jnp.max(jnp.abs(g0))
        status0 = jnp.select(
            [idle, ~jnp.all(jnp.isfinite(r0)), ~jnp.all(jnp.isfinite(J0)), ~jnp.isfinite(c0),
             gmax0 <= s["gtol"], jnp.bool_(max_iter == 0)],
            [_MAXIT0, _BAD_R, _BAD_J, _BAD_COST, _GTOL0, _MAXIT0], _RUNNING)  # idle: pad_to
        zeros = jnp.zeros(H, f64)
        st = _Lane(theta0, r0, J0, c0, g0, jnp.asarray(s["mu"] if method == "lm" else 0.0, f64),
                   jnp.int32(0), jnp.int32(0), jnp.int32(1), jnp.int32(0),
                   status0.astype(jnp.int32), jnp.int32(0), jnp.asarray(0.0, f64),
                   zeros.at[0].set(c0), zeros.at[0].set(gmax0), zeros, zeros,
                   jnp.zeros(H, jnp.int32))

        def solver(st: _Lane):
            """G (J^T J or J J^T) and direction(lam): the solution of (J^T J + lam I) d = -g
            with lam the damping (lm) or jitter (gn) plus mu_w (module docstring)."""
            theta, r, J, g = st.theta, st.r, st.J, st.g
            if primal:
                G = J.T @ J
                Jth = None
            else:
                G = J @ J.T if gram is None else gram(theta, X, Y)
                Jth = J @ theta
            eye = jnp.eye(G.shape[0], dtype=f64)

            def direction(lam):
                lam = lam + mu_w
                L = jnp.linalg.cholesky(G + lam * eye)
                if primal:
                    return -jax.scipy.linalg.cho_solve((L, True), g)
                a = mu_w / lam
                y = jax.scipy.linalg.cho_solve((L, True), r - a * Jth)
                return -(J.T @ y) - a * theta

            return G, direction

        def accept(st: _Lane, ok, x_new, d, step_len, trials, extra):
            """The new iterate at x_new where ok (and finite), the counters, the history and
            the driver's stopping tests; extra: [(condition, code)] tested first (the method's
            own stops)."""
            theta, r, J, g = st.theta, st.r, st.J, st.g
            r1, J1, c1, g1 = evaluate(jnp.where(ok, x_new, theta))
            finite = (jnp.isfinite(c1) & jnp.all(jnp.isfinite(g1)) & jnp.all(jnp.isfinite(J1)))
            take = ok & finite
            nit = st.nit + take.astype(jnp.int32)
            gmax = jnp.max(jnp.abs(g1))
            dx = jnp.linalg.norm(x_new - theta)
            conds = ([cd for cd, _ in extra] + [ok & ~finite]
                     + [gmax <= s["gtol"],
                        (s["ftol"] > 0) & (st.cost - c1 <= s["ftol"] * jnp.abs(st.cost)),
                        (s["xtol"] > 0) & (dx <= s["xtol"] * (s["xtol"] + jnp.linalg.norm(x_new))),
                        nit >= max_iter])
            codes = [code for _, code in extra] + [_DIVERGED, _GTOL, _FTOL, _XTOL, _MAXIT]
            status = jnp.select(conds, codes, _RUNNING).astype(jnp.int32)

            def keep(new, old):
                return jnp.where(take, new, old)

            return st._replace(
                theta=keep(x_new, theta), r=keep(r1, r), J=keep(J1, J), cost=keep(c1, st.cost),
                g=keep(g1, g), nit=nit, nfev=st.nfev + trials,
                njev=st.njev + ok.astype(jnp.int32), steps=st.steps + 1, status=status,
                h_loss=st.h_loss.at[nit].set(keep(c1, st.h_loss[nit])),
                h_gnorm=st.h_gnorm.at[nit].set(keep(gmax, st.h_gnorm[nit])),
                h_step=st.h_step.at[nit].set(keep(step_len, st.h_step[nit])),
                h_mu=st.h_mu.at[nit].set(keep(st.mu, st.h_mu[nit])),
                h_trials=st.h_trials.at[nit].set(jnp.where(take, trials, st.h_trials[nit])))

        def outer_lm(st: _Lane) -> _Lane:
            theta = st.theta
            _, direction = solver(st)

            def trial(ts):
                mu, trials, _, _, _, _ = ts
                d = direction(mu * s["mu_scale"])
                x_new = theta + d
                c_new = trial_cost(x_new)
                ok = c_new < st.cost  # NaN compares False: a failed trial
                mu_next = jnp.where(ok, jnp.maximum(mu * s["mu_dec"], s["mu_min"]),
                                    jnp.maximum(mu * s["mu_inc"], np.finfo(np.float64).tiny))
                stalled = ~ok & (mu_next > s["mu_max"] * (1.0 + 1e-9))
                return mu_next, trials + 1, ok, stalled, d, x_new

            # a lane that is done (masked under vmap) skips the trials
            ts0 = (st.mu, jnp.int32(0), jnp.bool_(False), st.status != _RUNNING,
                   jnp.zeros_like(theta), theta)
            mu, trials, ok, stalled, d, x_new = jax.lax.while_loop(
                lambda ts: ~(ts[2] | ts[3]), trial, ts0)
            return accept(st._replace(mu=mu), ok, x_new, d, jnp.linalg.norm(d), trials,
                          [(stalled, _STALLED)])

        def outer_gn(st: _Lane) -> _Lane:
            theta, g, f0 = st.theta, st.g, st.cost
            G, direction = solver(st)
            d = direction(s["jitter"] * G.shape[0] * jnp.max(jnp.diag(G)))
            slope = g @ d
            descent = jnp.all(jnp.isfinite(d)) & (slope < 0) & (st.status == _RUNNING)

            def trial(ls):  # Armijo backtracking (liftnn.solvers.linesearch.armijo)
                a, k, _, spread = ls
                fa = trial_cost(theta + a * d)
                spread = jnp.where(jnp.isnan(fa), jnp.inf, jnp.maximum(spread, jnp.abs(fa - f0)))
                found = (fa <= f0 + s["mu"] * a * slope) & (fa < f0)
                return jnp.where(found, a, a * s["shrink"]), k + 1, found, spread

            a, k, found, spread = jax.lax.while_loop(
                lambda ls: descent & ~ls[2] & (ls[1] < s["max_ls"]), trial,
                (jnp.asarray(1.0, f64), jnp.int32(0), jnp.bool_(False), jnp.asarray(0.0, f64)))
            x_new = theta + a * d
            ok = descent & found
            new = accept(st._replace(aux=spread), ok, x_new, d, a, k, [])
            negligible = ok & (f0 - new.cost <= GN_NEGLIGIBLE * jnp.abs(f0))
            idle = jnp.where(negligible, st.idle + 1, 0)
            stall = ok & (new.nit > st.nit) & (idle >= s["stall_iters"])
            status = jnp.select([~descent, descent & ~found, new.status == _DIVERGED, stall],
                                [_STALL_DIR, _LS_FAILED, _DIVERGED, _STALL_IDLE], new.status)
            return new._replace(idle=idle, status=status.astype(jnp.int32))

        outer = outer_lm if method == "lm" else outer_gn
        return jax.lax.while_loop(lambda st: st.status == _RUNNING, outer, st)

    if lanes == "vmap":
        return xla_options.jit(jax.vmap(lane, in_axes=(0, 0, 0, None, None, None, None)))
    return xla_options.jit(lambda th0, mw, idle, X, Y, s, sc: jax.lax.map(
        lambda a: lane(a[0], a[1], a[2], X, Y, s, sc), (th0, mw, idle)))


#: compiled executables by (model, loss scale, shapes, max_iter): later calls with the same
#: shapes (e.g. liftnn.bayes's cycles) reuse them
_COMPILED: dict = {}
_COMPILING = threading.Lock()


def _compiled(method, problem, K, N, P, max_iter, args, lanes, ahead: bool = False):
    """(the executable for args, seconds spent compiling or waiting for it here, whether it came
    from the cache) (N: the padded number of residual rows; the residual scale and the row
    weights are arguments, so data sets of one padded size share it).  ahead=True (compile_ahead)
    lowers here and leaves XLA's compilation to a background thread, whose future the cache
    holds until a later call collects it; it returns (None, 0.0, False)."""
    model = problem.model
    per_sample = isinstance(model, MLP)  # J by backpropagation (mlp_jacobian)
    try:
        key = (method, model, K, N, P, tuple(np.shape(args[3])), max_iter, per_sample, lanes)
        hash(key)
    except TypeError:
        key = None
    t0 = time.perf_counter()
    with _COMPILING:  # one compilation per key when threads ask at once (liftnn.bayes's starts)
        entry = _COMPILED.get(key) if key is not None else None
        found = entry is not None
        if not found:
            lowered = _build(method, model, problem.unflatten, N, P, max_iter, per_sample,
                             lanes).lower(*args)
            entry = _compile_pool().submit(lowered.compile) if ahead else lowered.compile()
            if key is not None:
                if len(_COMPILED) >= 16:
                    _COMPILED.pop(next(iter(_COMPILED)))
                _COMPILED[key] = entry
    if ahead:
        return None, 0.0, False
    if isinstance(entry, concurrent.futures.Future):  # compiled ahead: wait for it
        try:
            exe = entry.result()
        except Exception:  # noqa: BLE001 - the background compilation failed: compile here
            with _COMPILING:
                if _COMPILED.get(key) is entry:
                    del _COMPILED[key]
            return _compiled(method, problem, K, N, P, max_iter, args, lanes)
        with _COMPILING:
            if key is not None and _COMPILED.get(key) is entry:
                _COMPILED[key] = exe
        return exe, time.perf_counter() - t0, False
    return entry, (0.0 if found else time.perf_counter() - t0), found


_POOL: list = []


def _compile_pool() -> concurrent.futures.ThreadPoolExecutor:
    """One background thread for compile_ahead's XLA compilations (created on first use)."""
    if not _POOL:
        _POOL.append(concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="liftnn-lm"))
    return _POOL[0]


def _fit_compiled(method, problem, params0_list, mu_w: np.ndarray, idle: np.ndarray,
                  options: dict, lanes: str, run: bool = True) -> list:
    o = common_options(method, options, LM_DEFAULTS if method == "lm" else GN_DEFAULTS, MAX_ITER)
    N = int(np.prod(problem.Y.shape))
    c = residual_scale(problem.loss, N)
    if method == "lm" and "mu_scale" not in options:
        o["mu_scale"] = c**2
    validate(method, o)
    o["jitter"] = GN_JITTER
    theta0, layout = _stack_flat(problem, params0_list)
    K, P = theta0.shape
    max_iter = int(o["max_iter"])
    # host arrays (not jnp.asarray, which compiles a copy per shape) into the jitted loop
    scalars = {k: np.asarray(o[k], np.int32 if k in ("max_ls", "stall_iters") else np.float64)
               for k in _SCALARS[method]}
    m = int(problem.Y.shape[0])
    size = padding.size_for(m)  # zero rows of weight 0 up to the bucket (liftnn.padding)
    rows = np.repeat(padding.row_weights(m, size), problem.Y.shape[1])
    X, Y = ((problem.X, problem.Y) if size == m else
            (padding.pad_rows(problem.X, size), padding.pad_rows(problem.Y, size)))
    args = (np.asarray(theta0, np.float64), np.asarray(mu_w, np.float64), np.asarray(idle, bool),
            X, Y, scalars, c * rows)
    with limit_blas():
        if not run:  # compile_ahead: lowered here, compiled in the background, not trained
            _compiled(method, problem, K, rows.size, P, max_iter, args, lanes, ahead=True)
            return []
        exe, compile_s, cached = _compiled(method, problem, K, rows.size, P, max_iter, args,
                                           lanes)
        t0 = time.perf_counter()
        out = jax.block_until_ready(exe(*args))
        loop_s = time.perf_counter() - t0
    out = _Lane(*(np.asarray(a) for a in out))
    for k in range(K):
        _check_start(int(out.status[k]), out, k)
    # history "time": the loop time spread evenly over the outer steps (module docstring)
    steps = out.steps.astype(float)
    if lanes == "vmap":
        start, total = np.zeros(K), max(steps.max(), 1.0)
    else:
        start, total = np.concatenate([[0.0], np.cumsum(steps)[:-1]]), max(steps.sum(), 1.0)
    clock = [(compile_s + loop_s * start[k] / total, loop_s / total) for k in range(K)]
    return [_result(method, layout, o, out, k, float(mu_w[k]), compile_s, loop_s, clock[k],
                    cached, lanes, N) for k in range(K)]


def _stack_flat(problem, params0_list):
    """(K, P) float64 of the flattened params0 (problem.flatten's order, tree_leaves) and the
    layout (treedef, shapes) to unflatten with; on the host, so no small XLA programs are
    compiled for it.  Anything odd goes through network_theta0 (its LiftnnErrors)."""
    n = getattr(problem.model, "n_params", None)
    treedef, shapes = layout(params0_list[0])
    rows = []
    for p in params0_list:
        leaves, td = jax.tree_util.tree_flatten(p)
        try:
            row = np.concatenate([np.asarray(leaf, dtype=np.float64).ravel() for leaf in leaves])
            ok = (td == treedef and [tuple(np.shape(leaf)) for leaf in leaves] == shapes
                  and (n is None or row.size == n) and bool(np.all(np.isfinite(row))))
        except (TypeError, ValueError):
            ok = False
        rows.append(row if ok else network_theta0(problem, p))
    return np.stack(rows), (treedef, shapes)


def _check_start(code: int, out: _Lane, k: int) -> None:
    """The driver's LiftnnErrors for a start where r, J or the cost is not finite."""
    if code == _BAD_R:
        bad = int(np.flatnonzero(~np.isfinite(out.r[k]))[0])
        raise LiftnnError(f"the residuals are not finite at x0 (first at index {bad}: "
                          f"{out.r[k][bad]!r})")
    if code == _BAD_J:
        raise LiftnnError("the Jacobian of the residuals is not finite at x0")
    if code == _BAD_COST:
        raise LiftnnError(f"the cost 1/2 ||r||^2 overflows float64 at x0 (residuals up to "
                          f"{float(np.max(np.abs(out.r[k]))):.3g}); rescale the problem (for "
                          f"network training: standardise the targets)")


def _message(code: int, o: dict, nit: int, mu: float, loss: np.ndarray, gmax: float,
             out: _Lane, k: int) -> str:
    if code == _STALL_DIR:
        return ("the Gauss-Newton direction is not a descent direction: J^T r is at rounding "
                "level")
    if code == _LS_FAILED:
        last = o["shrink"] ** (o["max_ls"] - 1)
        return (f"line search failed: no sufficient decrease (mu = {o['mu']:g}) after "
                f"{int(o['max_ls'])} backtracking steps (last step {last:.3g})"
                f"{_rounding_note(float(out.cost[k]), float(out.aux[k]))}; returned the last "
                f"good iterate")
    if code == _STALL_IDLE:
        return (f"no progress: the cost fell by less than {GN_NEGLIGIBLE:g} of itself in "
                f"{int(out.idle[k])} iterations in a row (last step length "
                f"{float(out.h_step[k][nit]):.3g}); the Gauss-Newton direction is poor here "
                f"(J^T J nearly singular): lm's damping is the remedy")
    if code == _GTOL0:
        return f"||grad||_inf = {gmax:.3g} <= gtol = {o['gtol']:g} at x0"
    if code == _MAXIT0:
        return "max_iter = 0"
    if code == _GTOL:
        return f"||grad||_inf = {gmax:.3g} <= gtol = {o['gtol']:g}"
    if code == _FTOL:
        prev, f = loss[nit - 1], loss[nit]
        return (f"relative decrease of the loss {(prev - f) / abs(prev):.3g} <= ftol = "
                f"{o['ftol']:g}")
    if code == _XTOL:
        return f"relative step <= xtol = {o['xtol']:g}"
    if code == _MAXIT:
        return f"max_iter = {o['max_iter']} iterations reached"
    if code == _STALLED:
        return (f"mu = {mu:g} exceeded mu_max = {o['mu_max']:g} (trainlm's stopping rule): no "
                f"step reduced the cost")
    return (f"the loss or its derivatives became non-finite in iteration {nit + 1}; returned the "
            f"last finite iterate")


def _result(method, layout, o, out: _Lane, k: int, mu_w: float, compile_s: float, loop_s: float,
            clock: tuple, cached: bool, lanes: str, N: int) -> Result:
    nit, code = int(out.nit[k]), int(out.status[k])
    theta, r, J, g = out.theta[k], out.r[k][:N], out.J[k][:N], out.g[k]  # N: the real rows
    cost, mu = float(out.cost[k]), float(out.mu[k])
    gmax = float(np.max(np.abs(g)))
    trials = out.h_trials[k][: nit + 1]
    nfev = np.cumsum(trials)
    history = [{"iter": 0, "loss": float(out.h_loss[k][0]), "grad_norm": float(out.h_gnorm[k][0]),
                "step": 0.0, "nfev": 0, "njev": 1, "nhev": 0, "time": clock[0]}]
    for i in range(1, nit + 1):
        h = {"iter": i, "loss": float(out.h_loss[k][i]), "grad_norm": float(out.h_gnorm[k][i]),
             "step": float(out.h_step[k][i]), "nfev": int(nfev[i]), "njev": i + 1, "nhev": 0}
        if method == "lm":
            h.update(mu=float(out.h_mu[k][i]), trials=int(trials[i]))
        h["time"] = clock[0] + clock[1] * i
        history.append(h)
    if mu_w:
        residual = np.concatenate([r, math.sqrt(mu_w) * theta])
        jac = np.vstack([J, math.sqrt(mu_w) * np.eye(theta.size)])
    else:
        residual, jac = r, J
    status = _STATUS[code]
    params = host_unflat(theta, *layout)
    extra = {"mu": mu} if method == "lm" else {}
    return Result(
        method=method, x=theta, x_last=theta, fun=cost, fun_last=cost, cost=cost,
        residual=residual, jac=jac, grad=g, optimality=gmax, nit=nit, nfev=int(out.nfev[k]),
        njev=int(out.njev[k]), nhev=0, status=status,
        success=status in (R.CONVERGED, R.STALLED),
        message=_message(code, o, nit, mu, out.h_loss[k], gmax, out, k), history=history,
        params=params, params_last=params, compile_s=compile_s, loop_s=loop_s,
        compile_cached=cached, lanes=lanes, solver="lm_compiled", **extra)
