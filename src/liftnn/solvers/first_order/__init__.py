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
- "stalled": `patience` epochs in a row without the training loss dropping below its best by
  more than `min_delta` (Keras EarlyStopping(patience, min_delta)); this is how the thesis's Adam
  protocol ends.  With validation data (problem.X_val) also: `val_patience` (20) epochs in a row
  without the validation loss falling below its best by more than `min_delta` (early stopping
  on the validation split).
- "max_iter": max_iter epochs done, or the time budget spent (the message says which).
- "interrupted": Ctrl-C (KeyboardInterrupt between chunks) or a callback that returned True.

``success`` is True for "converged" and "stalled" (the run ended by one of its stopping rules,
not a limit, a failure or an interruption).

Where the code is
-----------------
options.py (defaults and checks), objective.py (the objective, from liftnn.problem), epoch.py (the
compiled epoch and its stopping rules), loop.py (chunks, lanes, budget, callback, results); this
module holds the entry points.  docs/solvers.md describes the whole toolbox.

Which iterate is returned
-------------------------
The Keras protocol of the thesis keeps the final weights; liftnn returns the iterate with the
lowest *training* objective seen (``params`` / ``x``, ``fun`` = its objective), which is always
finite, and also the last accepted iterate (``params_last`` / ``x_last``, ``fun_last``).  For a run
whose loss only decreases the two coincide.  With validation data the returned iterate is the one
with the lowest validation loss (history "val_loss"; Result ``val_loss`` = that minimum).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import jax
import numpy as np

from liftnn import sharding
from liftnn.errors import LiftnnError
from liftnn.problem import host_flat, host_unflat, layout
from liftnn.solvers import result as R
from liftnn.solvers.first_order.epoch import compiled as _compiled
from liftnn.solvers.first_order.loop import run
from liftnn.solvers.first_order.objective import function_objective, network_objective
from liftnn.solvers.first_order.options import (
    COMMON_DEFAULTS,
    GD_ONLY,
    METHOD_DEFAULTS,
    METHODS,
    check_options,
    valid_options,
)

#: the network objective keyed for the compile cache (the name the tests use)
_network_objective = network_objective

__all__ = [
    "COMMON_DEFAULTS",
    "GD_ONLY",
    "METHODS",
    "METHOD_DEFAULTS",
    "_compiled",
    "fit",
    "fit_many",
    "minimize_first_order",
    "valid_options",
]


def fit(problem, params0, *, method: str = "adam", **options) -> R.Result:
    """Train one initialisation of a network with a first-order method (see the module docstring).

    Args:
        problem: a TrainingProblem (model, X: (m, d_in), Y: (m, d_out), loss, weight_decay,
            optional X_val/Y_val: then val_patience and the returned iterate use val_loss).
        params0: initial params (list of (W, b)), e.g. model.init(seed).
        method: "gd", "momentum", "nesterov", "adam", "rmsprop", "adadelta" or "rprop".
        **options: lr and the method's hyper-parameters (METHOD_DEFAULTS), max_iter=4000 (epochs),
            patience=10 (None disables), min_delta=0, val_patience=20 (with validation
            data; None disables), gtol=0, time_budget=None (s),
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
        included); time_s is set by the front door (ln.train).
    """
    return fit_many(problem, [params0], method=method, **options)[0]


def fit_many(problem, params0_list, *, method: str = "adam", devices=None,
             **options) -> list[R.Result]:
    """Train K initialisations on the same data in one vectorised (jax.vmap) call.

    Same options and result fields as `fit` (plus `lanes`: runs vmapped together, see _lanes);
    each run has its own optimiser state, patience counter, stop flag, nit, status and history (a
    stopped run is frozen while the others go on).  Minibatch permutations are shared by all runs
    (they depend on shuffle_seed and the epoch), so each Result equals what `fit` returns for that
    initialisation (up to rounding in the vectorised arithmetic).  batch_time_s is the batch's
    wall time (ln.train sets time_s); history times are on the batch's clock.
    """
    t_start = time.perf_counter()
    if not len(params0_list):
        raise LiftnnError("params0_list is empty")
    o = check_options(method, options, problem.m)
    problem, mesh = sharding.shard_problem(problem, devices)  # docs/devices.md
    sharding.check_full_batch(o["batch_size"], mesh)
    model = problem.model
    P = int(model.n_params)
    treedef, shapes = layout(params0_list[0])
    thetas = []
    for i, p in enumerate(params0_list):
        th = host_flat(p)
        if th.shape != (P,):
            raise LiftnnError(f"initial params {i} have {th.shape[0]} entries; the network "
                              f"{model.arch} has {P}")
        if not np.all(np.isfinite(th)):
            raise LiftnnError(f"initial params {i} contain non-finite values")
        thetas.append(th)
    obj = network_objective(model, problem.loss, float(problem.weight_decay))
    if obj.f_train is not None and o.get("line_search") is not None:
        raise LiftnnError("line_search='armijo' searches on the deterministic loss; it cannot be "
                          "combined with dropout (use a fixed step)")
    data = (problem.X, problem.Y)
    if problem.X_val is not None:
        data = data + (problem.X_val, problem.Y_val)
    runs = run(obj, method, np.stack(thetas), o, data, t_start)
    return [R.Result(params=host_unflat(r["x"], treedef, shapes),
                     params_last=host_unflat(r["x_last"], treedef, shapes), method=method, **r)
            for r in runs]


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
    o = check_options(method, options, None)
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
    obj = function_objective(fun, shape == (1,))
    dummy = (np.zeros((1, 1)), np.zeros((1, 1)))  # no data: fun(x) ignores X, Y
    r = run(obj, method, x[None, :], o, dummy, t_start)[0]
    r.pop("batch_time_s")
    r["time_s"] = time.perf_counter() - t_start
    return R.Result(method=method, **r)
