"""Nonlinear conjugate gradient ("cg"): Fletcher-Reeves and Polak-Ribiere+ with restarts.

Seed 003 ("Variations of second order methods"): conjugate gradient does not use H explicitly but
needs a line search and works in batch mode; seed 004 lists CG among the optimisers that cope with
ill-conditioned Hessians.  Nocedal & Wright Algorithm 5.4 and section 5.2:

    d_0 = -g_0,   x_{k+1} = x_k + a_k d_k   (a_k: strong Wolfe line search, seed 001's mu, eta),
    d_{k+1} = -g_{k+1} + beta_{k+1} d_k,  with
    "fr"  (Fletcher-Reeves):      beta = g_{k+1}^T g_{k+1} / g_k^T g_k
    "pr+" (Polak-Ribiere+):       beta = max(0, g_{k+1}^T (g_{k+1} - g_k) / g_k^T g_k)

Restarts (d = -g): every `restart` iterations (default n, the dimension: after n steps the
conjugacy of a quadratic is exhausted) and whenever d_{k+1} is not a descent direction
(g^T d >= 0).  The default eta = 0.1 < 1/2 makes every Fletcher-Reeves direction a descent
direction (N&W Lemma 5.6).  The first trial step of each line search is
min(1, 1.01 * 2 (f_k - f_{k-1}) / (g_k^T d_k)), the step that would reproduce the last decrease
on a quadratic (N&W eq. 3.60; scipy's choice), with f_{-1} = f_0 + ||g_0|| / 2.

Options (besides the common ones): variant = "pr+" | "fr", restart = None (n) or an integer,
mu = 1e-4, eta = 0.1, max_ls = 50.  History entries: "cg_beta" (the beta that built the next
direction; 0 at a periodic restart) and "restart" (this iteration's direction was reset to -g
because it was not a descent direction); the Result counts all restarts in "restarts".
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from liftnn._validate import choice, integer
from liftnn.solvers import result as R
from liftnn.solvers.driver import Iterate, Step
from liftnn.solvers.linesearch import check_wolfe_parameters, strong_wolfe

CG_DEFAULTS = {"variant": "pr+", "restart": None, "mu": 1e-4, "eta": 0.1, "max_ls": 50,
               "val_patience": 50}  # cheap iterations: a longer wait on the validation loss
VARIANTS = ("pr+", "fr")


def validate(o: dict) -> dict:
    """Check the CG options in place (LiftnnError naming a bad one)."""
    choice(o, "variant", VARIANTS)
    integer(o, "restart", 1, allow_none=True)
    o["mu"], o["eta"] = check_wolfe_parameters(o["mu"], o["eta"])
    integer(o, "max_ls", 1)
    return o


def cg_beta(variant: str, g_new: np.ndarray, g: np.ndarray) -> float:
    """beta_{k+1} of Fletcher-Reeves ("fr") or Polak-Ribiere+ ("pr+") (module docstring)."""
    gg = float(g @ g)
    if gg == 0.0:
        return 0.0
    if variant == "fr":
        return float(g_new @ g_new) / gg
    return max(0.0, float(g_new @ (g_new - g)) / gg)


class CGState(NamedTuple):
    d: np.ndarray
    f_prev: float
    since_restart: int
    restarts: int


def make_cg(ev, o: dict):
    """(init, step, summary) of nonlinear CG (module docstring)."""
    variant = o["variant"]

    def init(it: Iterate) -> CGState:
        return CGState(-it.g, it.f + 0.5 * float(np.linalg.norm(it.g)), 0, 0)

    def step(state: CGState, it: Iterate):
        d, restarts = state.d, state.restarts
        restart_every = o["restart"] or it.x.size
        info = {"restart": False}
        slope = float(it.g @ d)
        if not slope < 0.0:  # loss of descent: restart along steepest descent
            d = -it.g
            slope = -float(it.g @ it.g)
            restarts += 1
            info["restart"] = True
        step0 = 1.01 * 2.0 * (it.f - state.f_prev) / slope
        step0 = min(1.0, step0) if math.isfinite(step0) and step0 > 0 else 1.0
        ls = strong_wolfe(ev.fg, it.x, d, it.f, it.g, step0=step0, mu=o["mu"], eta=o["eta"],
                          max_evals=o["max_ls"])
        if ls.unbounded:
            return state, Step(None, ls.step, R.DIVERGED, f"the loss became -inf ({ls.message})")
        if not ls.success:
            return state, Step(None, ls.step, R.LINE_SEARCH_FAILED, ls.message)
        new = Iterate(ls.x, ls.f, ls.g)
        since = state.since_restart + 1
        if since >= restart_every:
            beta, since = 0.0, 0
            restarts += 1
        else:
            beta = cg_beta(variant, new.g, it.g)
        info["cg_beta"] = beta
        d_new = -new.g + beta * d
        return CGState(d_new, it.f, since, restarts), Step(new, ls.step, info=info)

    return init, step, lambda state: {"restarts": state.restarts}
