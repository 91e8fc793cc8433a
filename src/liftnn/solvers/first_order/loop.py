"""The host-side driver of the compiled first-order loop: chunks, lanes, time budget, Ctrl-C,
callback, progress bar, and the per-run results (docs/solvers.md, "First-order methods")."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import jax
import numpy as np

from liftnn.errors import LiftnnError
from liftnn.progress import progress_bar
from liftnn.solvers import result as R
from liftnn.solvers.first_order import epoch as E
from liftnn.solvers.first_order.objective import Objective

_CHUNK_TARGET_S = 0.25
_FIRST_CHUNK = 32


def lanes_for(o: dict) -> int:
    """Runs vmapped together: `lanes`, or by default 4 when runs can stop early (patience, gtol)
    and 16 when they all run to max_iter (then no lane ever idles, and wider is cheaper per run)."""
    if o.get("lanes") is not None:
        return o["lanes"]
    early = (o["patience"] is not None and o["patience"] < o["max_iter"]) or o["gtol"] > 0
    return 4 if early else 16


def groups(idx: np.ndarray, L: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Split run indices into groups of L lanes: (real runs, lane indices padded to L).

    A short last group is padded with copies of its first run, whose results are discarded.
    """
    out = []
    for i in range(0, len(idx), L):
        g = idx[i:i + L]
        out.append((g, np.concatenate([g, np.full(L - len(g), g[0])])))
    return out


def put(S, rows: np.ndarray, lanes):
    """A copy of the host state S with S[rows] = lanes[:len(rows)] (swapped in as a whole, so a
    Ctrl-C never leaves a run half-updated)."""
    def put_one(a, b):
        a = a.copy()
        a[rows] = np.asarray(b)[: len(rows)]
        return a

    return jax.tree_util.tree_map(put_one, S, lanes)


@dataclass
class _Runs:
    """Host-side bookkeeping of K runs between chunks."""

    S: dict
    K: int
    segments: list = field(default_factory=list)  # per run: (records, t_begin, t_end) per chunk
    status: list = field(default_factory=list)    # per run: a status set on the host, or None
    message: list = field(default_factory=list)

    def stop_running(self, status: str, message) -> None:
        """Give every run still going `status` and message(i)."""
        for i in np.flatnonzero(self.S["status"] == E.RUNNING):
            self.status[i], self.message[i] = status, message(i)


def run(obj: Objective, method: str, theta0: np.ndarray, o: dict, data: tuple,
        t_start: float) -> list[dict]:
    """Train K runs (theta0: (K, P)) and return one dict of result fields per run.

    The runs are vmapped `lanes` at a time (L = min(K, lanes)): each round advances every running
    run by the same number of epochs, group after group, and the groups are re-formed from the
    runs still going, so stopped runs cost nothing after the chunk in which they stop.
    """
    K = int(theta0.shape[0])
    L = min(K, lanes_for(o))
    armijo = o.get("line_search") == "armijo"
    has_val = len(data) == 4
    blank_state, run_chunk = E.compiled(obj, method, armijo, o["batch_size"], has_val, o["chunk"])
    hp = {k: np.asarray(v, np.float64) for k, v in o["hyper"].items()}
    if armijo:
        hp["max_backtracks"] = np.asarray(o["max_backtracks"], np.int32)
    ctrl = {"max_iter": np.asarray(int(o["max_iter"]), np.int32),
            "patience": np.asarray(o["patience"] or 0, np.int32),
            "use_patience": np.asarray(o["patience"] is not None),
            "val_patience": np.asarray(o.get("val_patience") or 0, np.int32),
            "use_val_patience": np.asarray(has_val and o.get("val_patience") is not None),
            "min_delta": np.asarray(o["min_delta"], np.float64),
            "gtol": np.asarray(o["gtol"], np.float64)}
    key = np.asarray(o["shuffle_seed"], np.uint32)  # the PRNG key is built inside the jit

    def chunk(S, lanes, start, e0, n):
        out, recs, j = run_chunk(jax.tree_util.tree_map(lambda a: a[lanes], S), start, e0, n,
                                 hp, ctrl, data, key)
        j = int(j)  # waits for the chunk
        return jax.tree_util.tree_map(np.asarray, out), np.asarray(recs)[:j]

    runs = _initialise(chunk, blank_state(theta0[:L], hp, data), theta0, K, L)
    t_init = time.perf_counter() - t_start
    first = {"f": runs.S["f"].copy(), "g": np.max(np.abs(runs.S["g"]), axis=1, initial=0.0),
             "val": runs.S["mon"].copy()}
    if o["max_iter"] == 0:
        runs.status, runs.message = [R.MAX_ITER] * K, ["max_iter = 0 epochs"] * K
    _rounds(chunk, runs, L, o, method, t_start)
    wall = time.perf_counter() - t_start
    return collect(runs, first, t_init, o, has_val, wall)


def _initialise(chunk, template, theta0, K, L) -> _Runs:
    """C, grad and optimiser state at theta0, L runs at a time; LiftnnError if not finite."""
    S = jax.tree_util.tree_map(lambda a: np.zeros((K,) + a.shape[1:], a.dtype), template)
    S["theta"] = theta0
    for g, lanes in groups(np.arange(K), L):
        out, _ = chunk(S, lanes, True, 0, 0)
        S = put(S, g, out)
    f0, g0 = S["f"], np.max(np.abs(S["g"]), axis=1, initial=0.0)
    bad = np.flatnonzero(~np.isfinite(f0) | ~np.isfinite(g0))
    if bad.size:
        which = "" if K == 1 else f" (initialisation {int(bad[0])} of {K})"
        raise LiftnnError(f"the loss or its gradient is not finite at the initial point{which}: "
                          f"loss = {f0[bad[0]]!r}")
    return _Runs(S, K, [[] for _ in range(K)], [None] * K, [""] * K)


def _rounds(chunk, runs: _Runs, L: int, o: dict, method: str, t_start: float) -> None:
    """Advance the running runs chunk by chunk until all stop, max_iter, the budget, the callback
    or Ctrl-C; chunk lengths adapt to about _CHUNK_TARGET_S each."""
    max_iter, budget, K = int(o["max_iter"]), o["time_budget"], runs.K
    epoch, n = 0, min(o["chunk"], _FIRST_CHUNK)
    update = progress_bar(o["progress"], method, max_iter)
    try:
        while epoch < max_iter:
            active = np.flatnonzero(runs.S["status"] == E.RUNNING)
            if not active.size:
                break
            n_req = min(n, max_iter - epoch)
            t_round = time.perf_counter()
            out_of_time = _one_round(chunk, runs, active, L, epoch, n_req, budget, t_start)
            epoch += n_req
            running = runs.S["status"] == E.RUNNING
            update(epoch, f"best loss {float(np.min(runs.S['best_f'])):.4g}, "
                          f"{int((~running).sum())}/{K} runs stopped")
            if out_of_time:
                runs.stop_running(R.MAX_ITER, lambda i: (
                    f"time budget of {budget:g} s reached after {int(runs.S['nit'][i])} epochs"))
                break
            if _callback_stops(o["callback"], runs, epoch, running):
                break
            n = _next_chunk(n, n_req, o, t_round, t_start, len(groups(active, L)), len(active), L)
    except KeyboardInterrupt:
        runs.stop_running(R.INTERRUPTED, lambda i: (
            f"interrupted (KeyboardInterrupt) after {int(runs.S['nit'][i])} epochs; returned the "
            f"best iterate so far"))
    finally:
        update(None)


def _one_round(chunk, runs: _Runs, active, L, epoch, n_req, budget, t_start) -> bool:
    """n_req epochs for every active run, group after group; True when the budget ran out."""
    for g, lanes in groups(active, L):
        t_a = time.perf_counter()
        out, recs = chunk(runs.S, lanes, False, epoch, n_req)
        t_b = time.perf_counter()
        runs.S = put(runs.S, g, out)
        for lane, r in enumerate(g):
            runs.segments[r].append((recs[:, lane], t_a - t_start, t_b - t_start))
        if budget is not None and t_b - t_start >= budget:
            return True
    return False


def _callback_stops(callback, runs: _Runs, epoch: int, running) -> bool:
    """Call callback(epoch, theta, loss) (one run: its vectors; K runs: (K, .) arrays); True
    from it stops every running run with status interrupted."""
    if callback is None or not running.any():
        return False
    th, fl = runs.S["theta"], runs.S["f"]
    one = runs.K == 1
    if callback(epoch, th[0] if one else th, fl[0] if one else fl) is not True:
        return False
    runs.stop_running(R.INTERRUPTED, lambda i: (
        f"stopped by the callback after {epoch} epochs; returned the best iterate so far"))
    return True


def _next_chunk(n, n_req, o, t_round, t_start, n_groups, n_active, L) -> int:
    """The next chunk length: about _CHUNK_TARGET_S per chunk (the first included compiling),
    at most 4x the last and `chunk`, and no longer than the time budget allows."""
    t_now = time.perf_counter()
    per_epoch = (t_now - t_round) / max(n_req * n_groups, 1)
    grow = 4 * n if n == _FIRST_CHUNK else int(_CHUNK_TARGET_S / max(per_epoch, 1e-9))
    n = max(1, min(o["chunk"], grow, 4 * n))
    if o["time_budget"] is not None:
        left = (o["time_budget"] - (t_now - t_start)) / max(per_epoch * n_active / L, 1e-9)
        n = max(1, min(n, int(left) + 1))
    return n


# --- results ---------------------------------------------------------------------------------


def _history(segments, first, i, t_init, has_val) -> list[dict]:
    """Run i's history: iter 0 at the start, then one dict per accepted epoch.

    The wall time of an epoch is known at the boundaries of the chunk that ran it and linearly
    interpolated over the epochs inside the chunk.
    """
    col = {name: k for k, name in enumerate(E.REC)}
    hist = [{"iter": 0, "loss": float(first["f"][i]), "grad_norm": float(first["g"][i]),
             "step": 0.0, "nfev": 1, "njev": 1, "nhev": 0, "time": t_init}]
    if has_val:
        hist[0]["val_loss"] = float(first["val"][i])
    if not segments:
        return hist
    rec = np.concatenate([r for r, _, _ in segments])
    times = np.concatenate([np.linspace(ta, tb, len(r) + 1)[1:] for r, ta, tb in segments])
    rows = np.flatnonzero(rec[:, col["valid"]] > 0)
    rec, times = rec[rows], times[rows].tolist()
    loss, gn, step, vals = (rec[:, col[k]].tolist() for k in ("loss", "grad_norm", "step", "val"))
    nf, nj = (rec[:, col[k]].astype(np.int64).tolist() for k in ("nfev", "njev"))
    for r in range(len(rows)):
        h = {"iter": r + 1, "loss": loss[r], "grad_norm": gn[r], "step": step[r],
             "nfev": nf[r], "njev": nj[r], "nhev": 0, "time": times[r]}
        if has_val:
            h["val_loss"] = vals[r]
        hist.append(h)
    return hist


# The status and message template of each stop code; _status_message fills in the numbers.
_STOPS = {
    E.CONV: (R.CONVERGED, "||grad||_inf = {gmax:.3g} <= gtol = {gtol:g}"),
    E.STALL: (R.STALLED, ("no improvement of the training loss by more than min_delta = "
                          "{min_delta:g} in {patience} epochs (patience)")),
    E.VSTALL: (R.STALLED, ("no improvement of the validation loss in {val_patience} epochs "
                           "(val_patience); returned the iterate with the lowest validation loss")),
    E.MAXIT: (R.MAX_ITER, "max_iter = {max_iter} epochs reached"),
    E.DIV: (R.DIVERGED, ("the loss became non-finite in epoch {epoch} (step {lr0:g}); returned "
                         "the best finite iterate (x_last is the last finite one)")),
    E.LSF: (R.LINE_SEARCH_FAILED, ("Armijo backtracking found no sufficient decrease in "
                                   "{max_backtracks} halvings of lr = {lr0:g} in epoch {epoch}")),
}


def _status_message(code: int, nit: int, g, o: dict) -> tuple[str, str]:
    """The string status and message of a run the compiled loop stopped with `code`."""
    if code not in _STOPS:
        return R.INTERRUPTED, "stopped before the run finished"  # pragma: no cover
    status, template = _STOPS[code]
    gmax = float(np.max(np.abs(g), initial=0.0)) if code == E.CONV else math.nan
    return status, template.format(gmax=gmax, lr0=o["hyper"]["lr"], epoch=nit + 1, **o)


def collect(runs: _Runs, first, t_init, o, has_val, wall) -> list[dict]:
    """Per-run result fields (no time_s: the front door sets it) from the final host state.

    x / fun: the best iterate (lowest training objective, or with validation data the lowest
    validation loss, then also val_loss = that loss); x_last / fun_last: the last accepted one.
    """
    st, out = runs.S, []
    for i in range(runs.K):
        nit = int(st["nit"][i])
        if runs.status[i] is not None:
            status, message = runs.status[i], runs.message[i]
        else:
            status, message = _status_message(int(st["status"][i]), nit, st["g"][i], o)
        out.append({
            "x": st["best"][i], "fun": float(st["best_f"][i]), "x_last": st["theta"][i],
            "fun_last": float(st["f"][i]), "nit": nit, "nfev": int(st["nfev"][i]),
            "njev": int(st["njev"][i]), "nhev": 0, "status": status,
            "success": status in (R.CONVERGED, R.STALLED), "message": message,
            "history": _history(runs.segments[i], first, i, t_init, has_val),
            "batch_time_s": wall,
        })
        if has_val:
            out[-1]["val_loss"] = float(st["vbest"][i])
    return out
