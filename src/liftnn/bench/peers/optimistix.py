"""optimistix-lm / optimistix-gn: optimistix.least_squares on the single-shooting residual.

The residual is liftnn.problem.TrainingProblem.residual on the flat parameter vector theta, so
optimistix's loss 1/2 ||r(theta)||^2 is liftnn's objective C(theta) (weight decay included, as
the rows sqrt(weight_decay) theta of r).  The solve is one call

    optimistix.least_squares(r, solver, theta0, max_steps=max_steps, throw=False)

with solver = optimistix.LevenbergMarquardt(rtol, atol, norm) ("optimistix-lm": damped Newton
descent + classical trust region, QR linear solves) or optimistix.GaussNewton(rtol, atol, norm)
("optimistix-gn": unit steps, no globalisation, lineax's AutoLinearSolver(well_posed=None)).
optimistix stops when one accepted step changes both theta and r by less than
atol + rtol * |.| in `norm` (its Cauchy termination; norm "max" = optimistix.max_norm, its
default, "rms", "two").  rtol = atol = 1e-8 by default (optimistix has no defaults; scipy's
least_squares uses 1e-8).  The Jacobian is optimistix's (jax.linearize for jac="fwd", a
materialised jax.jacrev for "bwd").  The whole solve is one jitted while_loop: jit compilation is
part of the wall time, as for the scipy peers, and there is no time budget (the loop cannot be
stopped from outside).

max_steps (default 1000) counts every step, rejected trust-region trials included (liftnn's own
"lm" counts accepted iterations, 500 by default).  nit = accepted steps, nfev = njev = steps (each
step linearises r at its trial point).

History: the solvers' `verbose` hook (a callable receiving per-step values) sends each step's
trial loss to the host with jax.debug.callback; history holds one entry per accepted step
(iter 0 = params0), with "loss" = C at that iterate, "steps" = steps taken so far and "time".
(An optimistix version whose `verbose` passes other values gets the start and the end only.)
Measured (1-16-16-1 relu, 20 points, 60 steps, loaded 2-core machine): the callback does not
dominate; 60 steps took 28.6 s without it and 19.7 s with it (noise of a shared machine).

Status from optimistix's RESULTS (see _STATUS): successful -> "converged";
nonlinear_max_steps_reached -> "max_iter"; nonlinear_divergence, nonfinite and lineax's
nonfinite_input -> "diverged"; lineax's singular, breakdown, conlim -> "line_search_failed" (the
step could not be computed); stagnation -> "stalled".  The message names the RESULTS item and
gives the first line of optimistix's text; ``optimistix_result`` holds the item's name.  The
returned theta is optimistix's (GaussNewton takes every step, so after a failure it may be far
worse than the start); only if it is not finite does the run end "diverged" with the best finite
iterate seen.
"""

from __future__ import annotations

import math
import time

import numpy as np

from liftnn.bench.peers.common import POS_INT, PeerSpec, choice, import_reason, number
from liftnn.errors import LiftnnError
from liftnn.solvers import result as R
from liftnn.solvers.result import Result

#: the per-step values AbstractGaussNewton.step passes to `verbose` that the history uses
_VERBOSE_KEYS = {"num_steps", "accepted_steps", "loss_this_step", "y"}

_STATUS = {
    "successful": R.CONVERGED,
    "nonlinear_max_steps_reached": R.MAX_ITER,
    "max_steps_reached": R.MAX_ITER,
    "nonlinear_divergence": R.DIVERGED,
    "nonfinite": R.DIVERGED,
    "nonfinite_input": R.DIVERGED,
    "singular": R.LINE_SEARCH_FAILED,
    "breakdown": R.LINE_SEARCH_FAILED,
    "conlim": R.LINE_SEARCH_FAILED,
    "stagnation": R.STALLED,
}


def validate(name, o, model, loss, weight_decay) -> None:
    """Checks before any work (the option values are already checked one by one)."""
    if o["rtol"] == 0 and o["atol"] == 0:
        raise LiftnnError(f"{name}: rtol and atol are both 0, so it could never stop before "
                          "max_steps; give one of them > 0")


def result_name(result) -> str:
    """The name of an optimistix.RESULTS item ("successful", "nonfinite", ...)."""
    import optimistix as optx

    for name in _STATUS:
        item = getattr(optx.RESULTS, name, None)
        if item is not None and bool(result == item):
            return name
    return "unknown"


def fit_optimistix(problem, params0, o, name, t0) -> Result:
    """optimistix-lm / optimistix-gn from params0 (module docstring)."""
    import jax
    import jax.numpy as jnp
    import optimistix as optx

    theta0 = jnp.asarray(problem.flatten(params0), jnp.float64)
    records: list[tuple[int, int, float, float]] = []  # (step, accepted so far, trial loss, time)
    best = {"loss": math.inf, "y": np.asarray(theta0)}

    def record(step, accepted, loss, y):
        loss = float(loss)
        records.append((int(step), int(accepted), loss, time.perf_counter() - t0))
        if math.isfinite(loss) and loss < best["loss"]:
            best["loss"], best["y"] = loss, np.array(y)

    def verbose(**kw):
        if not _VERBOSE_KEYS <= set(kw):  # another optimistix version: history falls back below
            return
        jax.debug.callback(record, kw["num_steps"][1], kw["accepted_steps"][1],
                           kw["loss_this_step"][1], kw["y"][1], ordered=True)

    norm = {"max": optx.max_norm, "rms": optx.rms_norm, "two": optx.two_norm}[o["norm"]]
    cls = optx.LevenbergMarquardt if name == "optimistix-lm" else optx.GaussNewton
    solver = cls(rtol=o["rtol"], atol=o["atol"], norm=norm, verbose=verbose)
    status = message = None
    try:
        sol = optx.least_squares(lambda y, args: problem.residual(y), solver, theta0,
                                 options={"jac": o["jac"]}, max_steps=o["max_steps"], throw=False)
        theta = np.asarray(sol.value, np.float64)
        steps = int(sol.stats["num_steps"])
        n_acc = getattr(sol.state, "num_accepted_steps", None)
        accepted = int(n_acc) if n_acc is not None else len(records)
        rname = result_name(sol.result)
        status = _STATUS.get(rname, R.STALLED)
        text = str(optx.RESULTS[sol.result]).strip().split("\n")[0] or "converged"
        message = f"optimistix {cls.__name__} ({rname}): {text}"
    except KeyboardInterrupt:
        theta, steps = best["y"], len(records)
        accepted = records[-1][1] if records else 0
        rname, status, message = "interrupted", R.INTERRUPTED, f"interrupted after {steps} steps"
    # one history entry per accepted step: step k's trial point was accepted iff the count of
    # accepted steps grew by the next step (by the final count for the last step)
    counts = [a for _, a, _, _ in records[1:]] + [accepted]
    history = []
    prev = 0
    for (k, _, loss, t), after in zip(records, counts):
        if after > prev:
            history.append({"iter": len(history), "loss": loss, "steps": k + 1, "time": t})
        prev = after
    if not history:  # no per-step values from this optimistix version: start and end only
        history = [{"iter": 0, "loss": float(problem.fun(theta0)), "steps": 0, "time": math.nan},
                   {"iter": max(accepted - 1, 0), "loss": float(problem.fun(jnp.asarray(theta))),
                    "steps": steps, "time": time.perf_counter() - t0}]
    if not np.all(np.isfinite(theta)):
        theta = best["y"]
        status = R.DIVERGED
        message += "; non-finite parameters, returned the best finite iterate"
    res = Result(params=problem.unflatten(jnp.asarray(theta)), nit=max(accepted - 1, 0),
                 nfev=steps, njev=steps, status=status, message=message, history=history,
                 optimistix_result=rname)
    res["cost"] = 0.5 * float(jnp.sum(problem.residual(jnp.asarray(theta)) ** 2))
    return res


HINT = "pip install 'liftnn[peers]' (or: pip install optimistix)"


def available() -> tuple[bool, str]:
    """optimistix is an optional extra."""
    why = import_reason("optimistix", HINT)
    return (False, why) if why else (True, "")


_TOL = number(0.0, strict=False)
OPTIONS = {
    "rtol": (1e-8, _TOL),
    "atol": (1e-8, _TOL),
    "max_steps": (1000, POS_INT),
    "norm": ("max", choice("max", "rms", "two")),
    "jac": ("fwd", choice("fwd", "bwd")),
}

PEERS: dict[str, PeerSpec] = {
    "optimistix-lm": PeerSpec(
        "optimistix-lm", "optimistix",
        "optimistix LevenbergMarquardt (least_squares) on single shooting, JAX",
        OPTIONS, ("mse", "sse"), fit_optimistix, validate=validate),
    "optimistix-gn": PeerSpec(
        "optimistix-gn", "optimistix",
        "optimistix GaussNewton (least_squares, unit steps) on single shooting, JAX",
        OPTIONS, ("mse", "sse"), fit_optimistix, validate=validate),
}
