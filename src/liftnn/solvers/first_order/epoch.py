"""One epoch of one run, vmapped over runs and looped in a jitted while_loop (the compiled part).

Every function here is traced inside `compiled`'s jit; the state of a run is a dict of arrays
(theta, the optax state, f, g, best, best_f, mon, pat_best, wait, vbest, vwait, status, nit, nfev,
njev, step)
and a stopped run is carried unchanged.  docs/solvers.md describes the epoch and its stopping
rules; the status codes below are mapped to the string statuses of liftnn.solvers.result when the
run is collected (loop.collect).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from liftnn import xla_options
from liftnn.solvers.first_order.objective import Objective

# status codes inside the compiled loop
RUNNING, CONV, MAXIT, STALL, DIV, LSF, VSTALL = 0, 1, 2, 3, 4, 5, 6
REC = ("valid", "loss", "grad_norm", "step", "nfev", "njev", "val")  # per-epoch record columns

_i32 = functools.partial(jnp.asarray, dtype=jnp.int32)


def make_tx(method: str, hp: dict) -> optax.GradientTransformation:
    """The optax transformation of `method`; hp values may be traced (no recompiles per lr)."""
    lr = hp["lr"]
    if method == "gd":
        return optax.sgd(lr)
    if method == "momentum":  # t_i = g_i + beta t_{i-1}, w -= lr t_i  ==  seed 004 with u = -t
        return optax.sgd(lr, momentum=hp["beta"])
    if method == "nesterov":
        return optax.sgd(lr, momentum=hp["beta"], nesterov=True)
    if method == "adam":
        return optax.adam(lr, b1=hp["b1"], b2=hp["b2"], eps=hp["eps"])
    if method == "rmsprop":
        return optax.rmsprop(lr, decay=hp["rho"], eps=hp["eps"])
    if method == "adadelta":
        return optax.adadelta(lr, rho=hp["rho"], eps=hp["eps"])
    if method == "rprop":
        return optax.rprop(lr, eta_minus=hp["eta_minus"], eta_plus=hp["eta_plus"],
                           min_step_size=hp["min_step"], max_step_size=hp["max_step"])
    raise AssertionError(method)  # pragma: no cover - validated before


def _select(pred, a, b):
    """a if pred else b, leaf by leaf (jnp.where: no branch, which compiles faster than cond)."""
    return jax.tree_util.tree_map(lambda x, y: jnp.where(pred, x, y), a, b)


def _gnorm(g):
    return jnp.max(jnp.abs(g)) if g.size else jnp.zeros((), g.dtype)


class Config(NamedTuple):
    """The static configuration one compiled loop is specialised for."""

    obj: Objective
    method: str
    armijo: bool
    batch_size: int | None
    has_val: bool


def _monitor(cfg: Config, theta, f, data):
    """The validation loss with validation data, else C (recorded as "val" either way)."""
    return cfg.obj.val(theta, data[2], data[3]) if cfg.has_val else f


# --- the three kinds of epoch: each returns (w1, opt1, f1, g1, step, dnfev, dnjev, ls_failed) --


def _armijo_step(cfg: Config, s, start, hp, data):
    """Backtracking on C(w - t g) <= C(w) - mu t ||g||^2, t = lr, lr/2, ... (jax while_loop).

    At start the blank state has g = 0, so the first trial point is w itself: C(w), no search.
    """
    f_obj = cfg.obj.f
    X, Y = data[0], data[1]
    w, f, g = s["theta"], s["f"], s["g"]
    gg = jnp.vdot(g, g)

    def ok(t, ft):
        return ft <= f - hp["mu"] * t * gg

    def cond(c):
        t, ft, k = c
        return ~start & ~ok(t, ft) & (k < hp["max_backtracks"])

    def body(c):
        t, _, k = c
        t = t * hp["shrink"]
        return t, f_obj(w - t * g, X, Y), k + 1

    t0 = hp["lr"] * jnp.ones((), w.dtype)
    t, ft, k = jax.lax.while_loop(cond, body, (t0, f_obj(w - t0 * g, X, Y), _i32(0)))
    w1 = w - t * g
    g1 = jax.grad(f_obj)(w1, X, Y)
    return w1, s["opt"], ft, g1, t, k + 1, 1, ~start & ~ok(t, ft)


def _minibatch_pass(cfg: Config, s, start, hp, data, key, e):
    """One epoch of minibatch steps on a fresh permutation (shared by all runs); C, grad."""
    obj, batch_size = cfg.obj, cfg.batch_size
    vg = jax.value_and_grad(obj.f)
    X, Y = data[0], data[1]
    m = X.shape[0]
    tx = make_tx(cfg.method, hp)
    nb, rem = divmod(m, batch_size)
    ekey = jax.random.fold_in(key, e)
    dkey = jax.random.fold_in(ekey, 1)  # dropout masks: per epoch and batch

    def step(carry, idx):
        w, opt = carry
        if obj.f_train is None:
            _, gb = vg(w, X[idx], Y[idx])
        else:
            gb = jax.grad(obj.f_train)(w, X[idx], Y[idx], jax.random.fold_in(dkey, idx[0]))
        upd, opt = tx.update(gb, opt, w)
        return (optax.apply_updates(w, upd), opt), None

    def epoch(_):
        perm = jax.random.permutation(ekey, m)
        carry = (s["theta"], s["opt"])
        carry, _ = jax.lax.scan(step, carry, perm[: nb * batch_size].reshape(nb, batch_size))
        if rem:
            carry, _ = step(carry, perm[nb * batch_size:])
        return carry

    w1, opt1 = jax.lax.cond(start, lambda _: (s["theta"], tx.init(s["theta"])), epoch, None)
    f1, g1 = vg(w1, X, Y)
    nsteps = nb + (1 if rem else 0)
    return w1, opt1, f1, g1, hp["lr"], nsteps + 1, nsteps + 1, jnp.bool_(False)


def _full_batch_step(cfg: Config, s, start, hp, data, key, e):
    """One optax step with the full-batch gradient at theta (known from the last evaluation)."""
    obj = cfg.obj
    tx = make_tx(cfg.method, hp)

    def step(_):
        g = s["g"]
        if obj.f_train is not None:  # dropout: the gradient of the masked network
            g = jax.grad(obj.f_train)(s["theta"], data[0], data[1], jax.random.fold_in(key, e))
        upd, opt1 = tx.update(g, s["opt"], s["theta"])
        return optax.apply_updates(s["theta"], upd), opt1

    w1, opt1 = _select(start, (s["theta"], tx.init(s["theta"])), step(None))
    f1, g1 = jax.value_and_grad(obj.f)(w1, data[0], data[1])
    return w1, opt1, f1, g1, hp["lr"], 1, 1, jnp.bool_(False)


# --- the epoch's bookkeeping and stopping rules ----------------------------------------------


def _initial_state(w1, opt1, f1, g1, mon1):
    """The state at the start point (the start pass of the loop)."""
    out = {"theta": w1, "opt": opt1, "f": f1, "g": g1, "best": w1, "best_f": f1,
           "mon": mon1, "pat_best": f1, "wait": _i32(0), "vbest": mon1, "vwait": _i32(0),
           "status": _i32(RUNNING),
           "nit": _i32(0), "nfev": _i32(1), "njev": _i32(1), "step": jnp.zeros_like(f1)}
    return out, jnp.zeros(len(REC), f1.dtype)


def _status(finite, ls_fail, gn1, improved, wait1, vwait1, nit1, ctrl):
    """The stopping rule, in order of precedence: diverged, line search failed, converged,
    stalled (patience on the training loss), stalled (val_patience on the validation loss),
    max_iter; else running."""
    return jnp.where(
        ~finite, DIV, jnp.where(
            ls_fail, LSF, jnp.where(
                gn1 <= ctrl["gtol"], CONV, jnp.where(
                    ctrl["use_patience"] & ~improved & (wait1 >= ctrl["patience"]),
                    STALL, jnp.where(
                        ctrl["use_val_patience"] & (vwait1 >= ctrl["val_patience"]),
                        VSTALL, jnp.where(nit1 >= ctrl["max_iter"], MAXIT, RUNNING))))))


def _advance(cfg: Config, s, w1, opt1, f1, g1, step, dnf, dnj, ls_fail, mon1, ctrl):
    """The state after one epoch and its record row (a stopped run is returned unchanged).

    The best iterate is the one with the lowest training objective, or with validation data
    (cfg.has_val) the one with the lowest validation loss.
    """
    gn1 = _gnorm(g1)  # NaN / inf when any entry is
    finite = jnp.isfinite(f1) & jnp.isfinite(gn1)
    active = s["status"] == RUNNING
    keep = active & finite & ~ls_fail  # the epoch's iterate is accepted
    improved = f1 < s["pat_best"] - ctrl["min_delta"]
    wait1 = jnp.where(improved, 0, s["wait"] + 1)
    v_improved = mon1 < s["vbest"]  # a new best validation loss (the returned iterate)
    vwait1 = jnp.where(mon1 < s["vbest"] - ctrl["min_delta"], 0, s["vwait"] + 1)
    nit1 = s["nit"] + 1
    status = _status(finite, ls_fail, gn1, improved, wait1, vwait1, nit1, ctrl)
    better = keep & (v_improved if cfg.has_val else f1 < s["best_f"])
    new = {"theta": w1, "opt": opt1, "f": f1, "g": g1, "mon": mon1,
           "pat_best": jnp.where(improved, f1, s["pat_best"]), "wait": wait1,
           "vbest": jnp.where(v_improved, mon1, s["vbest"]), "vwait": vwait1,
           "nit": nit1, "step": jnp.asarray(step, w1.dtype)}
    # a rejected epoch (diverged / line search failed) or a stopped run keeps its iterate; the
    # work of a rejected epoch is still counted
    out = {k: jax.tree_util.tree_map(lambda a, b: jnp.where(keep, a, b), v, s[k])
           for k, v in new.items()}
    out["best"] = jnp.where(better, w1, s["best"])
    out["best_f"] = jnp.where(better, f1, s["best_f"])
    out["status"] = jnp.where(active, status, s["status"]).astype(jnp.int32)
    out["nfev"] = s["nfev"] + jnp.where(active, dnf, 0)
    out["njev"] = s["njev"] + jnp.where(active, dnj, 0)
    rec = jnp.stack([keep, f1, gn1, out["step"], out["nfev"], out["njev"], mon1]).astype(w1.dtype)
    return out, rec


def _epoch_one(cfg: Config, s, start, e, hp, ctrl, data, key):
    """One epoch of one run and its stopping rules; with start, the initialisation instead."""
    if cfg.batch_size is not None:
        w1, opt1, f1, g1, step, dnf, dnj, ls_fail = _minibatch_pass(cfg, s, start, hp, data, key, e)
    elif cfg.armijo:
        w1, opt1, f1, g1, step, dnf, dnj, ls_fail = _armijo_step(cfg, s, start, hp, data)
    else:
        w1, opt1, f1, g1, step, dnf, dnj, ls_fail = _full_batch_step(cfg, s, start, hp, data,
                                                                     key, e)
    mon1 = _monitor(cfg, w1, f1, data)
    return _select(start, _initial_state(w1, opt1, f1, g1, mon1),
                   _advance(cfg, s, w1, opt1, f1, g1, step, dnf, dnj, ls_fail, mon1, ctrl))


def _init_one(cfg: Config, theta, hp, data):
    """The state of one run at theta (only traced, for the state's shapes)."""
    f, g = jax.value_and_grad(cfg.obj.f)(theta, data[0], data[1])
    mon = _monitor(cfg, theta, f, data)
    return {"theta": theta, "opt": make_tx(cfg.method, hp).init(theta), "f": f, "g": g,
            "best": theta, "best_f": f, "mon": mon, "pat_best": f, "wait": _i32(0),
            "vbest": mon, "vwait": _i32(0),
            "status": _i32(0), "nit": _i32(0), "nfev": _i32(1), "njev": _i32(1),
            "step": jnp.zeros((), theta.dtype)}


@functools.lru_cache(maxsize=64)
def compiled(obj: Objective, method: str, armijo: bool, batch_size: int | None, has_val: bool,
             chunk: int):
    """(blank_state, run_chunk) for L runs vmapped together; cached per static configuration.

    blank_state(theta0 (L, P), hp, data) -> a zero state of the right shapes (traced only)
    run_chunk(state, start, e0, n, hp, ctrl, data, key) -> (state, records (chunk, L, len(REC)),
        epochs run).  With start=True the first pass through the loop is not an epoch but the
        initialisation at state["theta"] (C, grad, optimiser state): it shares the epoch's
        evaluation code, so the objective is compiled once (a separate init costs ~30 % more
        compile time, which dominates short runs).
    """
    cfg = Config(obj, method, armijo, batch_size, has_val)
    v_init = jax.vmap(functools.partial(_init_one, cfg), in_axes=(0, None, None))
    v_epoch = jax.vmap(functools.partial(_epoch_one, cfg),
                       in_axes=(0, None, None, None, None, None, None))

    def blank_state(theta0, hp, data):
        shapes = jax.eval_shape(v_init, theta0, hp, data)
        state = jax.tree_util.tree_map(lambda a: np.zeros(a.shape, a.dtype), shapes)
        state["theta"] = theta0
        return state

    def run_chunk(state, start, e0, n, hp, ctrl, data, key):
        L = state["nit"].shape[0]
        recs = jnp.zeros((chunk, L, len(REC)), state["f"].dtype)
        prng = jax.random.PRNGKey(key)

        def cond(c):
            j, s, _, first = c
            return (first | (j < n)) & jnp.any(s["status"] == RUNNING)

        def body(c):
            j, s, recs, first = c
            s, rec = v_epoch(s, first, e0 + j, hp, ctrl, data, prng)
            recs = recs.at[j].set(rec)  # the start pass writes row 0, which epoch 1 overwrites
            return j + jnp.where(first, 0, 1), s, recs, jnp.bool_(False)

        j, state, recs, _ = jax.lax.while_loop(cond, body, (_i32(0), state, recs, start))
        return state, recs, j

    return blank_state, xla_options.jit(run_chunk)
