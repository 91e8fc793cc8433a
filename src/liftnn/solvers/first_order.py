"""First-order training: gd, momentum, nesterov, adam, rmsprop, adadelta, rprop (through optax).

Every method moves the flat parameter vector w with a gradient transformation from optax; only
the Armijo backtracking of "gd" (a dozen lines) is written here.  With g_i = grad C(w_i):

- "gd" (seed 004 eqs. 1-2): u_i = -g_i, w_{i+1} = w_i + alpha u_i, alpha = `lr`
  (optax.sgd).  With ``line_search="armijo"`` alpha is found on the full-batch loss by
  backtracking from alpha = lr: alpha <- shrink * alpha until the sufficient-decrease condition
  C(w - alpha g) <= C(w) - mu alpha ||g||^2 holds (mu = 1e-4, shrink = 0.5, seed 001's mu).
- "momentum" (seed 004 eqs. 3-6): u_0 = -g_0, u_i = -g_i + beta u_{i-1}, w_{i+1} = w_i + alpha u_i.
  optax.sgd(lr, momentum=beta) keeps the trace t_i = g_i + beta t_{i-1} (t_{-1} = 0) and steps
  w_{i+1} = w_i - alpha t_i; with u_i = -t_i this *is* seed 004's recursion term by term (alpha
  multiplies the whole trace, not each gradient, so there is no rescaling of beta).  Seed 004's
  advice: alpha + beta = 1 for a well-scaled problem, beta >> alpha.
- "nesterov" (Sutskever et al. 2013 form, optax.sgd(nesterov=True)): u_i = -g_i + beta u_{i-1},
  w_{i+1} = w_i + alpha (-g_i + beta u_i)  (the look-ahead momentum step).
- "adam" (Kingma & Ba; optax.adam): m_i = b1 m_{i-1} + (1-b1) g_i, v_i = b2 v_{i-1} + (1-b2) g_i^2,
  w_{i+1} = w_i - alpha m^_i / (sqrt(v^_i) + eps) with bias-corrected m^, v^; lr 1e-3.
- "rmsprop" (Hinton; optax.rmsprop): v_i = rho v_{i-1} + (1-rho) g_i^2,
  w_{i+1} = w_i - alpha g_i / sqrt(v_i + eps).
- "adadelta" (Zeiler 2012; optax.adadelta): E[g^2]_i = rho E[g^2]_{i-1} + (1-rho) g_i^2,
  dw_i = -sqrt(E[dw^2]_{i-1} + eps) / sqrt(E[g^2]_i + eps) g_i, w_{i+1} = w_i + alpha dw_i (lr 1).
- "rprop" (Riedmiller & Braun 1993, iRprop- as in optax.rprop): per-weight step sizes grow by
  eta_plus while the gradient keeps its sign and shrink by eta_minus when it flips (no step then);
  w <- w - step * sign(g).  `lr` is the initial step size.

Seed 004 names Adam, rprop and adadelta among the optimisers that cope with ill-conditioned
Hessians (condition numbers of 1e10 are common in networks).

Epochs, chunks and speed
------------------------
One epoch is one pass over the training data: one step with the full batch (``batch_size=None``),
or ceil(m / batch_size) steps on minibatches reshuffled every epoch (the permutation depends on
`shuffle_seed` and the epoch only, so every run of a `fit_many` call sees the same batches; the
last batch is smaller when batch_size does not divide m).  The loop runs compiled: a jitted
`jax.lax.while_loop` over up to `chunk` epochs (it leaves early once every run has stopped), with
a Python loop over chunks for Ctrl-C, the time budget, the callback and the progress bar.  Chunks
start short and grow to `chunk` epochs while keeping roughly a quarter of a second each.  The
compiled functions are cached per (objective, method, line search, batch size, validation, chunk);
learning rates and the other hyper-parameters, tolerances and max_iter are run-time arguments, so a
second run - or a run with another lr - does not recompile (new shapes do, once).

`fit_many` vmaps the same loop over K initialisations on the same data: every run has its own
optimiser state, best iterate, patience counter and stop flag; a stopped run is frozen (its state
is no longer changed) and the loop ends when all runs have stopped or max_iter is reached.  The
runs go through the compiled loop `lanes` at a time - by default 4, or 16 when neither patience
nor gtol can stop a run before max_iter.  Each round advances every running run by the same
number of epochs, group after group, and the groups are re-formed from the runs still going, so
a stopped run stops costing compute at the end of its chunk.  (A frozen lane of a vmapped batch
costs as much as a live one, and with patience the run lengths spread widely - on sin2 from 24
to 4000 epochs - so one batch of all K runs would spend most of its time on stopped runs; on CPU
the per-run cost of a vmapped epoch falls only slowly beyond 4 lanes.)

What each epoch measures (the monitored quantities)
---------------------------------------------------
After the epoch's update(s) the full-batch objective C and its gradient are evaluated at the new
iterate w_k (with full batch this is the evaluation the next step needs anyway, so an epoch costs
exactly one gradient evaluation; with minibatches it is one extra full-batch pass).  history[k]
describes w_k: "loss" = C(w_k), "grad_norm" = ||grad C(w_k)||_inf, "val_loss" (when the problem
has validation data) = the data loss on X_val.  Keras logs, as "loss", the loss *before* the
epoch's update (full batch) or the running mean of minibatch losses; ours is the exact loss of the
iterate the epoch produced - for the full-batch protocol the same numbers shifted by one epoch.

Stopping rules and status (one rule, in this order of precedence)
-----------------------------------------------------------------
- "diverged": C or its gradient at the new iterate is not finite.  That epoch is rejected: the run
  stops at its last finite iterate (``x_last``) and returns its best iterate (``x``); never NaN.
- "line_search_failed" (gd + Armijo): no sufficient decrease after `max_backtracks` halvings.
- "converged": ||grad C(w_k)||_inf <= gtol (off by default, gtol = 0 only stops at an exactly
  stationary point, e.g. a network whose ReLUs all died).
- "stalled": `patience` epochs in a row without the monitored loss (the validation loss when the
  problem has X_val, else the training loss) dropping below its best by more than `min_delta`
  (Keras EarlyStopping(patience, min_delta)); this is how the thesis's Adam protocol ends.
- "max_iter": max_iter epochs done, or the time budget spent (the message says which).
- "interrupted": Ctrl-C (KeyboardInterrupt between chunks) or a callback that returned True.

``success`` is True for "converged" and "stalled" (the run ended by one of its stopping rules,
not a limit, a failure or an interruption).

Which iterate is returned
-------------------------
The Keras protocol of the thesis keeps the final weights; liftnn returns the iterate with the
lowest *training* objective seen (``params`` / ``x``, ``fun`` = its objective), which is always
finite, and also the last accepted iterate (``params_last`` / ``x_last``, ``fun_last``).  For a run
whose loss only decreases the two coincide.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from liftnn._validate import check_choice
from liftnn.errors import LiftnnError
from liftnn.models.losses import get_loss
from liftnn.solvers import result as R

# ---------------------------------------------------------------------------------------------
# methods, options and their defaults
# ---------------------------------------------------------------------------------------------

#: method -> its own hyper-parameters and their defaults (all floats; `lr` is alpha).
METHOD_DEFAULTS: dict[str, dict[str, float]] = {
    "gd": {"lr": 1e-2, "mu": 1e-4, "shrink": 0.5},
    "momentum": {"lr": 1e-2, "beta": 0.9},
    "nesterov": {"lr": 1e-2, "beta": 0.9},
    "adam": {"lr": 1e-3, "b1": 0.9, "b2": 0.999, "eps": 1e-8},
    "rmsprop": {"lr": 1e-3, "rho": 0.9, "eps": 1e-8},
    "adadelta": {"lr": 1.0, "rho": 0.9, "eps": 1e-6},
    "rprop": {"lr": 1e-2, "eta_minus": 0.5, "eta_plus": 1.2, "min_step": 1e-6, "max_step": 50.0},
}
METHODS = tuple(METHOD_DEFAULTS)

#: options shared by every method (minimize_first_order: all but the data options below).
COMMON_DEFAULTS: dict[str, Any] = {
    "max_iter": 4000,       # epochs
    "patience": 10,         # epochs without improvement of the monitored loss; None disables
    "min_delta": 0.0,       # an improvement must beat the best by more than this
    "gtol": 0.0,            # stop when ||grad||_inf <= gtol (0: only an exact stationary point)
    "time_budget": None,    # seconds of wall time (checked between chunks)
    "callback": None,       # callback(iter, theta, loss) at chunk boundaries; True stops
    "progress": False,      # rich progress bar
    "batch_size": None,     # None: full batch; else minibatches reshuffled each epoch
    "shuffle_seed": 0,      # seed of the minibatch permutations
    "chunk": 256,           # most epochs per compiled chunk
    "lanes": None,          # fit_many: runs vmapped together; None: 4, or 16 without early stops
}
GD_ONLY = {"line_search": None, "max_backtracks": 40}
_DATA_OPTIONS = ("batch_size", "shuffle_seed", "lanes")

# status codes inside the compiled loop
_RUNNING, _CONV, _MAXIT, _STALL, _DIV, _LSF = 0, 1, 2, 3, 4, 5
_REC = ("valid", "loss", "grad_norm", "step", "nfev", "njev", "val")  # per-epoch record columns
_CHUNK_TARGET_S = 0.25
_FIRST_CHUNK = 32


def valid_options(method: str, data: bool = True) -> list[str]:
    """The option names `method` accepts (data=False: those of minimize_first_order)."""
    check_choice("first-order method", method, METHOD_DEFAULTS)
    names = list(METHOD_DEFAULTS[method]) + list(COMMON_DEFAULTS)
    if method == "gd":
        names += list(GD_ONLY)
    if not data:
        names = [n for n in names if n not in _DATA_OPTIONS]
    return names


def _check_options(method: str, options: dict, m: int | None) -> dict:
    """Merge defaults and validate every option before any work; raise LiftnnError naming it."""
    check_choice("first-order method", method, METHOD_DEFAULTS)
    valid = valid_options(method, data=m is not None)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise LiftnnError(f"unknown option(s) {', '.join(map(repr, unknown))} for method "
                          f"{method!r}; valid options: {', '.join(sorted(valid))}")
    o = {**COMMON_DEFAULTS, **METHOD_DEFAULTS[method], **(GD_ONLY if method == "gd" else {})}
    o.update(options)

    def num(name, lo=None, hi=None, lo_open=False, hi_open=False):
        v = o[name]
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
            raise LiftnnError(f"{name} must be a number; got {v!r}")
        v = float(v)
        bad = not math.isfinite(v)
        if lo is not None:
            bad |= v <= lo if lo_open else v < lo
        if hi is not None:
            bad |= v >= hi if hi_open else v > hi
        if bad:
            lo_s = "" if lo is None else f"{'>' if lo_open else '>='} {lo:g}"
            hi_s = "" if hi is None else f"{'<' if hi_open else '<='} {hi:g}"
            raise LiftnnError(f"{name} must be {' and '.join(s for s in (lo_s, hi_s) if s)}; "
                              f"got {o[name]!r}")
        o[name] = v

    def integer(name, lo, allow_none=False):
        v = o[name]
        if v is None and allow_none:
            return
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
            none = " or None" if allow_none else ""
            raise LiftnnError(f"{name} must be an integer >= {lo}{none}; got {v!r}")
        o[name] = int(v)

    num("lr", 0.0, lo_open=True)
    for name in ("beta", "b1", "b2", "rho"):
        if name in o and name in METHOD_DEFAULTS[method]:
            num(name, 0.0, 1.0, hi_open=True)
    if "eps" in METHOD_DEFAULTS[method]:
        num("eps", 0.0, lo_open=True)
    if method == "rprop":
        num("eta_minus", 0.0, 1.0, lo_open=True, hi_open=True)
        num("eta_plus", 1.0, lo_open=True)
        num("min_step", 0.0, lo_open=True)
        num("max_step", o["min_step"])
    if method == "gd":
        num("mu", 0.0, 1.0, lo_open=True, hi_open=True)
        num("shrink", 0.0, 1.0, lo_open=True, hi_open=True)
        integer("max_backtracks", 1)
        ls = o["line_search"]
        if ls in ("none", "fixed", False):
            ls = None
        if ls is not None:
            check_choice("line_search", ls, ("armijo",))
        o["line_search"] = ls
    integer("max_iter", 0)
    integer("patience", 0, allow_none=True)
    num("min_delta", 0.0)
    num("gtol", 0.0)
    if o["time_budget"] is not None:
        num("time_budget", 0.0, lo_open=True)
    if o["callback"] is not None and not callable(o["callback"]):
        raise LiftnnError(f"callback must be callable or None; got {o['callback']!r}")
    o["progress"] = bool(o["progress"])
    integer("chunk", 1)
    if m is not None:
        integer("lanes", 1, allow_none=True)
        integer("shuffle_seed", 0)
        integer("batch_size", 1, allow_none=True)
        if o["batch_size"] is not None and o["batch_size"] > m:
            raise LiftnnError(f"batch_size = {o['batch_size']} exceeds the {m} training samples")
        if o["batch_size"] == m:
            o["batch_size"] = None  # one batch of everything is full batch
        if o["batch_size"] is not None and o.get("line_search") is not None:
            raise LiftnnError("line_search='armijo' works on the full-batch loss; "
                              "it cannot be combined with batch_size")
    o["hyper"] = {k: float(o[k]) for k in METHOD_DEFAULTS[method]}
    return o


# ---------------------------------------------------------------------------------------------
# the objective: C(theta, X, Y) and optionally a validation loss, keyed for the compile cache
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Objective:
    """A scalar objective f(theta, X, Y) (and val(theta, Xv, Yv)); hashed by `key` only."""

    key: tuple
    f: Callable = field(compare=False, hash=False)
    val: Callable | None = field(default=None, compare=False, hash=False)
    # f_train(theta, X, Y, key): the objective with dropout masks drawn from key (training mode);
    # None when the model has no dropout.  Steps use its gradient; C, the stopping rules and the
    # history use f (inference mode, dropout off).
    f_train: Callable | None = field(default=None, compare=False, hash=False)


@functools.lru_cache(maxsize=32)
def _network_objective(model, loss, weight_decay: float) -> _Objective:
    """TrainingProblem.objective on the flat vector, with the data as arguments (not constants).

        C(theta; X, Y) = loss(f_theta(X), Y) + weight_decay / 2 ||theta||^2
        val(theta; Xv, Yv) = loss(f_theta(Xv), Yv)                       (TrainingProblem.val_loss)
    """
    lossf = get_loss(loss)

    def data_loss(theta, X, Y):
        return lossf(model.apply(model.unflatten(theta), X), Y)

    def f(theta, X, Y):
        c = data_loss(theta, X, Y)
        if weight_decay:
            c = c + 0.5 * weight_decay * jnp.sum(theta**2)
        return c

    f_train = None
    if any(r > 0.0 for r in getattr(model, "dropout", ())):
        def f_train(theta, X, Y, key):
            c = lossf(model.apply(model.unflatten(theta), X, key=key, train=True), Y)
            if weight_decay:
                c = c + 0.5 * weight_decay * jnp.sum(theta**2)
            return c

    return _Objective(("network", model, loss, float(weight_decay)), f, data_loss, f_train)


@functools.lru_cache(maxsize=64)
def _function_objective(fun, squeeze: bool) -> _Objective:
    """fun(x) as an objective of (theta, X, Y) that ignores the data (squeeze: fun returns (1,))."""
    if squeeze:
        return _Objective(("function", fun, True), lambda theta, X, Y: fun(theta)[0])
    return _Objective(("function", fun, False), lambda theta, X, Y: fun(theta))


# ---------------------------------------------------------------------------------------------
# the optimisers (optax) and one epoch of one run
# ---------------------------------------------------------------------------------------------


def _make_tx(method: str, hp: dict) -> optax.GradientTransformation:
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


@functools.lru_cache(maxsize=64)
def _compiled(obj: _Objective, method: str, armijo: bool, batch_size: int | None, has_val: bool,
              chunk: int):
    """(blank_state, run_chunk) for L runs vmapped together; cached per static configuration.

    blank_state(theta0 (L, P), hp, data) -> a zero state of the right shapes (traced only)
    run_chunk(state, start, e0, n, hp, ctrl, data, key) -> (state, records (chunk, L, len(_REC)),
        epochs run).  With start=True the first pass through the loop is not an epoch but the
        initialisation at state["theta"] (C, grad, optimiser state): it shares the epoch's
        evaluation code, so the objective is compiled once (a separate init costs ~30 % more
        compile time, which dominates short runs).
    """
    vg = jax.value_and_grad(obj.f)
    i32 = functools.partial(jnp.asarray, dtype=jnp.int32)

    def monitor(theta, f, data):
        return obj.val(theta, data[2], data[3]) if has_val else f

    def init_one(theta, hp, data):  # only traced, for the state's shapes
        f, g = vg(theta, data[0], data[1])
        mon = monitor(theta, f, data)
        return {"theta": theta, "opt": _make_tx(method, hp).init(theta), "f": f, "g": g,
                "best": theta, "best_f": f, "mon": mon, "mon_best": mon, "wait": i32(0),
                "status": i32(0), "nit": i32(0), "nfev": i32(1), "njev": i32(1),
                "step": jnp.zeros((), theta.dtype)}

    def armijo_step(s, start, hp, data):
        """Backtracking on C(w - t g) <= C(w) - mu t ||g||^2, t = lr, lr/2, ... (jax while_loop).

        At start the blank state has g = 0, so the first trial point is w itself: C(w), no search.
        """
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
            return t, obj.f(w - t * g, X, Y), k + 1

        t0 = hp["lr"] * jnp.ones((), w.dtype)
        t, ft, k = jax.lax.while_loop(cond, body, (t0, obj.f(w - t0 * g, X, Y), i32(0)))
        w1 = w - t * g
        g1 = jax.grad(obj.f)(w1, X, Y)
        return w1, s["opt"], ft, g1, t, k + 1, 1, ~start & ~ok(t, ft)

    def minibatch_pass(s, start, hp, data, key, e):
        """One epoch of minibatch steps on a fresh permutation (shared by all runs); C, grad."""
        X, Y = data[0], data[1]
        m = X.shape[0]
        tx = _make_tx(method, hp)
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

    def full_batch_step(s, start, hp, data, key, e):
        tx = _make_tx(method, hp)

        def step(_):
            g = s["g"]  # the full-batch gradient at theta, from the previous evaluation
            if obj.f_train is not None:  # dropout: the gradient of the masked network
                g = jax.grad(obj.f_train)(s["theta"], data[0], data[1], jax.random.fold_in(key, e))
            upd, opt1 = tx.update(g, s["opt"], s["theta"])
            return optax.apply_updates(s["theta"], upd), opt1

        w1, opt1 = _select(start, (s["theta"], tx.init(s["theta"])), step(None))
        f1, g1 = vg(w1, data[0], data[1])
        return w1, opt1, f1, g1, hp["lr"], 1, 1, jnp.bool_(False)

    def epoch_one(s, start, e, hp, ctrl, data, key):
        """One epoch of one run and its stopping rules (a stopped run is returned unchanged);
        with start, the initialisation instead."""
        if batch_size is not None:
            w1, opt1, f1, g1, step, dnf, dnj, ls_fail = minibatch_pass(s, start, hp, data, key, e)
        elif armijo:
            w1, opt1, f1, g1, step, dnf, dnj, ls_fail = armijo_step(s, start, hp, data)
        else:
            w1, opt1, f1, g1, step, dnf, dnj, ls_fail = full_batch_step(s, start, hp, data, key, e)
        gn1 = _gnorm(g1)  # NaN / inf when any entry is
        mon1 = monitor(w1, f1, data)

        def initial(_):
            out = {"theta": w1, "opt": opt1, "f": f1, "g": g1, "best": w1, "best_f": f1,
                   "mon": mon1, "mon_best": mon1, "wait": i32(0), "status": i32(_RUNNING),
                   "nit": i32(0), "nfev": i32(1), "njev": i32(1), "step": jnp.zeros_like(f1)}
            return out, jnp.zeros(len(_REC), f1.dtype)

        def epoch(_):
            finite = jnp.isfinite(f1) & jnp.isfinite(gn1)
            active = s["status"] == _RUNNING
            keep = active & finite & ~ls_fail  # the epoch's iterate is accepted
            improved = mon1 < s["mon_best"] - ctrl["min_delta"]
            wait1 = jnp.where(improved, 0, s["wait"] + 1)
            nit1 = s["nit"] + 1
            status = jnp.where(
                ~finite, _DIV, jnp.where(
                    ls_fail, _LSF, jnp.where(
                        gn1 <= ctrl["gtol"], _CONV, jnp.where(
                            ctrl["use_patience"] & ~improved & (wait1 >= ctrl["patience"]),
                            _STALL, jnp.where(nit1 >= ctrl["max_iter"], _MAXIT, _RUNNING)))))
            better = keep & (f1 < s["best_f"])
            new = {"theta": w1, "opt": opt1, "f": f1, "g": g1, "mon": mon1,
                   "mon_best": jnp.where(improved, mon1, s["mon_best"]), "wait": wait1,
                   "nit": nit1, "step": jnp.asarray(step, w1.dtype)}
            # a rejected epoch (diverged / line search failed) or a stopped run keeps its
            # iterate; the work of a rejected epoch is still counted
            out = {k: jax.tree_util.tree_map(lambda a, b: jnp.where(keep, a, b), v, s[k])
                   for k, v in new.items()}
            out["best"] = jnp.where(better, w1, s["best"])
            out["best_f"] = jnp.where(better, f1, s["best_f"])
            out["status"] = jnp.where(active, status, s["status"]).astype(jnp.int32)
            out["nfev"] = s["nfev"] + jnp.where(active, dnf, 0)
            out["njev"] = s["njev"] + jnp.where(active, dnj, 0)
            rec = jnp.stack([keep, f1, gn1, out["step"], out["nfev"], out["njev"], mon1]
                            ).astype(w1.dtype)
            return out, rec

        return _select(start, initial(None), epoch(None))

    v_init = jax.vmap(init_one, in_axes=(0, None, None))
    v_epoch = jax.vmap(epoch_one, in_axes=(0, None, None, None, None, None, None))

    def blank_state(theta0, hp, data):
        shapes = jax.eval_shape(v_init, theta0, hp, data)
        state = jax.tree_util.tree_map(lambda a: np.zeros(a.shape, a.dtype), shapes)
        state["theta"] = theta0
        return state

    def run_chunk(state, start, e0, n, hp, ctrl, data, key):
        L = state["nit"].shape[0]
        recs = jnp.zeros((chunk, L, len(_REC)), state["f"].dtype)
        prng = jax.random.PRNGKey(key)

        def cond(c):
            j, s, _, first = c
            return (first | (j < n)) & jnp.any(s["status"] == _RUNNING)

        def body(c):
            j, s, recs, first = c
            s, rec = v_epoch(s, first, e0 + j, hp, ctrl, data, prng)
            recs = recs.at[j].set(rec)  # the start pass writes row 0, which epoch 1 overwrites
            return j + jnp.where(first, 0, 1), s, recs, jnp.bool_(False)

        j, state, recs, _ = jax.lax.while_loop(cond, body, (i32(0), state, recs, start))
        return state, recs, j

    return blank_state, jax.jit(run_chunk)


# ---------------------------------------------------------------------------------------------
# the driver: chunks, time budget, Ctrl-C, callback, progress, results
# ---------------------------------------------------------------------------------------------


def _progress(enabled: bool, method: str, total: int):
    """A rich progress bar over epochs (no-op unless enabled); update(epoch, best, ndone, K)."""
    if not enabled:
        return lambda *a: None
    from rich.progress import Progress

    prog = Progress(transient=True)
    task = prog.add_task(method, total=total)
    prog.start()

    def update(epoch, best=None, ndone=None, K=None):
        if epoch is None:
            prog.stop()
            return
        prog.update(task, completed=epoch,
                    description=f"{method}: best loss {best:.4g}, {ndone}/{K} runs stopped")

    return update


def _lanes(o: dict) -> int:
    """Runs vmapped together: `lanes`, or by default 4 when runs can stop early (patience, gtol)
    and 16 when they all run to max_iter (then no lane ever idles, and wider is cheaper per run)."""
    if o.get("lanes") is not None:
        return o["lanes"]
    early = (o["patience"] is not None and o["patience"] < o["max_iter"]) or o["gtol"] > 0
    return 4 if early else 16


def _groups(idx: np.ndarray, L: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Split run indices into groups of L lanes: (real runs, lane indices padded to L).

    A short last group is padded with copies of its first run, whose results are discarded.
    """
    out = []
    for i in range(0, len(idx), L):
        g = idx[i:i + L]
        out.append((g, np.concatenate([g, np.full(L - len(g), g[0])])))
    return out


def _put(S, rows: np.ndarray, lanes):
    """A copy of the host state S with S[rows] = lanes[:len(rows)] (swapped in as a whole, so a
    Ctrl-C never leaves a run half-updated)."""
    def put(a, b):
        a = a.copy()
        a[rows] = np.asarray(b)[: len(rows)]
        return a

    return jax.tree_util.tree_map(put, S, lanes)


def _run(obj: _Objective, method: str, theta0: np.ndarray, o: dict, data: tuple,
         t_start: float) -> list[dict]:
    """Train K runs (theta0: (K, P)) and return one dict of result fields per run.

    The runs are vmapped `lanes` at a time (L = min(K, lanes)): each round advances every running
    run by the same number of epochs, group after group, and the groups are re-formed from the
    runs still going, so stopped runs cost nothing after the chunk in which they stop.
    """
    K = int(theta0.shape[0])
    L = min(K, _lanes(o))
    armijo = o.get("line_search") == "armijo"
    has_val = len(data) == 4
    blank_state, run_chunk = _compiled(obj, method, armijo, o["batch_size"], has_val, o["chunk"])
    hp = {k: np.asarray(v, np.float64) for k, v in o["hyper"].items()}
    if armijo:
        hp["max_backtracks"] = np.asarray(o["max_backtracks"], np.int32)
    max_iter = int(o["max_iter"])
    ctrl = {"max_iter": np.asarray(max_iter, np.int32),
            "patience": np.asarray(o["patience"] or 0, np.int32),
            "use_patience": np.asarray(o["patience"] is not None),
            "min_delta": np.asarray(o["min_delta"], np.float64),
            "gtol": np.asarray(o["gtol"], np.float64)}
    key = np.asarray(o["shuffle_seed"], np.uint32)  # the PRNG key is built inside the jit

    def chunk(S, lanes, start, e0, n):
        out, recs, j = run_chunk(jax.tree_util.tree_map(lambda a: a[lanes], S), start, e0, n,
                                 hp, ctrl, data, key)
        j = int(j)  # waits for the chunk
        return jax.tree_util.tree_map(np.asarray, out), np.asarray(recs)[:j]

    # initialise (C, grad and optimiser state at theta0), L runs at a time
    template = blank_state(theta0[:L], hp, data)
    S = jax.tree_util.tree_map(lambda a: np.zeros((K,) + a.shape[1:], a.dtype), template)
    S["theta"] = theta0
    for g, lanes in _groups(np.arange(K), L):
        out, _ = chunk(S, lanes, True, 0, 0)
        S = _put(S, g, out)
    f0, g0 = S["f"], np.max(np.abs(S["g"]), axis=1, initial=0.0)
    bad = np.flatnonzero(~np.isfinite(f0) | ~np.isfinite(g0))
    if bad.size:
        which = "" if K == 1 else f" (initialisation {int(bad[0])} of {K})"
        raise LiftnnError(f"the loss or its gradient is not finite at the initial point{which}: "
                          f"loss = {f0[bad[0]]!r}")
    t_init = time.perf_counter() - t_start
    first = {"f": f0.copy(), "g": g0, "val": S["mon"].copy()}
    segments: list[list] = [[] for _ in range(K)]  # per run: (records, t_begin, t_end) per chunk
    epoch = 0
    n = min(o["chunk"], _FIRST_CHUNK)
    stop_msg = [""] * K
    stop_status: list[str | None] = [None] * K
    if max_iter == 0:
        stop_status = [R.MAX_ITER] * K
        stop_msg = ["max_iter = 0 epochs"] * K
    budget = o["time_budget"]
    progress = _progress(o["progress"], method, max_iter)
    out_of_time = False
    try:
        while epoch < max_iter and not out_of_time:
            active = np.flatnonzero(S["status"] == _RUNNING)
            if not active.size:
                break
            n_req = min(n, max_iter - epoch)
            t_round = time.perf_counter()
            for g, lanes in _groups(active, L):
                t_a = time.perf_counter()
                out, recs = chunk(S, lanes, False, epoch, n_req)
                t_b = time.perf_counter()
                S = _put(S, g, out)
                for lane, r in enumerate(g):
                    segments[r].append((recs[:, lane], t_a - t_start, t_b - t_start))
                if budget is not None and t_b - t_start >= budget:
                    out_of_time = True
                    break
            epoch += n_req
            running = S["status"] == _RUNNING
            progress(epoch, float(np.min(S["best_f"])), int((~running).sum()), K)
            if out_of_time:
                for i in np.flatnonzero(running):
                    stop_status[i], stop_msg[i] = R.MAX_ITER, (
                        f"time budget of {budget:g} s reached after {int(S['nit'][i])} epochs")
                break
            if o["callback"] is not None and running.any():
                th, fl = S["theta"], S["f"]
                if o["callback"](epoch, th[0] if K == 1 else th, fl[0] if K == 1 else fl) is True:
                    for i in np.flatnonzero(running):
                        stop_status[i], stop_msg[i] = R.INTERRUPTED, (
                            f"stopped by the callback after {epoch} epochs; returned the best "
                            f"iterate so far")
                    break
            # next round: chunks of about _CHUNK_TARGET_S each (the first one includes compiling)
            t_now = time.perf_counter()
            per_epoch = (t_now - t_round) / max(n_req * len(_groups(active, L)), 1)
            grow = 4 * n if n == _FIRST_CHUNK else int(_CHUNK_TARGET_S / max(per_epoch, 1e-9))
            n = max(1, min(o["chunk"], grow, 4 * n))
            if budget is not None:
                left = (budget - (t_now - t_start)) / max(per_epoch * len(active) / L, 1e-9)
                n = max(1, min(n, int(left) + 1))
    except KeyboardInterrupt:
        for i in np.flatnonzero(S["status"] == _RUNNING):
            stop_status[i], stop_msg[i] = R.INTERRUPTED, (
                f"interrupted (KeyboardInterrupt) after {int(S['nit'][i])} epochs; returned the "
                f"best iterate so far")
    finally:
        progress(None)
    wall = time.perf_counter() - t_start
    return _collect(S, segments, first, t_init, stop_status, stop_msg, o, has_val, wall, K)


def _collect(st, segments, first, t_init, stop_status, stop_msg, o, has_val, wall, K):
    """Per-run result fields and history from the final host state and the chunk records.

    The wall time of an epoch is known at the boundaries of the chunk that ran it and linearly
    interpolated over the epochs inside the chunk.
    """
    lr0 = o["hyper"]["lr"]
    col = {name: i for i, name in enumerate(_REC)}
    out = []
    for i in range(K):
        hist = [{"iter": 0, "loss": float(first["f"][i]), "grad_norm": float(first["g"][i]),
                 "step": 0.0, "nfev": 1, "njev": 1, "nhev": 0, "time": t_init}]
        if has_val:
            hist[0]["val_loss"] = float(first["val"][i])
        if segments[i]:
            rec = np.concatenate([r for r, _, _ in segments[i]])
            times = np.concatenate([np.linspace(ta, tb, len(r) + 1)[1:]
                                    for r, ta, tb in segments[i]])
            rows = np.flatnonzero(rec[:, col["valid"]] > 0)
            rec, times = rec[rows], times[rows].tolist()
            loss, gn, step, vals = (rec[:, col[k]].tolist()
                                    for k in ("loss", "grad_norm", "step", "val"))
            nf, nj = (rec[:, col[k]].astype(np.int64).tolist() for k in ("nfev", "njev"))
            for r in range(len(rows)):
                h = {"iter": r + 1, "loss": loss[r], "grad_norm": gn[r], "step": step[r],
                     "nfev": nf[r], "njev": nj[r], "nhev": 0, "time": times[r]}
                if has_val:
                    h["val_loss"] = vals[r]
                hist.append(h)
        code = int(st["status"][i])
        nit = int(st["nit"][i])
        if stop_status[i] is not None:
            status, message = stop_status[i], stop_msg[i]
        elif code == _CONV:
            gmax = float(np.max(np.abs(st["g"][i]), initial=0.0))
            status, message = R.CONVERGED, f"||grad||_inf = {gmax:.3g} <= gtol = {o['gtol']:g}"
        elif code == _STALL:
            which = "validation" if has_val else "training"
            status, message = R.STALLED, (f"no improvement of the {which} loss by more than "
                                          f"min_delta = {o['min_delta']:g} in {o['patience']} "
                                          f"epochs (patience)")
        elif code == _MAXIT:
            status, message = R.MAX_ITER, f"max_iter = {o['max_iter']} epochs reached"
        elif code == _DIV:
            status, message = R.DIVERGED, (
                f"the loss became non-finite in epoch {nit + 1} (step {lr0:g}); returned the "
                f"best finite iterate (x_last is the last finite one)")
        elif code == _LSF:
            status, message = R.LINE_SEARCH_FAILED, (
                f"Armijo backtracking found no sufficient decrease in {o['max_backtracks']} "
                f"halvings of lr = {lr0:g} in epoch {nit + 1}")
        else:  # pragma: no cover - the loop only ends with every run stopped
            status, message = R.INTERRUPTED, "stopped before the run finished"
        out.append({
            "x": st["best"][i], "fun": float(st["best_f"][i]), "x_last": st["theta"][i],
            "fun_last": float(st["f"][i]), "nit": nit, "nfev": int(st["nfev"][i]),
            "njev": int(st["njev"][i]), "nhev": 0, "status": status,
            "success": status in (R.CONVERGED, R.STALLED), "message": message, "history": hist,
            "time_s": wall / K, "batch_time_s": wall,
        })
    return out


# ---------------------------------------------------------------------------------------------
# public entry points
# ---------------------------------------------------------------------------------------------


def fit(problem, params0, *, method: str = "adam", **options) -> R.Result:
    """Train one initialisation of a network with a first-order method (see the module docstring).

    Args:
        problem: a TrainingProblem (model, X: (m, d_in), Y: (m, d_out), loss, weight_decay,
            optional X_val/Y_val, which `patience` then monitors).
        params0: initial params (list of (W, b)), e.g. model.init(seed).
        method: "gd", "momentum", "nesterov", "adam", "rmsprop", "adadelta" or "rprop".
        **options: lr and the method's hyper-parameters (METHOD_DEFAULTS), max_iter=4000 (epochs),
            patience=10 (None disables), min_delta=0, gtol=0, time_budget=None (s),
            callback(iter, theta, loss)=None (chunk boundaries; return True to stop),
            progress=False, batch_size=None (full batch), shuffle_seed=0, chunk=256,
            lanes=None (fit_many only: 4, or 16 without early stopping); for gd also
            line_search=None|"armijo" (mu=1e-4, shrink=0.5, max_backtracks=40).

    Returns:
        Result with params / x / fun (best iterate by training objective), params_last / x_last /
        fun_last (last accepted iterate), nit (epochs), nfev, njev (gradient evaluations), nhev=0,
        status, success, message, history (one dict per epoch, iter 0 = the start: iter, loss,
        grad_norm = ||grad||_inf, step = lr or the Armijo step, cumulative nfev / njev / nhev,
        val_loss with validation data, and time = seconds since the call began, measured at chunk
        boundaries and linearly interpolated over the epochs inside a chunk, compilation
        included), time_s.
    """
    return fit_many(problem, [params0], method=method, **options)[0]


def fit_many(problem, params0_list, *, method: str = "adam", **options) -> list[R.Result]:
    """Train K initialisations on the same data in one vectorised (jax.vmap) call.

    Same options and result fields as `fit` (plus `lanes`: runs vmapped together, see _lanes);
    each run has its own optimiser state, patience counter, stop flag, nit, status and history (a
    stopped run is frozen while the others go on).  Minibatch permutations are shared by all runs
    (they depend on shuffle_seed and the epoch), so each Result equals what `fit` returns for that
    initialisation (up to rounding in the vectorised arithmetic).  time_s is the batch's wall
    time divided by K (batch_time_s is the whole); history times are on the batch's clock.
    """
    t_start = time.perf_counter()
    if not len(params0_list):
        raise LiftnnError("params0_list is empty")
    o = _check_options(method, options, problem.m)
    model = problem.model
    P = int(model.n_params)
    leaves0, treedef = jax.tree_util.tree_flatten(params0_list[0])
    shapes = [np.shape(leaf) for leaf in leaves0]
    thetas = []
    for i, p in enumerate(params0_list):
        th = _ravel_np(p)
        if th.shape != (P,):
            raise LiftnnError(f"initial params {i} have {th.shape[0]} entries; the network "
                              f"{model.arch} has {P}")
        if not np.all(np.isfinite(th)):
            raise LiftnnError(f"initial params {i} contain non-finite values")
        thetas.append(th)
    obj = _network_objective(model, problem.loss, float(problem.weight_decay))
    if obj.f_train is not None and o.get("line_search") is not None:
        raise LiftnnError("line_search='armijo' searches on the deterministic loss; it cannot be "
                          "combined with dropout (use a fixed step)")
    data = (problem.X, problem.Y)
    if problem.X_val is not None:
        data = data + (problem.X_val, problem.Y_val)
    runs = _run(obj, method, np.stack(thetas), o, data, t_start)
    return [R.Result(params=_unravel_np(r["x"], treedef, shapes),
                     params_last=_unravel_np(r["x_last"], treedef, shapes), method=method, **r)
            for r in runs]


def _ravel_np(params) -> np.ndarray:
    """ravel_pytree in NumPy (same order: leaves in tree order, each row-major)."""
    leaves = jax.tree_util.tree_leaves(params)
    return np.concatenate([np.asarray(leaf, np.float64).ravel() for leaf in leaves])


def _unravel_np(theta, treedef, shapes):
    """Inverse of _ravel_np for the structure (treedef, leaf shapes) of the initial params."""
    out, k = [], 0
    for shp in shapes:
        n = int(np.prod(shp))
        out.append(jnp.asarray(np.asarray(theta[k:k + n]).reshape(shp)))
        k += n
    return jax.tree_util.tree_unflatten(treedef, out)


def minimize_first_order(fun: Callable, x0, method: str, **options) -> R.Result:
    """Minimise a differentiable scalar function of a vector with a first-order method.

    fun: x (n,) -> scalar, written with jax.numpy (the gradient comes from jax.grad).  The
    methods, options (all of `fit`'s except batch_size and shuffle_seed: one epoch = one
    full-batch step), stopping rules, status and history are those of the module docstring.
    Returns a Result with x / fun (best iterate), x_last / fun_last, nit, nfev, njev, nhev,
    status, success, message, history, time_s.

    Raises LiftnnError before any iteration for an unknown method or option, impossible option
    values, a non-finite or non-1-D x0, a fun that does not return a scalar, or a non-finite
    value or gradient at x0.
    """
    t_start = time.perf_counter()
    if not callable(fun):
        raise LiftnnError(f"fun must be callable; got {fun!r}")
    o = _check_options(method, options, None)
    o["batch_size"] = None
    try:
        x = np.asarray(x0, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise LiftnnError(f"x0 is not a numeric vector: {exc}") from None
    x = np.atleast_1d(x)
    if x.ndim != 1 or x.size == 0:
        raise LiftnnError(f"x0 must be a non-empty vector; got shape {np.shape(x0)}")
    if not np.all(np.isfinite(x)):
        first_bad = int(np.flatnonzero(~np.isfinite(x))[0])
        raise LiftnnError(f"x0 contains non-finite values (first at index {first_bad})")
    try:
        shape = jax.eval_shape(fun, x).shape
    except Exception as exc:  # noqa: BLE001 - any failure to trace fun is bad input
        raise LiftnnError(f"fun could not be evaluated with JAX at x0 (write it with jax.numpy): "
                          f"{type(exc).__name__}: {exc}") from None
    if shape not in ((), (1,)):
        raise LiftnnError(f"fun must return a scalar; it returns shape {shape}")
    obj = _function_objective(fun, shape == (1,))
    dummy = (np.zeros((1, 1)), np.zeros((1, 1)))  # no data: fun(x) ignores X, Y
    r = _run(obj, method, x[None, :], o, dummy, t_start)[0]
    r["time_s"] = r.pop("batch_time_s")
    return R.Result(method=method, **r)
