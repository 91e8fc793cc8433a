"""The scipy peers: scipy-lm and scipy-trf, scipy.optimize.least_squares on the single-shooting
residual with a JAX Jacobian (the role of MATLAB's trainlm); see liftnn.bench.peers.
"""

from __future__ import annotations

import math
import time
from collections import deque

import numpy as np

from liftnn.bench.peers.common import TIME, PeerSpec, choice, number, x_scale
from liftnn.errors import LiftnnError
from liftnn.solvers import result as R
from liftnn.solvers.result import Result


def available() -> tuple[bool, str]:
    """scipy and jax are liftnn's own dependencies: available unless the install is broken."""
    try:
        import scipy.optimize  # noqa: F401
    except ImportError:  # pragma: no cover - a broken liftnn install
        return False, "scipy is not installed (pip install scipy)"
    return True, ""


class _Stop(Exception):
    """Raised inside least_squares' callbacks to end the run at its last accepted iterate."""


_SCIPY_STATUS = {0: R.MAX_ITER, 1: R.CONVERGED, 2: R.CONVERGED, 3: R.CONVERGED, 4: R.CONVERGED}


def fit(problem, params0, o, name, t0) -> Result:
    """scipy-lm / scipy-trf: least_squares on the single-shooting residual (module docstring)."""
    import jax
    from scipy.optimize import least_squares

    method = "lm" if name == "scipy-lm" else "trf"
    theta0 = np.asarray(problem.flatten(params0), np.float64)
    n = theta0.size
    rfun = jax.jit(problem.residual)
    jfun = jax.jit((jax.jacfwd if o["jac"] == "fwd" else jax.jacrev)(problem.residual))
    n_res = int(rfun(theta0).shape[0])
    pad = max(0, n - n_res) if method == "lm" else 0  # MINPACK lm needs residuals >= variables

    recent: deque = deque(maxlen=4)  # (x bytes, r) of the latest residual evaluations
    st = {"nfev": 0, "njev": 0, "x": theta0, "cost": None}
    history: list[dict] = []

    def residual(x):
        r = np.asarray(rfun(x), np.float64)
        st["nfev"] += 1
        recent.append((x.tobytes(), r))
        return np.concatenate([r, np.zeros(pad)]) if pad else r

    def jacobian(x):
        # least_squares evaluates J only at accepted iterates: record the iterate first
        key = x.tobytes()
        r = next((rr for k, rr in reversed(recent) if k == key), None)
        if r is None:
            r = np.asarray(rfun(x), np.float64)
        cost = 0.5 * float(r @ r)
        st["x"], st["cost"] = np.array(x), cost
        history.append({"iter": len(history), "loss": cost, "time": time.perf_counter() - t0})
        if o["max_iter"] is not None and len(history) > o["max_iter"]:
            raise _Stop(f"max_iter = {o['max_iter']} iterations reached")
        if o["time_budget"] is not None and time.perf_counter() - t0 >= o["time_budget"]:
            raise _Stop(f"time budget of {o['time_budget']:g} s spent after {len(history) - 1} "
                        "iterations")
        J = np.asarray(jfun(x), np.float64)
        st["njev"] += 1
        return np.vstack([J, np.zeros((pad, n))]) if pad else J

    kw = {"method": method, "ftol": o["ftol"], "xtol": o["xtol"], "gtol": o["gtol"],
          "max_nfev": o["max_nfev"], "x_scale": o["x_scale"]}
    if method == "trf" and o.get("tr_solver") is not None:
        kw["tr_solver"] = o["tr_solver"]
    try:
        sol = least_squares(residual, theta0, jac=jacobian, **kw)
    except _Stop as stop:
        x, status, message = st["x"], R.MAX_ITER, str(stop)
        nit = st["njev"]
    except KeyboardInterrupt:
        x, status, message = st["x"], R.INTERRUPTED, f"interrupted after {st['njev']} iterations"
        nit = st["njev"]
    else:
        x = sol.x
        nit = int(sol.njev) if sol.njev is not None else st["njev"]
        status = _SCIPY_STATUS.get(int(sol.status), R.STALLED)
        message = f"scipy least_squares({method}): {sol.message}"
        cost = float(sol.cost)
        if not math.isfinite(cost) and st["cost"] is not None:
            x, status = st["x"], R.DIVERGED
            message += "; non-finite cost, returned the last accepted iterate"
        elif not history or not np.array_equal(st["x"], x):  # the final step had no J evaluation
            history.append({"iter": len(history), "loss": cost, "time": time.perf_counter() - t0})
    res = Result(params=problem.unflatten(x), nit=nit, nfev=st["nfev"], njev=st["njev"],
                 status=status, message=message, history=history)
    res["cost"] = 0.5 * float(np.sum(np.asarray(rfun(x)) ** 2))
    if pad:
        res["padded_rows"] = pad
    return res


# ---------------------------------------------------------------------------------------------
# ipopt-ms: CasADi + IPOPT on the lifted problem
# ---------------------------------------------------------------------------------------------



def _check_lm(opts: dict) -> None:
    for k in ("ftol", "xtol", "gtol"):
        if opts[k] is None or opts[k] < np.finfo(float).eps:
            raise LiftnnError(f"option {k!r} of scipy-lm must be >= machine epsilon "
                              f"({np.finfo(float).eps:.3g}); got {opts[k]!r}")


def _check_trf(opts: dict) -> None:
    if not any(opts[k] for k in ("ftol", "xtol", "gtol")):
        raise LiftnnError("scipy-trf needs at least one of ftol, xtol, gtol to be positive")


LSQ = {
    "ftol": (1e-8, number(0.0, strict=False, none=True)),
    "xtol": (1e-8, number(0.0, strict=False, none=True)),
    "gtol": (1e-8, number(0.0, strict=False, none=True)),
    "max_nfev": (None, number(0, none=True, integer=True)),
    "max_iter": (None, number(0, strict=False, none=True, integer=True)),
    "x_scale": (None, x_scale),
    "jac": ("fwd", choice("fwd", "rev")),
    "time_budget": (None, TIME),
}

PEERS: dict[str, PeerSpec] = {
    "scipy-lm": PeerSpec(
        "scipy-lm", "scipy",
        "scipy least_squares(method='lm') (MINPACK) on single shooting, JAX Jacobian: "
        "trainlm's role",
        LSQ, ("mse", "sse"), fit, _check_lm),
    "scipy-trf": PeerSpec(
        "scipy-trf", "scipy",
        "scipy least_squares(method='trf') on single shooting, JAX Jacobian",
        {**LSQ, "tr_solver": (None, choice(None, "exact", "lsmr"))}, ("mse", "sse"),
        fit, _check_trf),
}
