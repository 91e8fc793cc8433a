"""What every peer shares: option checkers, the PeerSpec record, the check of params0 and the
finishing of a Result (train/test MSE recomputed with the liftnn model in float64).

Each option checker returns the normalised value or raises LiftnnError naming the option.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from liftnn.errors import LiftnnError
from liftnn.solvers import result as R
from liftnn.solvers.result import Result


def number(lo=None, hi=None, *, strict=True, none=False, integer=False):
    def check(name, v):
        if v is None and none:
            return None
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
            raise LiftnnError(f"option {name!r} must be a number; got {v!r}")
        if integer and float(v) != int(v):
            raise LiftnnError(f"option {name!r} must be an integer; got {v!r}")
        v = int(v) if integer else float(v)
        if not math.isfinite(v):
            raise LiftnnError(f"option {name!r} must be finite; got {v!r}")
        if lo is not None and (v <= lo if strict else v < lo):
            raise LiftnnError(f"option {name!r} must be {'>' if strict else '>='} {lo}; got {v!r}")
        if hi is not None and v > hi:
            raise LiftnnError(f"option {name!r} must be <= {hi}; got {v!r}")
        return v

    return check


def choice(*choices):
    def check(name, v):
        if v not in choices:
            raise LiftnnError(f"option {name!r} must be one of {', '.join(map(repr, choices))}; "
                              f"got {v!r}")
        return v

    return check


def flag(name, v):
    if not isinstance(v, (bool, np.bool_)):
        raise LiftnnError(f"option {name!r} must be True or False; got {v!r}")
    return bool(v)


def mapping(name, v):
    if not isinstance(v, Mapping):
        raise LiftnnError(f"option {name!r} must be a dict of IPOPT options; got {v!r}")
    return dict(v)


def x_scale(name, v):
    if v is None or v == "jac":
        return v
    try:
        arr = np.asarray(v, dtype=np.float64)
    except (TypeError, ValueError):
        raise LiftnnError(f"option {name!r} must be None, 'jac' or positive numbers; "
                          f"got {v!r}") from None
    if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise LiftnnError(f"option {name!r} must be None, 'jac' or positive numbers; got {v!r}")
    return arr if arr.ndim else float(arr)


POS = number(0.0)
POS_INT = number(0, integer=True)
TIME = number(0.0, none=True)


@dataclass(frozen=True)
class PeerSpec:
    """One peer: its name, the library it needs, what it stands for, its options and defaults."""

    name: str
    family: str                      # "torch", "scipy" or "casadi": what `available` checks
    summary: str                     # one line for reports and --help
    options: Mapping[str, tuple[Any, Callable]] = field(repr=False)  # name -> (default, checker)
    losses: tuple[str, ...] = ("mse", "sse")
    fit: Callable | None = field(default=None, repr=False)  # fit(problem, params0, opts, name, t0)
    check: Callable[[dict], None] | None = field(default=None, repr=False)  # cross-option rules
    # validate(name, opts, model, loss, weight_decay): what the library cannot represent
    validate: Callable | None = field(default=None, repr=False)

    @property
    def defaults(self) -> dict[str, Any]:
        """The options this peer accepts with their default values."""
        return {k: d for k, (d, _) in self.options.items()}


def import_reason(module: str, hint: str) -> str | None:
    """None if `module` imports, else why not (with the install hint)."""
    import importlib

    try:
        importlib.import_module(module)
    except ImportError:
        return f"{module.split('.')[0]} is not installed ({hint})"
    except Exception as exc:  # noqa: BLE001 - a broken install: say what broke
        return f"{module} cannot be imported ({type(exc).__name__}: {exc}; {hint})"
    return None


def check_params(model, params0) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """params0 as float64 NumPy arrays, checked against the model's layer sizes."""
    sizes = model.sizes
    if not isinstance(params0, (list, tuple)) or len(params0) != len(sizes) - 1:
        raise LiftnnError(f"params0 must be a list of {len(sizes) - 1} (W, b) pairs for "
                          f"{model.arch}; got {type(params0).__name__} of length "
                          f"{len(params0) if hasattr(params0, '__len__') else '?'}")
    out = []
    for j, (pair, i, o) in enumerate(zip(params0, sizes[:-1], sizes[1:])):
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise LiftnnError(f"params0 layer {j} must be a pair (W, b); got {type(pair).__name__}")
        W, b = pair
        W = np.array(W, dtype=np.float64)
        if W.shape != (o, i):
            raise LiftnnError(f"params0 layer {j}: W has shape {W.shape}, the model needs {(o, i)}")
        if model.bias:
            if b is None:
                raise LiftnnError(f"params0 layer {j}: b is None but the model has biases")
            b = np.array(b, dtype=np.float64).reshape(-1)
            if b.shape != (o,):
                raise LiftnnError(f"params0 layer {j}: b has shape {b.shape}, the model needs "
                                  f"{(o,)}")
        elif b is not None:
            raise LiftnnError(f"params0 layer {j}: the model has no biases but b is given")
        if not np.all(np.isfinite(W)) or (b is not None and not np.all(np.isfinite(b))):
            raise LiftnnError(f"params0 layer {j} contains non-finite values")
        out.append((W, b))
    return out


def finish(res: Result, problem, dataset, model, name) -> Result:
    import jax.numpy as jnp

    params = [(np.asarray(W, np.float64), None if b is None else np.asarray(b, np.float64))
              for W, b in res["params"]]
    jparams = [(jnp.asarray(W), None if b is None else jnp.asarray(b)) for W, b in params]
    res["params"] = params
    res["x"] = np.asarray(problem.flatten(jparams), np.float64)
    res["fun"] = float(problem.objective(jparams))
    res["train_mse"] = problem.mse(jparams)
    res["test_mse"] = (problem.mse(jparams, jnp.asarray(dataset.x_test),
                                   jnp.asarray(dataset.y_test))
                       if len(dataset.x_test) else float("nan"))
    res["success"] = res["status"] in (R.CONVERGED, R.STALLED)
    res["method"] = name
    res["init"] = getattr(model, "init_name", "custom")
    res["n"] = problem.m
    res.setdefault("njev", res["nit"])
    res.setdefault("nhev", 0)
    return res


# ---------------------------------------------------------------------------------------------


def budget_stop(nit: int, o: dict, t0: float, unit: str = "iterations"):
    """(status, message) once max_iter units are done or the time budget (s since t0) is spent,
    else None: the peers' own iteration loops stop the same way."""
    if "max_iter" in o and nit >= o["max_iter"]:
        return R.MAX_ITER, f"max_iter = {o['max_iter']} {unit} reached"
    if o.get("time_budget") is not None and time.perf_counter() - t0 >= o["time_budget"]:
        return R.MAX_ITER, f"time budget of {o['time_budget']:g} s spent after {nit} {unit}"
    return None
