"""Stopping rules of the lifted ALM, as pure functions of a small per-seed state.

After each outer iteration k every active seed gives an `Observation` (the training loss C of its
simulated network, the scaled ||grad L_beta||_inf, ||h||_inf, whether the inner line search
failed, whether everything was finite).  `judge` updates the `Watch` (the counters below) and
returns a status string and message per seed ("" while it goes on).  Rules, first match wins
(docs/lifted.md, "Stopping rules"):

1. non-finite values in the inner solve -> "diverged";
2. "kkt" (stop in kkt, auto): Evens' eps-KKT point, grad <= eps_kkt and ||h||_inf <= eps_kkt;
3. "thesis" (stop = thesis, k > 1): (1 + thesis_eps) C_k > C_{k-1};
4. settled (stop in stall, auto): for `patience` outer iterations the loss did not improve on the
   best by a factor (1 - thesis_eps) while staying within near_best times the best and
   ||h||_inf <= settle_h; counted only once the loss has improved on the start at least once
   (`moved`) -> "converged";
5. give_up (stop in stall, auto): `give_up` outer iterations (after `moved`) that improved
   neither the best loss nor ||h||_inf -> "stalled";
6. two inner line-search failures in a row -> "line_search_failed".

With validation data (`val_loss` in the Observation), the returned iterate is the one with the
lowest validation loss, and a 7th rule stops a seed whose best validation loss has not improved
for `val_patience` outer iterations, counted once the simulated training loss has improved on
the start -> "converged".  `budget` covers max_outer and time_budget.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from liftnn.solvers import result as R

STOPS = ("auto", "kkt", "thesis", "stall", "none")


class StopSettings(NamedTuple):
    stop: str = "auto"
    eps_kkt: float = 1e-3
    thesis_eps: float = 1e-2
    patience: int = 3
    near_best: float = 1.5
    give_up: int = 6
    settle_h: float = 1e-2
    val_patience: int = 5
    max_ls_failures: int = 2


class Watch(NamedTuple):
    """Per-seed (K,) counters of the stopping rules."""

    best_loss: np.ndarray  # lowest training loss so far (the start's included)
    prev_loss: np.ndarray  # training loss of the last finite iterate
    moved: np.ndarray  # the loss has improved on the start at least once
    stall: np.ndarray  # consecutive settled iterations
    since_best: np.ndarray  # iterations improving neither the best loss nor ||h||_inf
    ls_fail: np.ndarray  # consecutive inner line-search failures
    best_val: np.ndarray  # lowest validation loss so far (inf without validation data)
    since_val: np.ndarray  # iterations since best_val last improved


class Observation(NamedTuple):
    """What outer iteration k measured, per seed (K,)."""

    loss: np.ndarray  # training loss C of the simulated network
    grad_norm: np.ndarray  # scaled ||grad L_beta||_inf at the inner solve's end
    h_inf: np.ndarray  # ||h||_inf
    h_prev: np.ndarray  # ||h||_inf of the last accepted iterate (before this one)
    ls_failed: np.ndarray  # the inner line search failed
    active: np.ndarray  # the seed had not stopped before this iteration
    finite: np.ndarray  # loss, L_beta and ||h||_inf finite
    val_loss: np.ndarray | None = None  # validation loss of the simulated network, if any


class Verdict(NamedTuple):
    watch: Watch
    better: np.ndarray  # this iterate becomes the returned one (lowest training or validation loss)
    status: np.ndarray  # (K,) str: "" = go on
    message: np.ndarray  # (K,) str


def start(f0, val0=None) -> Watch:
    """The counters at the start (f0: (K,) training losses; val0: validation losses or None)."""
    f0 = np.asarray(f0, float).copy()
    K = f0.shape[0]
    z = np.zeros(K, int)
    best_val = np.full(K, np.inf) if val0 is None else np.asarray(val0, float).copy()
    return Watch(f0, f0.copy(), np.zeros(K, bool), z, z.copy(), z.copy(), best_val, z.copy())


def _update(w: Watch, o: Observation, s: StopSettings) -> tuple[Watch, np.ndarray]:
    live = o.active & o.finite
    improved = live & (o.loss < (1.0 - s.thesis_eps) * w.best_loss)
    moved = w.moved | improved  # the start is not a place to settle in: count only after
    settled = live & moved & ~improved & (o.loss <= s.near_best * w.best_loss) & (o.h_inf <= s.settle_h)
    h_down = o.h_inf < o.h_prev
    if o.val_loss is None:
        better = live & (o.loss < w.best_loss)
        best_val, since_val = w.best_val, w.since_val
    else:
        better = live & (o.val_loss < w.best_val)
        best_val = np.where(better, o.val_loss, w.best_val)
        # as for give_up, the count starts once the simulated loss has improved on the start:
        # the first outer iterations trade loss for feasibility (validation loss rises with it)
        since_val = np.where(better | ~moved, 0, w.since_val + o.active)
    return Watch(
        best_loss=np.where(live & (o.loss < w.best_loss), o.loss, w.best_loss),
        prev_loss=np.where(live, o.loss, w.prev_loss),
        moved=moved,
        stall=np.where(improved | ~settled, 0, w.stall + 1),
        since_best=np.where(improved | ~moved, 0, w.since_best + (o.active & ~h_down)),
        ls_fail=np.where(o.active & o.ls_failed, w.ls_fail + 1, np.where(o.active, 0, w.ls_fail)),
        best_val=best_val, since_val=since_val,
    ), better


def _rule(w: Watch, o: Observation, prev_loss: float, i: int, k: int, s: StopSettings):
    """(status, message) of the first rule that fires for seed i, or ("", "")."""
    stall_rules = s.stop in ("stall", "auto")
    if not o.finite[i]:
        return R.DIVERGED, "non-finite values in the inner solve; returned the best feasible iterate"
    if s.stop in ("kkt", "auto") and o.grad_norm[i] <= s.eps_kkt and o.h_inf[i] <= s.eps_kkt:
        return R.CONVERGED, f"eps-KKT point (eps = {s.eps_kkt:g})"
    if s.stop == "thesis" and k > 1 and (1.0 + s.thesis_eps) * o.loss[i] > prev_loss:
        return R.CONVERGED, f"thesis rule (1 + {s.thesis_eps:g}) C_k+1 > C_k"
    if stall_rules and w.stall[i] >= s.patience:
        return R.CONVERGED, (f"settled: no {s.thesis_eps:g} relative improvement of the simulated "
                             f"loss in {s.patience} outer iterations")
    if stall_rules and w.since_best[i] >= s.give_up:
        return R.STALLED, (f"the best simulated loss did not improve by {s.thesis_eps:g} in "
                           f"{s.give_up} outer iterations (the iterate moved away from it); "
                           f"returned the best")
    if w.ls_fail[i] >= s.max_ls_failures:
        return R.LINE_SEARCH_FAILED, "the Gauss-Newton line search failed twice in a row"
    if o.val_loss is not None and w.since_val[i] >= s.val_patience:
        return R.CONVERGED, (f"early stop: the validation loss did not improve in {s.val_patience} "
                             f"outer iterations; returned the iterate with the lowest validation loss")
    return "", ""


def judge(w: Watch, o: Observation, k: int, s: StopSettings) -> Verdict:
    """Update the counters with outer iteration k's observation and apply the rules per active
    seed (inactive seeds get "")."""
    new, better = _update(w, o, s)
    K = len(o.loss)
    status = np.array([""] * K, dtype=object)
    message = np.array([""] * K, dtype=object)
    for i in np.flatnonzero(o.active):
        status[i], message[i] = _rule(new, o, w.prev_loss[i], i, k, s)
    return Verdict(new, better, status, message)


def budget(k: int, elapsed: float, max_outer: int, time_budget: float | None) -> str:
    """Message when the whole run must end after outer iteration k ("" otherwise): the time
    budget is checked first, then max_outer."""
    if time_budget is not None and elapsed > time_budget:
        return f"time budget of {time_budget:g} s reached"
    if k >= max_outer:
        return f"max_outer = {max_outer} outer iterations reached"
    return ""


INTERRUPTED_MESSAGE = "interrupted; returned the best feasible iterate so far"
