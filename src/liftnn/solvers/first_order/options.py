"""Options of the first-order methods: defaults and the checks run before any work.

The checks use the shared helpers of liftnn._validate; docs/solvers.md lists every option.
"""

from __future__ import annotations

from typing import Any

from liftnn._validate import (
    callable_or_none,
    check_choice,
    integer,
    merge_options,
    number,
)
from liftnn.errors import LiftnnError

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
    "val_patience": 20,     # with validation data: epochs without a new best validation loss
}
GD_ONLY = {"line_search": None, "max_backtracks": 40}
_DATA_OPTIONS = ("batch_size", "shuffle_seed", "lanes", "val_patience")


def _defaults(method: str, data: bool) -> dict:
    """Every option `method` accepts with its default (data=False: minimize_first_order's)."""
    check_choice("first-order method", method, METHOD_DEFAULTS)
    d = {**COMMON_DEFAULTS, **METHOD_DEFAULTS[method], **(GD_ONLY if method == "gd" else {})}
    return d if data else {k: v for k, v in d.items() if k not in _DATA_OPTIONS}


def valid_options(method: str, data: bool = True) -> list[str]:
    """The option names `method` accepts (data=False: those of minimize_first_order)."""
    return list(_defaults(method, data))


def check_options(method: str, options: dict, m: int | None) -> dict:
    """Merge defaults and validate every option before any work; raise LiftnnError naming it.

    m: the number of training samples (None for minimize_first_order: no data options).
    The method's hyper-parameters are also collected in o["hyper"] (run-time arguments of the
    compiled loop).
    """
    o = merge_options(method, options, _defaults(method, data=m is not None))
    o = {**_defaults(method, data=True), **o}  # minimize_first_order: data options at default
    _check_hyper(method, o)
    _check_common(o)
    if m is not None:
        _check_data(o, m)
    o["hyper"] = {k: float(o[k]) for k in METHOD_DEFAULTS[method]}
    return o


def _check_hyper(method: str, o: dict) -> None:
    """lr and the method's own hyper-parameters (and gd's line search)."""
    number(o, "lr", 0.0, lo_open=True)
    own = METHOD_DEFAULTS[method]
    for name in ("beta", "b1", "b2", "rho"):
        if name in own:
            number(o, name, 0.0, 1.0, hi_open=True)
    if "eps" in own:
        number(o, "eps", 0.0, lo_open=True)
    if method == "rprop":
        number(o, "eta_minus", 0.0, 1.0, lo_open=True, hi_open=True)
        number(o, "eta_plus", 1.0, lo_open=True)
        number(o, "min_step", 0.0, lo_open=True)
        number(o, "max_step", o["min_step"])
    if method == "gd":
        number(o, "mu", 0.0, 1.0, lo_open=True, hi_open=True)
        number(o, "shrink", 0.0, 1.0, lo_open=True, hi_open=True)
        integer(o, "max_backtracks", 1)
        ls = o["line_search"]
        if ls in ("none", "fixed", False):
            ls = None
        if ls is not None:
            check_choice("line_search", ls, ("armijo",))
        o["line_search"] = ls


def _check_common(o: dict) -> None:
    """Stopping rules, budget, callback, progress and chunk length."""
    integer(o, "max_iter", 0)
    integer(o, "patience", 0, allow_none=True)
    number(o, "min_delta", 0.0)
    number(o, "gtol", 0.0)
    if o["time_budget"] is not None:
        number(o, "time_budget", 0.0, lo_open=True)
    callable_or_none(o, "callback")
    o["progress"] = bool(o["progress"])
    integer(o, "chunk", 1)


def _check_data(o: dict, m: int) -> None:
    """lanes, shuffle_seed and batch_size against the m training samples."""
    integer(o, "lanes", 1, allow_none=True)
    integer(o, "val_patience", 1, allow_none=True)
    integer(o, "shuffle_seed", 0)
    integer(o, "batch_size", 1, allow_none=True)
    if o["batch_size"] is not None and o["batch_size"] > m:
        raise LiftnnError(f"batch_size = {o['batch_size']} exceeds the {m} training samples")
    if o["batch_size"] == m:
        o["batch_size"] = None  # one batch of everything is full batch
    if o["batch_size"] is not None and o.get("line_search") is not None:
        raise LiftnnError("line_search='armijo' works on the full-batch loss; "
                          "it cannot be combined with batch_size")
