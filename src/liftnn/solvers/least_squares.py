"""Nonlinear least squares on any residual r: (n,) -> (m,): "gn" (Gauss-Newton with a line search)
and "lm" (Levenberg-Marquardt with MATLAB trainlm's rules).

Both minimise the cost C(x) = 1/2 ||r(x)||^2, with gradient g = J^T r and the Gauss-Newton
approximation J^T J of the Hessian (seed 003: "Gauss-Newton: approximate H using the square
Jacobian ... works only for mean-squared error loss functions"; "Levenberg-Marquardt: extends
Gauss-Newton to include a regularization parameter", the regularised H + alpha I of "On the
Hessian H").  J = dr/dx comes from jax.jacfwd (n <= m) or jax.jacrev (m < n).  For networks they
run on the single-shooting residuals of liftnn.problem.TrainingProblem.residual.

"gn": d = argmin ||J d + r|| (minimum-norm solution, numpy.linalg.lstsq, i.e. the SVD with
singular values below rcond * s_max dropped), a descent direction whenever J^T r != 0
(g^T d = -||P_J r||^2); then Armijo backtracking from a = 1 (or strong Wolfe) on C.

Where the Gauss-Newton model is poor (J^T J nearly singular: the unit step overshoots by many
orders and the line search keeps only a sliver of it) gn can creep without progress; after
`stall_iters` (10) iterations in a row that each lowered the cost by less than 1e-12 of itself it
ends with status "stalled" at the best iterate instead of running to max_iter.

"lm" (Marquardt 1963; MATLAB trainlm):

    d(mu) = -(J^T J + mu * mu_scale * I)^{-1} J^T r
    start with mu = 1e-3; at each iteration try d(mu): if C(x + d) < C(x) accept the step and set
    mu <- mu * mu_dec (0.1); otherwise mu <- mu * mu_inc (10) and try again; stop (status
    "stalled") when mu > mu_max (1e10): no step of any length reduces C any more.

The damped systems of one iteration share one thin SVD J = U S V^T:
d(mu) = -V diag(s / (s^2 + mu mu_scale)) U^T r, so each extra trial costs O(n min(m, n)) and one
residual evaluation.  mu_scale = 1 for a plain residual; liftnn.solvers.network sets it so that mu
is trainlm's mu for the unscaled network errors.  mu never drops below mu_min = 1e-20 (trainlm has
no floor; below it the step is Gauss-Newton's to rounding, and the floor saves the long climb back
after many successes).  Singular values below rcond * s_max are dropped as in lstsq.

Counting: nfev = residual evaluations (line-search / LM trials), njev = Jacobian evaluations (one
per accepted iterate; its residual comes with it and is not counted again).  History "step" is the
line-search step a for gn and ||d||_2 for lm; lm also records "mu" (after the update) and
"trials" (residual evaluations in the iteration).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from liftnn._validate import integer, number
from liftnn.solvers import result as R
from liftnn.solvers.driver import Iterate, Step
from liftnn.solvers.newton import line_search_step, validate_line_search

GN_DEFAULTS = {"line_search": "armijo", "mu": 1e-4, "eta": 0.9, "shrink": 0.5, "max_ls": 50,
               "rcond": None, "stall_iters": 10}
#: a gn iteration whose cost decrease is below this fraction of the cost made no real progress
GN_NEGLIGIBLE = 1e-12
LM_DEFAULTS = {"mu": 1e-3, "mu_dec": 0.1, "mu_inc": 10.0, "mu_max": 1e10, "mu_min": 1e-20,
               "mu_scale": 1.0, "rcond": None}


def validate(method: str, o: dict) -> dict:
    """Check the gn / lm options in place (LiftnnError naming a bad one)."""
    if o["rcond"] is not None:
        number(o, "rcond", 0.0, 1.0, hi_open=True)
    if method == "gn":
        integer(o, "stall_iters", 1)
        return validate_line_search(o)
    number(o, "mu", 0.0, lo_open=True)
    number(o, "mu_dec", 0.0, 1.0, lo_open=True, hi_open=True)
    number(o, "mu_inc", 1.0, lo_open=True)
    number(o, "mu_max", o["mu"], lo_open=True)
    number(o, "mu_min", 0.0, o["mu"])
    number(o, "mu_scale", 0.0, lo_open=True)
    return o


def _svd(J: np.ndarray, rcond: float | None):
    """Thin SVD of J with singular values below rcond * s_max (default max(m, n) * eps, as
    numpy.linalg.lstsq) set to zero."""
    U, s, Vt = np.linalg.svd(J, full_matrices=False)
    cut = (max(J.shape) * np.finfo(np.float64).eps if rcond is None else rcond) * (
        s[0] if s.size else 0.0)
    return U, np.where(s > cut, s, 0.0), Vt


def gauss_newton_direction(J: np.ndarray, r: np.ndarray, rcond: float | None = None):
    """Minimum-norm solution d of min ||J d + r||_2 (J: (m, n), r: (m,)); returns (d, rank)."""
    d, _, rank, _ = np.linalg.lstsq(J, -r, rcond=rcond)
    return d, int(rank)


def make_gn(ev, o: dict, direction=None, name: str = "Gauss-Newton",
            flat: str = "J^T r is at rounding level", poor: str = "J^T J nearly singular"):
    """(init, step, summary) of Gauss-Newton with a line search (module docstring).

    direction(it) -> (d, rank): the (minimum-norm) Gauss-Newton direction at iterate `it`
    (default: gauss_newton_direction on the residual's J and r; liftnn.solvers.ggn passes the
    generalised one); name, flat, poor: the words of the stop messages."""
    if direction is None:
        def direction(it):
            return gauss_newton_direction(it.J, it.r, o["rcond"])

    class GNState(NamedTuple):
        min_rank: int  # smallest rank of the Gauss-Newton matrix seen, 0 before the first
        idle: int  # iterations in a row whose cost decrease was negligible

    def init(it: Iterate) -> GNState:
        return GNState(0, 0)

    def step(state: GNState, it: Iterate):
        d, rank = direction(it)
        min_rank = rank if state.min_rank == 0 else min(state.min_rank, rank)
        info = {"rank": rank}
        if not (np.all(np.isfinite(d)) and float(it.g @ d) < 0.0):
            return GNState(min_rank, state.idle), Step(
                None, 0.0, R.STALLED, f"the {name} direction is not a descent direction: "
                f"{flat}", info)
        st = line_search_step(ev, it, d, o, info)
        idle = 0
        if st.it is not None and it.f - st.it.f <= GN_NEGLIGIBLE * abs(it.f):
            idle = state.idle + 1
            if idle >= o["stall_iters"]:
                st = Step(st.it, st.step, R.STALLED,
                          f"no progress: the cost fell by less than {GN_NEGLIGIBLE:g} of itself "
                          f"in {idle} iterations in a row (last step length {st.step:.3g}); the "
                          f"{name} direction is poor here ({poor}, rank {rank}): lm's damping "
                          f"is the remedy", info)
        return GNState(min_rank, idle), st

    return init, step, lambda state: {"min_rank": state.min_rank}


class LMState(NamedTuple):
    mu: float


def make_lm(ev, o: dict):
    """(init, step, summary) of Levenberg-Marquardt with trainlm's mu rules (module docstring)."""
    mu_dec, mu_inc, mu_max, mu_min = o["mu_dec"], o["mu_inc"], o["mu_max"], o["mu_min"]
    scale = o["mu_scale"]

    def init(it: Iterate) -> LMState:
        return LMState(o["mu"])

    def step(state: LMState, it: Iterate):
        U, s, Vt = _svd(it.J, o["rcond"])
        Utr = U.T @ it.r
        mu = state.mu
        trials = 0
        while True:
            den = s * s + mu * scale
            w = np.divide(s, den, out=np.zeros_like(s), where=den > 0)
            d = -(Vt.T @ (w * Utr))
            x_new = it.x + d
            c_new = ev.f(x_new)
            trials += 1
            if c_new < it.f:  # NaN compares False: a non-finite trial is a failed step
                mu = max(mu * mu_dec, mu_min)
                new = ev.iterate(x_new)
                info = {"mu": mu, "trials": trials}
                return LMState(mu), Step(new, float(np.linalg.norm(d)), info=info)
            mu *= mu_inc
            if mu > mu_max * (1.0 + 1e-9):  # mu = mu_max (up to rounding) is still tried
                return LMState(mu), Step(None, 0.0, R.STALLED,
                                         f"mu = {mu:g} exceeded mu_max = {mu_max:g} (trainlm's "
                                         f"stopping rule): no step reduced the cost",
                                         {"mu": mu, "trials": trials})

    return init, step, lambda state: {"mu": state.mu}
