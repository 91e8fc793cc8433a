"""Peers: the tools a user would otherwise train these networks with, run on the same problem.

liftnn's claims are comparisons, so every benchmark also runs the methods the thesis (seed 000)
compared against, through the libraries people use today:

===============  ==============================================  ==================================
name             what runs                                        stands in for (thesis)
===============  ==============================================  ==================================
"torch-adam"     torch.optim.Adam, Keras protocol (below)         Keras Adam
"torch-sgd"      torch.optim.SGD (+ momentum), same protocol      Keras SGD
"torch-lbfgs"    torch.optim.LBFGS, strong-Wolfe line search      a quasi-Newton baseline
"scipy-lm"       scipy.optimize.least_squares(method="lm")        MATLAB trainlm (single shooting)
"scipy-trf"      scipy.optimize.least_squares(method="trf")       trainlm, trust-region variant
"ipopt-ms"       CasADi + IPOPT on the lifted problem             YALMIP + fmincon (lifted)
===============  ==============================================  ==================================

All peers minimise the objective liftnn's own solvers minimise (liftnn.problem.TrainingProblem):

    C(theta) = loss(f_theta(X), Y) + weight_decay / 2 * ||theta||^2,   "mse" = mean (f - Y)^2,

start from the same initial weights (``params0``, liftnn format: a list of (W, b), W (out, in),
b None without biases) and are judged the same way: `fit_peer` returns a liftnn Result whose
train_mse / test_mse are recomputed from the returned weights with the liftnn model in float64.
Everything runs in float64.

Protocols
---------
**torch-adam / torch-sgd** (the thesis's Keras protocol, DESIGN.md §2). An equivalent
``torch.nn.Sequential`` (Linear layers, float64, the same activations; softplus is computed as
``logaddexp(a, 0)`` because torch.nn.Softplus switches to the identity above a=20 and would differ
from liftnn by ~2e-9) receives ``params0`` exactly. One epoch is one pass over the data: a single
full-batch step unless ``batch_size`` is given, else minibatches of a permutation drawn every epoch
from a torch.Generator seeded with ``shuffle_seed``. The loss is torch.nn.MSELoss (mean) plus
weight_decay/2 ||theta||^2 added explicitly (biases included), so it equals liftnn's objective
("sse" = 1/2 sum of squares, "cross_entropy" = torch's with one-hot targets, as liftnn's). What is
logged and monitored is Keras's epoch loss: the size-weighted mean of the minibatch losses computed
during the epoch, each *before* its update (full batch: the loss of the weights the epoch started
from); history[k] is epoch k + 1. Stopping is Keras ``EarlyStopping(monitor="loss", patience=10,
min_delta=0)``: an epoch improves when its loss is below the best so far minus ``min_delta``; after
``patience`` epochs in a row without improvement training stops (status "stalled", success True, as
liftnn's own "adam" reports it); at most ``max_iter`` = 4000 epochs (status "max_iter"). The final
weights are returned (Keras keeps them; ``restore_best_weights=False``). Adam uses torch's defaults
(lr 1e-3, betas (0.9, 0.999), eps 1e-8 - Keras's eps is 1e-7; the difference is immaterial here and
matches liftnn's "adam"); SGD uses Keras's defaults lr 1e-2, momentum 0.

**torch-lbfgs**: torch.optim.LBFGS(lr=1, history_size=100, line_search_fn="strong_wolfe") on the
full batch, stepped one iteration per ``step()`` call (torch keeps the curvature pairs in the
optimiser state between calls, and the iterates equal those of one long call) so every
iteration is recorded; max_eval = 26 per call gives the line search torch's default 25
evaluations (torch derives the search's budget from max_eval, 1.25 max_iter by default, which
would starve it at max_iter=1); the evaluation the next call makes at the point the line search
accepted is served from a cache, so nfev counts only real forward/backward passes.  Stops as
torch would: ||grad||_inf <= tolerance_grad (1e-7), |C_k+1 - C_k| < tolerance_change (1e-9) or
a step with max |t d| <= tolerance_change ("converged"), or max_iter iterations.  Unlike one
long torch call there is no cap on the total number of evaluations besides 25 per iteration.

Torch threads: ``threads`` (default 1; None = os.cpu_count()) is set with torch.set_num_threads
for the fit and restored afterwards.  One thread is torch's fastest setting for the networks of
the thesis: every op is tiny, and on the 2-core development machine under load, 2 threads made
torch-adam on 1-8-8-1 / 20 points about 25x slower per epoch (thread hand-offs between preempted
OpenMP workers), which would be an unfair handicap.  Give ``threads`` for wide networks.

**scipy-lm / scipy-trf** (the role of MATLAB trainlm, which the thesis used as its LM reference):
scipy.optimize.least_squares on the single-shooting residual r(theta) of
TrainingProblem.residual (C = 1/2 ||r||^2, so ``cost`` = C) with the exact Jacobian from
``jax.jacfwd`` (``jac="rev"`` for jax.jacrev), both jitted; compilation is part of the wall time.
Tolerances ftol = xtol = gtol = 1e-8 and x_scale are scipy's defaults (lm: MINPACK with
x_scale="jac", as scipy >= 1.16 does).  MINPACK's lm needs at least as many residuals as
variables; when the network has more weights than the data has residuals (1-8-8-1 on 10 points)
zero rows are appended to r and J, which changes neither the cost nor J^T J nor J^T r, hence not
the iterates.  ``max_iter`` (accepted iterations = Jacobian evaluations) and ``time_budget``
stop the run at its last accepted iterate; ``max_nfev`` is scipy's own limit (default 100 * n).
nit = njev, scipy's count of Jacobian evaluations.

**ipopt-ms** (the role of the thesis's YALMIP + fmincon on the multiple-shooting problem, seed 000
ch. 1.5 / DESIGN.md §1): CasADi builds the lifted NLP with variables W_j, b_j and the states
Z_j (d_j x m, one column per training sample) of every hidden layer,

    min  loss(sigma_out(W_out Z_L + b_out), Y) + weight_decay/2 ||theta||^2
    s.t. Z_j - sigma_j(W_j Z_{j-1} + b_j) = 0,   j = 1..L,   Z_0 = X,

and IPOPT solves it with the exact Hessian of the Lagrangian (``hessian_approximation=
"limited-memory"`` for L-BFGS) and MUMPS, from the feasible start (states simulated from params0).
ReLU is written fmax(0, a) (leaky ReLU fmax(a, 0.01 a)): IPOPT assumes C^2 functions, so at the
kink it sees a one-sided derivative and a zero Hessian; it runs, but with no guarantee. At a
solution the constraints hold to IPOPT's tolerance, so the network simulated from the returned
weights (train_mse) reproduces the lifted objective (``fun_lifted``); ``constraint_violation`` =
max |h| at the returned point tells how far apart they may be. Status comes from IPOPT's
return_status; nit = IPOPT's iter_count. Expressions are CasADi SX by default (fast derivatives for
the sizes of the thesis; ``symbolic="MX"`` keeps the graph small for wide layers and many samples).
``time_budget`` becomes IPOPT's max_wall_time minus what building the NLP already took. Measured
on tanh 1-8-8-1, sin2, seed 0, loaded 2-core machine: N = 10 0.4 s (33 iterations), N = 20 4.3-10
s (156 iterations), nearly all of it inside IPOPT/MUMPS (CasADi's function and derivative
evaluations took < 0.1 s in all).

Result fields (besides Result's): params (list of (W, b) NumPy float64), x (flat theta), fun
(liftnn's objective at the returned params), nit, nfev, njev, status, success, message, history
(one dict per iteration: iter, loss, time [s since the fit started]; ipopt-ms adds
constraint_violation), time_s (wall time of the whole fit: network/graph building, jit
compilation, the solve), train_mse, test_mse (NaN without a test set), method, init, n.
"""

from __future__ import annotations

import functools
import math
import os
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from liftnn.errors import LiftnnError
from liftnn.solvers import result as R
from liftnn.solvers.result import Result

TORCH_HINT = "pip install 'liftnn[peers]', torch==2.13.0 first"
CASADI_HINT = "pip install 'liftnn[peers]'"

# ---------------------------------------------------------------------------------------------
# option checkers: each returns the normalised value or raises LiftnnError naming the option
# ---------------------------------------------------------------------------------------------


def _num(lo=None, hi=None, *, strict=True, none=False, integer=False):
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


def _choice(*choices):
    def check(name, v):
        if v not in choices:
            raise LiftnnError(f"option {name!r} must be one of {', '.join(map(repr, choices))}; "
                              f"got {v!r}")
        return v

    return check


def _flag(name, v):
    if not isinstance(v, (bool, np.bool_)):
        raise LiftnnError(f"option {name!r} must be True or False; got {v!r}")
    return bool(v)


def _mapping(name, v):
    if not isinstance(v, Mapping):
        raise LiftnnError(f"option {name!r} must be a dict of IPOPT options; got {v!r}")
    return dict(v)


def _x_scale(name, v):
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


_POS = _num(0.0)
_POS_INT = _num(0, integer=True)
_TIME = _num(0.0, none=True)

_KERAS = {  # the epoch loop shared by torch-adam and torch-sgd
    "max_iter": (4000, _POS_INT),
    "patience": (10, _num(0, strict=False, none=True, integer=True)),
    "min_delta": (0.0, _num(0.0, strict=False)),
    "batch_size": (None, _num(0, none=True, integer=True)),
    "shuffle_seed": (0, _num(0, strict=False, integer=True)),
    "threads": (1, _num(0, none=True, integer=True)),
    "time_budget": (None, _TIME),
}
_LSQ = {
    "ftol": (1e-8, _num(0.0, strict=False, none=True)),
    "xtol": (1e-8, _num(0.0, strict=False, none=True)),
    "gtol": (1e-8, _num(0.0, strict=False, none=True)),
    "max_nfev": (None, _num(0, none=True, integer=True)),
    "max_iter": (None, _num(0, strict=False, none=True, integer=True)),
    "x_scale": (None, _x_scale),
    "jac": ("fwd", _choice("fwd", "rev")),
    "time_budget": (None, _TIME),
}


@dataclass(frozen=True)
class PeerSpec:
    """One peer: its name, the library it needs, what it stands for, its options and defaults."""

    name: str
    family: str                      # "torch", "scipy" or "casadi": what `available` checks
    summary: str                     # one line for reports and --help
    options: Mapping[str, tuple[Any, Callable]] = field(repr=False)  # name -> (default, checker)
    losses: tuple[str, ...] = ("mse", "sse")
    runner: str = field(default="", repr=False)  # the module-level function that fits it

    @property
    def defaults(self) -> dict[str, Any]:
        """The options this peer accepts with their default values."""
        return {k: d for k, (d, _) in self.options.items()}


PEERS: dict[str, PeerSpec] = {
    "torch-adam": PeerSpec(
        "torch-adam", "torch",
        "PyTorch Adam, Keras protocol: full batch, lr 1e-3, stop after 10 epochs without "
        "improvement",
        {**_KERAS, "lr": (1e-3, _POS), "b1": (0.9, _num(0.0, 1.0, strict=False)),
         "b2": (0.999, _num(0.0, 1.0, strict=False)), "eps": (1e-8, _POS)},
        ("mse", "sse", "cross_entropy"), "_fit_torch_epochs"),
    "torch-sgd": PeerSpec(
        "torch-sgd", "torch",
        "PyTorch SGD (+momentum), Keras protocol: full batch, lr 1e-2, patience 10",
        {**_KERAS, "lr": (1e-2, _POS), "momentum": (0.0, _num(0.0, strict=False)),
         "nesterov": (False, _flag)},
        ("mse", "sse", "cross_entropy"), "_fit_torch_epochs"),
    "torch-lbfgs": PeerSpec(
        "torch-lbfgs", "torch",
        "PyTorch L-BFGS with strong-Wolfe line search, full batch",
        {"max_iter": (1000, _POS_INT), "lr": (1.0, _POS), "history_size": (100, _POS_INT),
         "tolerance_grad": (1e-7, _num(0.0, strict=False)),
         "tolerance_change": (1e-9, _num(0.0, strict=False)),
         "threads": (1, _num(0, none=True, integer=True)), "time_budget": (None, _TIME)},
        ("mse", "sse", "cross_entropy"), "_fit_torch_lbfgs"),
    "scipy-lm": PeerSpec(
        "scipy-lm", "scipy",
        "scipy least_squares(method='lm') (MINPACK) on single shooting, JAX Jacobian: "
        "trainlm's role",
        _LSQ, ("mse", "sse"), "_fit_scipy"),
    "scipy-trf": PeerSpec(
        "scipy-trf", "scipy",
        "scipy least_squares(method='trf') on single shooting, JAX Jacobian",
        {**_LSQ, "tr_solver": (None, _choice(None, "exact", "lsmr"))}, ("mse", "sse"),
        "_fit_scipy"),
    "ipopt-ms": PeerSpec(
        "ipopt-ms", "casadi",
        "CasADi + IPOPT on the multiple-shooting (lifted) problem: YALMIP + fmincon's role",
        {"max_iter": (3000, _POS_INT), "tol": (1e-8, _POS),
         "hessian_approximation": ("exact", _choice("exact", "limited-memory")),
         "linear_solver": ("mumps", _choice("mumps", "ma27", "ma57", "ma86", "ma97")),
         "symbolic": ("SX", _choice("SX", "MX")),
         "print_level": (0, _num(0, 12, strict=False, integer=True)),
         "time_budget": (None, _TIME), "ipopt_options": ({}, _mapping)},
        ("mse", "sse"), "_fit_ipopt"),
}


# ---------------------------------------------------------------------------------------------
# availability
# ---------------------------------------------------------------------------------------------


def _spec(name: str) -> PeerSpec:
    if name not in PEERS:
        raise LiftnnError(f"unknown peer {name!r}; choose one of: {', '.join(PEERS)}")
    return PEERS[name]


@functools.cache
def _family_available(family: str) -> tuple[bool, str]:
    if family == "torch":
        try:
            import torch  # noqa: F401
        except ImportError:
            return False, f"torch is not installed ({TORCH_HINT})"
        except Exception as exc:  # noqa: BLE001 - a broken install: say what broke
            return False, f"torch cannot be imported ({type(exc).__name__}: {exc}; {TORCH_HINT})"
        _torch_warm_up()
        return True, ""
    if family == "casadi":
        try:
            import casadi
        except ImportError:
            return False, f"casadi is not installed ({CASADI_HINT})"
        except Exception as exc:  # noqa: BLE001
            return False, f"casadi cannot be imported ({type(exc).__name__}: {exc}; {CASADI_HINT})"
        if not casadi.has_nlpsol("ipopt"):
            return False, "this casadi build has no IPOPT plugin (the PyPI wheels include it)"
        return True, ""
    # scipy and jax are liftnn's own dependencies
    try:
        import scipy.optimize  # noqa: F401
    except ImportError:  # pragma: no cover - a broken liftnn install
        return False, "scipy is not installed (pip install scipy)"
    return True, ""


def _torch_warm_up() -> None:
    """Pay torch's one-time per-process costs here, not in the first timed fit.

    The first torch.optim optimiser built in a process imports torch._dynamo (3.5 s on the
    development machine, as long as `import torch` itself); later ones take microseconds.
    """
    import torch

    w = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    for opt in (torch.optim.Adam([w]), torch.optim.SGD([w], lr=0.0),
                torch.optim.LBFGS([w], line_search_fn="strong_wolfe")):
        opt.zero_grad()


def available(name: str) -> tuple[bool, str]:
    """(True, "") if peer `name` can run here, else (False, why and how to install it).

    Imports the peer's library once per process and, for torch, builds one optimiser of each kind
    (see _torch_warm_up), so one-time library costs are not charged to the first benchmark run;
    fit_peer calls it before its clock starts.  Raises LiftnnError for an unknown name.
    """
    return _family_available(_spec(name).family)


def options(name: str) -> dict[str, Any]:
    """The options peer `name` accepts, with their defaults."""
    return _spec(name).defaults


# ---------------------------------------------------------------------------------------------
# the front door
# ---------------------------------------------------------------------------------------------


def fit_peer(name: str, model, dataset, params0, *, loss: str = "mse", weight_decay: float = 0.0,
             **options) -> Result:
    """Train `model` on `dataset` from `params0` with peer `name`; returns a liftnn Result.

    Args:
        name: one of PEERS ("torch-adam", "torch-sgd", "torch-lbfgs", "scipy-lm", "scipy-trf",
            "ipopt-ms"); see the module docstring for the protocol each follows.
        model: a liftnn MLP.
        dataset: a liftnn Dataset; x_train (m, d_in), y_train (m, d_out) are trained on.
        params0: initial weights, list of (W (out, in), b (out,) or None) - the same for every
            method of a benchmark run.
        loss, weight_decay: the objective loss + weight_decay/2 ||theta||^2 (as ln.train).
        **options: the peer's options (`options(name)` lists them with defaults).

    Everything is checked before any work: an unknown peer, loss or option, a bad option value,
    data or params0 that do not fit the model, or a missing library raise LiftnnError.
    """
    from liftnn.problem import TrainingProblem

    spec = _spec(name)
    unknown = sorted(set(options) - set(spec.options))
    if unknown:
        raise LiftnnError(f"peer {name!r} has no option(s) {', '.join(map(repr, unknown))}; valid "
                          f"options: {', '.join(spec.options)}")
    opts = {k: check(k, options[k]) if k in options else default
            for k, (default, check) in spec.options.items()}
    if loss not in spec.losses:
        raise LiftnnError(f"peer {name!r} does not support loss {loss!r}; choose one of: "
                          f"{', '.join(spec.losses)}")
    if name == "scipy-lm":
        for k in ("ftol", "xtol", "gtol"):
            if opts[k] is None or opts[k] < np.finfo(float).eps:
                raise LiftnnError(f"option {k!r} of scipy-lm must be >= machine epsilon "
                                  f"({np.finfo(float).eps:.3g}); got {opts[k]!r}")
    if name == "torch-sgd" and opts["nesterov"] and opts["momentum"] <= 0:
        raise LiftnnError("torch-sgd: nesterov=True needs momentum > 0")
    if name == "scipy-trf" and not any(opts[k] for k in ("ftol", "xtol", "gtol")):
        raise LiftnnError("scipy-trf needs at least one of ftol, xtol, gtol to be positive")
    ok, reason = available(name)
    if not ok:
        raise LiftnnError(f"peer {name!r} is not available: {reason}")
    problem = TrainingProblem(model, dataset.x_train, dataset.y_train, loss=loss,
                              weight_decay=weight_decay)
    p0 = _check_params(model, params0)

    t0 = time.perf_counter()
    res = globals()[spec.runner](problem, p0, opts, name, t0)
    res["time_s"] = time.perf_counter() - t0
    return _finish(res, problem, dataset, model, name)


def _check_params(model, params0) -> list[tuple[np.ndarray, np.ndarray | None]]:
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


def _finish(res: Result, problem, dataset, model, name) -> Result:
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
# torch peers
# ---------------------------------------------------------------------------------------------


def torch_network(model, params):
    """An equivalent float64 torch.nn.Sequential holding `params` (liftnn format) exactly.

    Linear layers (weight (out, in) = W, bias = b) alternate with the model's activations:
    identity, relu, leaky_relu (slope 0.01), tanh, sigmoid, softplus (as logaddexp(a, 0)).
    """
    import torch

    act_modules = {
        "identity": torch.nn.Identity,
        "relu": torch.nn.ReLU,
        "leaky_relu": lambda: torch.nn.LeakyReLU(0.01),
        "tanh": torch.nn.Tanh,
        "sigmoid": torch.nn.Sigmoid,
        "softplus": _torch_softplus_class(),
    }
    layers = []
    for (W, b), act in zip(params, model.activations):
        W = np.asarray(W, np.float64)
        lin = torch.nn.Linear(W.shape[1], W.shape[0], bias=b is not None, dtype=torch.float64)
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(np.array(W, np.float64)))
            if b is not None:
                lin.bias.copy_(torch.from_numpy(np.array(b, np.float64).reshape(-1)))
        layers.append(lin)
        if act not in act_modules:
            raise LiftnnError(f"activation {act!r} has no torch equivalent here")
        layers.append(act_modules[act]())
    return torch.nn.Sequential(*layers)


@functools.cache
def _torch_softplus_class():
    import torch

    class TorchSoftplus(torch.nn.Module):
        """softplus(a) = log(1 + e^a), computed as logaddexp(a, 0) like jax.nn.softplus."""

        def forward(self, a):
            return torch.logaddexp(a, torch.zeros_like(a))

    return TorchSoftplus


def torch_params(net) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """The liftnn params (list of (W, b), float64 NumPy copies) of a network from torch_network."""
    import torch

    out = []
    for layer in net:
        if isinstance(layer, torch.nn.Linear):
            W = layer.weight.detach().numpy().copy()
            b = layer.bias.detach().numpy().copy() if layer.bias is not None else None
            out.append((W, b))
    return out


def _torch_objective(problem):
    """(pred, Y, params) -> loss + weight_decay/2 ||theta||^2 in torch, as liftnn's objective."""
    import torch
    import torch.nn.functional as F

    wd = float(problem.weight_decay)
    data = {
        "mse": lambda p, y: F.mse_loss(p, y, reduction="mean"),
        "sse": lambda p, y: 0.5 * torch.sum((p - y) ** 2),
        "cross_entropy": lambda p, y: F.cross_entropy(p, y),
    }[problem.loss]

    def objective(pred, Y, params):
        c = data(pred, Y)
        if wd:
            c = c + 0.5 * wd * sum(torch.sum(p * p) for p in params)
        return c

    return objective


class _Threads:
    """Set torch's intra-op thread count for the fit; restore it afterwards."""

    def __init__(self, n):
        self.n = int(n) if n is not None else (os.cpu_count() or 1)

    def __enter__(self):
        import torch

        self.prev = torch.get_num_threads()
        torch.set_num_threads(self.n)
        return self

    def __exit__(self, *exc):
        import torch

        torch.set_num_threads(self.prev)
        return False


def _fit_torch_epochs(problem, params0, o, name, t0) -> Result:
    """torch-adam / torch-sgd under the Keras protocol (module docstring)."""
    import torch

    with _Threads(o["threads"]):
        net = torch_network(problem.model, params0)
        params = list(net.parameters())
        if name == "torch-adam":
            opt = torch.optim.Adam(params, lr=o["lr"], betas=(o["b1"], o["b2"]), eps=o["eps"])
        else:
            opt = torch.optim.SGD(params, lr=o["lr"], momentum=o["momentum"],
                                  nesterov=o["nesterov"])
        objective = _torch_objective(problem)
        X = torch.from_numpy(np.array(problem.X, np.float64))
        Y = torch.from_numpy(np.array(problem.Y, np.float64))
        m = X.shape[0]
        bs = o["batch_size"]
        gen = torch.Generator().manual_seed(int(o["shuffle_seed"]))
        good = [p.detach().clone() for p in params]  # last weights whose loss was finite
        best, wait, nfev, epochs = math.inf, 0, 0, 0
        history: list[dict] = []
        status = message = None
        try:
            for epoch in range(o["max_iter"]):
                if bs is None or bs >= m:
                    batches = [None]
                else:
                    perm = torch.randperm(m, generator=gen)
                    batches = [perm[i:i + bs] for i in range(0, m, bs)]
                total = 0.0
                for idx in batches:
                    xb, yb = (X, Y) if idx is None else (X[idx], Y[idx])
                    opt.zero_grad(set_to_none=True)
                    L = objective(net(xb), yb, params)
                    L.backward()
                    nfev += 1
                    lv = L.item()
                    if not math.isfinite(lv):
                        break
                    with torch.no_grad():
                        for g, p in zip(good, params):
                            g.copy_(p)
                    opt.step()
                    total += lv * (m if idx is None else len(idx))
                else:
                    lv = total / m
                if not math.isfinite(lv):
                    with torch.no_grad():
                        for g, p in zip(good, params):
                            p.copy_(g)
                    status, message = R.DIVERGED, (f"non-finite loss in epoch {epoch + 1}; "
                                                   "returned the last weights with a finite loss")
                    break
                epochs = epoch + 1
                history.append({"iter": epochs, "loss": lv, "time": time.perf_counter() - t0})
                # Keras EarlyStopping(monitor="loss", patience, min_delta); final weights kept
                wait += 1
                if lv < best - o["min_delta"]:
                    best, wait = lv, 0
                elif o["patience"] is not None and wait >= o["patience"] and epoch > 0:
                    status, message = R.STALLED, (
                        f"no improvement of the training loss by more than min_delta = "
                        f"{o['min_delta']:g} in {o['patience']} epochs (Keras EarlyStopping); "
                        "final weights kept")
                    break
                if o["time_budget"] is not None and time.perf_counter() - t0 >= o["time_budget"]:
                    status, message = R.MAX_ITER, (f"time budget of {o['time_budget']:g} s spent "
                                                   f"after {epochs} epochs")
                    break
        except KeyboardInterrupt:
            status, message = R.INTERRUPTED, f"interrupted after {epochs} epochs"
        if status is None:
            status, message = R.MAX_ITER, f"max_iter = {o['max_iter']} epochs reached"
        return Result(params=torch_params(net), nit=epochs, nfev=nfev, njev=nfev, status=status,
                      message=message, history=history, threads=torch.get_num_threads())


_WOLFE_MAX_LS = 25  # torch's _strong_wolfe default


def _fit_torch_lbfgs(problem, params0, o, name, t0) -> Result:
    """torch-lbfgs: torch.optim.LBFGS(strong_wolfe), one iteration per step() (module docstring)."""
    import torch

    with _Threads(o["threads"]):
        net = torch_network(problem.model, params0)
        params = list(net.parameters())
        # max_iter=1 per step() call; max_eval = 1 + 25 gives the strong-Wolfe search its default
        # 25 evaluations (torch passes max_eval - evaluations so far as the search's max_ls)
        opt = torch.optim.LBFGS(params, lr=o["lr"], max_iter=1, max_eval=1 + _WOLFE_MAX_LS,
                                history_size=o["history_size"],
                                tolerance_grad=o["tolerance_grad"],
                                tolerance_change=o["tolerance_change"],
                                line_search_fn="strong_wolfe")
        objective = _torch_objective(problem)
        X = torch.from_numpy(np.array(problem.X, np.float64))
        Y = torch.from_numpy(np.array(problem.Y, np.float64))
        cache: deque = deque(maxlen=32)  # (flat params, loss, grads) of recent evaluations
        count = {"nfev": 0}

        def flat_params():
            return torch.cat([p.detach().reshape(-1) for p in params])

        def closure():
            x = flat_params()
            for xc, Lc, gc in reversed(cache):
                if torch.equal(xc, x):
                    for p, g in zip(params, gc):
                        p.grad = g.clone()
                    return Lc
            opt.zero_grad(set_to_none=False)
            L = objective(net(X), Y, params)
            L.backward()
            count["nfev"] += 1
            cache.append((x, L.detach(), [p.grad.detach().clone() for p in params]))
            return L.detach()  # LBFGS only reads its value

        def evaluate():
            with torch.enable_grad():
                L = float(closure().detach())
            g = torch.cat([p.grad.reshape(-1) for p in params])
            return L, float(g.abs().max())

        loss, ginf = evaluate()
        history = [{"iter": 0, "loss": loss, "time": time.perf_counter() - t0}]
        status = message = None
        nit = 0
        try:
            while status is None:
                if ginf <= o["tolerance_grad"]:
                    status, message = R.CONVERGED, (f"||grad||_inf = {ginf:.3g} <= tolerance_grad"
                                                    f" = {o['tolerance_grad']:g}")
                    break
                if nit >= o["max_iter"]:
                    status, message = R.MAX_ITER, f"max_iter = {o['max_iter']} iterations reached"
                    break
                if o["time_budget"] is not None and time.perf_counter() - t0 >= o["time_budget"]:
                    status, message = R.MAX_ITER, (f"time budget of {o['time_budget']:g} s spent "
                                                   f"after {nit} iterations")
                    break
                before = [p.detach().clone() for p in params]
                opt.step(closure)
                new_loss, new_ginf = evaluate()
                if not math.isfinite(new_loss) or not math.isfinite(new_ginf):
                    with torch.no_grad():
                        for p, b in zip(params, before):
                            p.copy_(b)
                    status, message = R.DIVERGED, (f"non-finite loss or gradient in iteration "
                                                   f"{nit + 1}; returned the previous iterate")
                    break
                nit += 1
                history.append({"iter": nit, "loss": new_loss, "time": time.perf_counter() - t0})
                st = opt.state[params[0]]
                step = float((st["d"] * st["t"]).abs().max()) if "d" in st else math.inf
                if step <= o["tolerance_change"]:
                    status, message = R.CONVERGED, (f"step max|t d| = {step:.3g} <= "
                                                    f"tolerance_change = {o['tolerance_change']:g}")
                elif abs(new_loss - loss) < o["tolerance_change"]:
                    status, message = R.CONVERGED, (f"loss change {abs(new_loss - loss):.3g} < "
                                                    f"tolerance_change = {o['tolerance_change']:g}")
                loss, ginf = new_loss, new_ginf
        except KeyboardInterrupt:
            status, message = R.INTERRUPTED, f"interrupted after {nit} iterations"
        return Result(params=torch_params(net), nit=nit, nfev=count["nfev"], njev=count["nfev"],
                      status=status, message=message, history=history,
                      threads=torch.get_num_threads())


# ---------------------------------------------------------------------------------------------
# scipy peers
# ---------------------------------------------------------------------------------------------


class _Stop(Exception):
    """Raised inside least_squares' callbacks to end the run at its last accepted iterate."""


_SCIPY_STATUS = {0: R.MAX_ITER, 1: R.CONVERGED, 2: R.CONVERGED, 3: R.CONVERGED, 4: R.CONVERGED}


def _fit_scipy(problem, params0, o, name, t0) -> Result:
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

_IPOPT_STATUS = {
    "Solve_Succeeded": R.CONVERGED,
    "Solved_To_Acceptable_Level": R.CONVERGED,
    "Feasible_Point_Found": R.CONVERGED,
    "Maximum_Iterations_Exceeded": R.MAX_ITER,
    "Maximum_CpuTime_Exceeded": R.MAX_ITER,
    "Maximum_WallTime_Exceeded": R.MAX_ITER,
    "Search_Direction_Becomes_Too_Small": R.STALLED,
    "Infeasible_Problem_Detected": R.STALLED,
    "Not_Enough_Degrees_Of_Freedom": R.STALLED,
    "Restoration_Failed": R.LINE_SEARCH_FAILED,
    "Error_In_Step_Computation": R.LINE_SEARCH_FAILED,
    "Diverging_Iterates": R.DIVERGED,
    "Invalid_Number_Detected": R.DIVERGED,
    "User_Requested_Stop": R.INTERRUPTED,
}


def _casadi_activation(name: str):
    import casadi as ca

    acts = {
        "identity": lambda a: a,
        "relu": lambda a: ca.fmax(a, 0),                 # nonsmooth at 0 (module docstring)
        "leaky_relu": lambda a: ca.fmax(a, 0.01 * a),
        "tanh": ca.tanh,
        "sigmoid": lambda a: 1.0 / (1.0 + ca.exp(-a)),
        "softplus": lambda a: ca.fmax(a, 0) + ca.log1p(ca.exp(-ca.fabs(a))),  # overflow-free
    }
    if name not in acts:
        raise LiftnnError(f"activation {name!r} has no CasADi expression here")
    return acts[name]


def _ipopt_timer_callback(nx: int, ng: int):
    """A casadi iteration_callback recording the wall time of every IPOPT iteration."""
    import casadi as ca

    class Timer(ca.Callback):
        def __init__(self):
            ca.Callback.__init__(self)
            self.times: list[float] = []
            self.construct("liftnn_ipopt_timer", {})

        def get_n_in(self):
            return ca.nlpsol_n_out()

        def get_n_out(self):
            return 1

        def get_name_in(self, i):
            return ca.nlpsol_out(i)

        def get_name_out(self, i):
            return "ret"

        def get_sparsity_in(self, i):
            n = ca.nlpsol_out(i)
            if n == "f":
                return ca.Sparsity.scalar()
            if n in ("x", "lam_x"):
                return ca.Sparsity.dense(nx)
            if n in ("g", "lam_g"):
                return ca.Sparsity.dense(ng)
            return ca.Sparsity(0, 0)

        def eval(self, arg):
            self.times.append(time.perf_counter())
            return [0]

    return Timer()


def lifted_nlp(problem, symbolic: str = "SX"):
    """The multiple-shooting NLP of `problem` as CasADi expressions.

    Returns (nlp, layout): nlp = {"x": w, "f": objective, "g": h} with w = [vec(W_0), b_0, ...,
    vec(W_L), b_L, vec(Z_1), ..., vec(Z_L)] (vec column-major, Z_j of shape (d_j, m)) and
    h = [vec(Z_j - sigma_j(W_j Z_{j-1} + b_j))]_j; layout: a list of ("W"|"b"|"Z", j, shape) per
    block of w, in order.
    """
    import casadi as ca

    Sym = ca.SX if symbolic == "SX" else ca.MX
    model = problem.model
    X = np.asarray(problem.X, np.float64).T      # (d_in, m)
    Y = np.asarray(problem.Y, np.float64).T      # (d_out, m)
    m = X.shape[1]
    ones = ca.DM.ones(1, m)
    theta, states, layout, g = [], [], [], []
    z = ca.DM(X)
    out = None
    L = model.n_layers
    for j, (i, o) in enumerate(zip(model.sizes[:-1], model.sizes[1:])):
        W = Sym.sym(f"W{j}", o, i)
        theta.append(ca.vec(W))
        layout.append(("W", j, (o, i)))
        a = ca.mtimes(W, z)
        if model.bias:
            b = Sym.sym(f"b{j}", o)
            theta.append(b)
            layout.append(("b", j, (o,)))
            a = a + ca.mtimes(b, ones)
        s = _casadi_activation(model.activations[j])(a)
        if j < L - 1:
            Z = Sym.sym(f"Z{j + 1}", o, m)
            states.append(ca.vec(Z))
            g.append(ca.vec(Z - s))
            z = Z
        else:
            out = s
    layout += [("Z", j + 1, (model.sizes[j + 1], m)) for j in range(L - 1)]
    diff = out - ca.DM(Y)
    if problem.loss == "mse":
        f = ca.sumsqr(diff) / float(Y.size)
    else:  # "sse"
        f = 0.5 * ca.sumsqr(diff)
    th = ca.vertcat(*theta)
    if problem.weight_decay:
        f = f + 0.5 * float(problem.weight_decay) * ca.sumsqr(th)
    w = ca.vertcat(th, *states)
    h = ca.vertcat(*g) if g else Sym(0, 1)
    return {"x": w, "f": f, "g": h}, layout


def _fit_ipopt(problem, params0, o, name, t0) -> Result:
    """ipopt-ms: IPOPT on the lifted problem from the feasible start (module docstring)."""
    import casadi as ca
    import jax.numpy as jnp

    nlp, layout = lifted_nlp(problem, o["symbolic"])
    # feasible start: the states of the network simulated from params0
    _, outs = problem.model.forward([(jnp.asarray(W), None if b is None else jnp.asarray(b))
                                     for W, b in params0], problem.X)
    w0 = []
    for kind, j, shape in layout:
        if kind == "W":
            w0.append(params0[j][0].reshape(-1, order="F"))
        elif kind == "b":
            w0.append(params0[j][1])
        else:
            w0.append(np.asarray(outs[j], np.float64).T.reshape(-1, order="F"))
    w0 = np.concatenate(w0)
    nx, ng = int(nlp["x"].numel()), int(nlp["g"].numel())
    timer = _ipopt_timer_callback(nx, ng)
    ipopt = {"max_iter": o["max_iter"], "tol": o["tol"], "print_level": o["print_level"],
             "sb": "yes", "hessian_approximation": o["hessian_approximation"],
             "linear_solver": o["linear_solver"]}
    if o["time_budget"] is not None:
        ipopt["max_wall_time"] = float(max(o["time_budget"] - (time.perf_counter() - t0), 1e-3))
    ipopt.update(o["ipopt_options"])
    try:
        solver = ca.nlpsol("liftnn_ipopt_ms", "ipopt", nlp,
                           {"print_time": False, "iteration_callback": timer, "ipopt": ipopt})
    except RuntimeError as exc:
        raise LiftnnError(f"ipopt-ms: CasADi/IPOPT refused the options ({exc})") from None
    sol = solver(x0=w0, lbg=0.0, ubg=0.0)
    stats = solver.stats()
    w = np.asarray(sol["x"], np.float64).reshape(-1)
    params, k = [], 0
    for kind, j, shape in layout:
        size = int(np.prod(shape))
        block = w[k:k + size]
        k += size
        if kind == "W":
            params.append([block.reshape(shape, order="F"), None])
        elif kind == "b":
            params[j][1] = block.copy()
    params = [tuple(p) for p in params]
    its = stats.get("iterations", {}) or {}
    objs, infs = its.get("obj", []), its.get("inf_pr", [])
    history = [{"iter": i, "loss": float(f), "constraint_violation": float(v), "time": t - t0}
               for i, (f, v, t) in enumerate(zip(objs, infs, timer.times))]
    rstatus = str(stats.get("return_status", "unknown"))
    g_val = np.asarray(sol["g"], np.float64).reshape(-1)
    return Result(
        params=params, nit=int(stats.get("iter_count", len(history))),
        nfev=int(stats.get("n_call_nlp_f", 0)), njev=int(stats.get("n_call_nlp_grad_f", 0)),
        nhev=int(stats.get("n_call_nlp_hess_l", 0)),
        status=_IPOPT_STATUS.get(rstatus, R.STALLED), message=f"IPOPT: {rstatus}",
        history=history, ipopt_status=rstatus, fun_lifted=float(sol["f"]),
        constraint_violation=float(np.max(np.abs(g_val))) if g_val.size else 0.0,
        n_variables=nx, n_constraints=ng)
