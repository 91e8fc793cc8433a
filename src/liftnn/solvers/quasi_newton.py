"""Quasi-Newton methods: "bfgs" (dense inverse-Hessian update, seed 001) and "lbfgs".

Both take the direction p_k = -B_k g_k with B_k an approximation of the *inverse* Hessian and a
strong Wolfe line search (liftnn.solvers.linesearch, seed 001's mu and eta), then update B from

    s_k = x_{k+1} - x_k,   y_k = g_{k+1} - g_k,   rho_k = 1 / (y_k^T s_k).

"bfgs" (seed 001, "Solution of a single-layer neural network problem"; Nocedal & Wright eq. 6.17):

    B_{k+1} = (I - rho s y^T) B_k (I - rho y s^T) + rho s s^T,        B_0 = I,

evaluated in O(n^2) as B - rho (s (By)^T + (By) s^T) + (rho^2 y^T B y + rho) s s^T (the same
matrix, multiplied out).  The update is skipped (B kept, the skip recorded in the history as
``update_skipped`` and counted in ``skipped_updates``) when y^T s <= 0: the curvature condition
of the Wolfe search guarantees y^T s > 0 in exact arithmetic, so this only guards rounding.

"lbfgs" (Nocedal & Wright Algorithm 7.4, the two-loop recursion): B_k is never formed; the last
`memory` pairs (s_i, y_i) and the initial scaling B_k^0 = gamma_k I, gamma_k = s^T y / y^T y of
the newest pair (eq. 7.20), give B_k g in O(memory * n).  Pairs with y^T s <= 0 are skipped.

A ReLU network's loss has kinks, across which no step satisfies the curvature condition: the
searches take the zoom's sufficient-decrease step there (strong_wolfe's accept_kink), retry a
failed search once along -g, and stop "stalled" where neither lowers f beyond rounding
(docs/solvers.md "Kinks").

The first trial step of the first iteration is min(1, 1.01 / ||g_0||_2) (B_0 = I carries no
scale; this is scipy's choice from the assumed previous decrease ||g_0|| / 2); afterwards the
quasi-Newton step a = 1 is tried first.

Options (besides the common ones of liftnn.solvers.driver): mu = 1e-4, eta = 0.9 (strong Wolfe,
0 < mu < eta < 1; seed 001 uses mu = 1e-4, eta = 0.1), max_ls = 50 (evaluations per line
search), and for lbfgs memory = 10.
"""

from __future__ import annotations

from collections import deque
from typing import NamedTuple

import numpy as np

from liftnn._validate import integer
from liftnn.solvers import result as R
from liftnn.solvers.driver import Iterate, Step
from liftnn.solvers.linesearch import check_wolfe_parameters, lowers_beyond_rounding, strong_wolfe

# val_patience 50: cheap iterations, a longer wait on the validation loss (driver default: 10)
BFGS_DEFAULTS = {"mu": 1e-4, "eta": 0.9, "max_ls": 50, "val_patience": 50}
LBFGS_DEFAULTS = {"memory": 10, "mu": 1e-4, "eta": 0.9, "max_ls": 50, "val_patience": 50}


def validate(method: str, o: dict) -> dict:
    """Check the quasi-Newton options in place (LiftnnError naming a bad one)."""
    o["mu"], o["eta"] = check_wolfe_parameters(o["mu"], o["eta"])
    integer(o, "max_ls", 1)
    if method == "lbfgs":
        integer(o, "memory", 1)
    return o


def _first_step(g: np.ndarray) -> float:
    gn = float(np.linalg.norm(g))
    return min(1.0, 1.01 / gn) if gn > 0 else 1.0


def _search(ev, it: Iterate, p: np.ndarray, first: bool, o: dict):
    """The step both methods share: p itself, or -g when p is not a descent direction (a restart:
    B lost positive definiteness to rounding); a strong Wolfe search along it (accepting a
    sufficient-decrease step at a kink, linesearch.strong_wolfe's accept_kink); the pair (s, y).
    Where the search along p fails, it is tried once more along -g (a restart, as L-BFGS-B
    does); where that fails too without lowering f beyond rounding, the run has stalled (x is at
    a kink of the loss, or a minimiser to the precision of f).

    Returns (restarted, Step, pair): Step.it is None when the search failed or found the loss
    unbounded; pair = (s, y, y^T s), or None when y^T s <= 0 (the update is skipped).
    """
    restarted = not float(p @ it.g) < 0.0
    if restarted:
        p = -it.g
    step0 = _first_step(it.g) if first or restarted else 1.0
    ls = _wolfe(ev, it, p, step0, o)
    if not (ls.success or ls.unbounded or restarted):
        restarted = True
        ls = _wolfe(ev, it, -it.g, _first_step(it.g), o)
    info = {"update_skipped": False}
    if ls.unbounded:
        return restarted, Step(None, ls.step, R.DIVERGED, f"the loss became -inf ({ls.message})",
                               info), None
    if not ls.success:
        if not lowers_beyond_rounding(it.f, ls.f):
            return restarted, Step(None, ls.step, R.STALLED, (
                f"no step along the quasi-Newton direction or along -g lowers the loss "
                f"beyond rounding (||g||_inf = {float(np.max(np.abs(it.g))):.3g}): a kink of the "
                f"loss (ReLU) or a minimiser to the precision of f ({ls.message})"), info), None
        return restarted, Step(None, ls.step, R.LINE_SEARCH_FAILED, ls.message, info), None
    new = Iterate(ls.x, ls.f, ls.g)
    s, y = new.x - it.x, new.g - it.g
    ys = float(y @ s)
    pair = (s, y, ys) if ys > 0.0 and np.isfinite(1.0 / ys) else None
    info["update_skipped"] = pair is None
    if restarted:
        info["restart"] = True
    if ls.kink:
        info["kink"] = True
    return restarted, Step(new, ls.step, info=info), pair


def _wolfe(ev, it: Iterate, p: np.ndarray, step0: float, o: dict):
    return strong_wolfe(ev.fg, it.x, p, it.f, it.g, step0=step0, mu=o["mu"], eta=o["eta"],
                        max_evals=o["max_ls"], accept_kink=True)


class BFGSState(NamedTuple):
    B: np.ndarray   # inverse-Hessian approximation (n, n)
    first: bool
    skipped: int


def bfgs_update(B: np.ndarray, s: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Seed 001's inverse update (I - rho s y^T) B (I - rho y s^T) + rho s s^T, rho = 1/(y^T s),
    in O(n^2).  B: (n, n) symmetric; s, y: (n,) with y^T s > 0."""
    rho = 1.0 / float(y @ s)
    By = B @ y
    return (B - rho * (np.outer(s, By) + np.outer(By, s))
            + (rho * rho * float(y @ By) + rho) * np.outer(s, s))


def make_bfgs(ev, o: dict):
    """(init, step, summary) of dense BFGS with strong Wolfe (module docstring)."""

    def init(it: Iterate) -> BFGSState:
        return BFGSState(np.eye(it.x.size), True, 0)

    def step(state: BFGSState, it: Iterate):
        restarted, st, pair = _search(ev, it, -state.B @ it.g, state.first, o)
        B = np.eye(it.x.size) if restarted else state.B
        if st.it is None:
            return state._replace(B=B), st
        if pair is None:
            return BFGSState(B, False, state.skipped + 1), st
        return BFGSState(bfgs_update(B, pair[0], pair[1]), False, state.skipped), st

    return init, step, lambda state: {"skipped_updates": state.skipped}


class LBFGSState(NamedTuple):
    pairs: deque     # (s, y, rho), newest last
    first: bool
    skipped: int


def two_loop(g: np.ndarray, pairs) -> np.ndarray:
    """B_k g by the L-BFGS two-loop recursion (Nocedal & Wright Algorithm 7.4).

    pairs: (s_i, y_i, rho_i) oldest first; B_k^0 = gamma I, gamma = s^T y / y^T y (newest pair).
    """
    q = np.array(g, dtype=np.float64)
    alphas = []
    for s, y, rho in reversed(pairs):
        a = rho * float(s @ q)
        alphas.append(a)
        q -= a * y
    if pairs:
        s, y, _ = pairs[-1]
        q *= float(s @ y) / float(y @ y)
    for (s, y, rho), a in zip(pairs, reversed(alphas)):
        b = rho * float(y @ q)
        q += (a - b) * s
    return q


def make_lbfgs(ev, o: dict):
    """(init, step, summary) of L-BFGS with strong Wolfe (module docstring)."""
    memory = o["memory"]

    def init(it: Iterate) -> LBFGSState:
        return LBFGSState(deque(maxlen=memory), True, 0)

    def step(state: LBFGSState, it: Iterate):
        restarted, st, pair = _search(ev, it, -two_loop(it.g, state.pairs), state.first, o)
        if restarted:
            state.pairs.clear()
        if st.it is None:
            return state, st
        if pair is None:
            return LBFGSState(state.pairs, False, state.skipped + 1), st
        s, y, ys = pair
        state.pairs.append((s, y, 1.0 / ys))
        return LBFGSState(state.pairs, False, state.skipped), st

    return init, step, lambda state: {"skipped_updates": state.skipped}


__all__ = ["BFGS_DEFAULTS", "LBFGS_DEFAULTS", "bfgs_update", "make_bfgs", "make_lbfgs",
           "two_loop", "validate"]
