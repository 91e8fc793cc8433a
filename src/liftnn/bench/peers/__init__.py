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
"optimistix-lm"  optimistix LevenbergMarquardt, single shooting   what a JAX user would pick
"optimistix-gn"  optimistix GaussNewton (unit steps), same        (peers.optimistix)
"torch-lm"       torch-levenberg-marquardt 1.2.3                  MATLAB trainlm in PyTorch
"sklearn-lbfgs"  scikit-learn MLPRegressor/-Classifier, lbfgs     what a scikit-learn user picks
"sklearn-adam"   the same with solver="adam"                      (peers.sklearn)
===============  ==============================================  ==================================

The last five are optional extras (``pip install 'liftnn[peers]'``, torch==2.13.0 first); each
module's docstring states its protocol and where the library cannot minimise exactly liftnn's
objective (scikit-learn's alpha/(2n)||W||^2 penalty on the weights only; torch-lm without weight
decay).

All peers minimise the objective liftnn's own solvers minimise (liftnn.problem.TrainingProblem):

    C(theta) = loss(f_theta(X), Y) + weight_decay / 2 * ||theta||^2,   "mse" = mean (f - Y)^2,

start from the same initial weights (``params0``, liftnn format: a list of (W, b), W (out, in),
b None without biases) and are judged the same way: `fit_peer` returns a liftnn Result whose
train_mse / test_mse are recomputed from the returned weights with the liftnn model in float64.
Everything runs in float64.

Protocols
---------
**torch-adam / torch-sgd** (the thesis's Keras protocol, docs/benchmarks.md). An equivalent
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
ch. 1.5; docs/benchmarks.md): CasADi builds the lifted NLP with variables W_j, b_j and the states
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
import time
from typing import Any

from liftnn.bench.peers import casadi as _casadi
from liftnn.bench.peers import optimistix as _optimistix
from liftnn.bench.peers import scipy as _scipy
from liftnn.bench.peers import sklearn as _sklearn
from liftnn.bench.peers import torch as _torch
from liftnn.bench.peers import torch_lm as _torch_lm
from liftnn.bench.peers.common import PeerSpec, check_params, finish
from liftnn.bench.peers.torch import torch_network, torch_params
from liftnn.errors import LiftnnError
from liftnn.solvers.result import Result

PEERS: dict[str, PeerSpec] = {**_torch.PEERS, **_scipy.PEERS, **_casadi.PEERS,
                              **_optimistix.PEERS, **_torch_lm.PEERS, **_sklearn.PEERS}
_FAMILIES = {"torch": _torch, "scipy": _scipy, "casadi": _casadi, "optimistix": _optimistix,
             "torch-lm": _torch_lm, "sklearn": _sklearn}

__all__ = ["PEERS", "PeerSpec", "available", "check_setup", "fit_peer", "options", "torch_network",
           "torch_params"]


def _spec(name: str) -> PeerSpec:
    if name not in PEERS:
        raise LiftnnError(f"unknown peer {name!r}; choose one of: {', '.join(PEERS)}")
    return PEERS[name]



@functools.cache
def _family_available(family: str) -> tuple[bool, str]:
    return _FAMILIES[family].available()


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


def _checked_options(spec: PeerSpec, name: str, loss: str, options: dict) -> dict:
    """The peer's options checked and completed with the defaults; the loss checked."""
    unknown = sorted(set(options) - set(spec.options))
    if unknown:
        raise LiftnnError(f"peer {name!r} has no option(s) {', '.join(map(repr, unknown))}; valid "
                          f"options: {', '.join(spec.options)}")
    opts = {k: check(k, options[k]) if k in options else default
            for k, (default, check) in spec.options.items()}
    if loss not in spec.losses:
        raise LiftnnError(f"peer {name!r} does not support loss {loss!r}; choose one of: "
                          f"{', '.join(spec.losses)}")
    if spec.check is not None:
        spec.check(opts)
    return opts


def check_setup(name: str, model, *, loss: str = "mse", weight_decay: float = 0.0,
                **options) -> None:
    """What fit_peer checks that needs neither data nor the peer's library: the options, the
    loss, and whether the library can represent this model and objective (e.g. scikit-learn
    has no weight_decay); raises LiftnnError.  Suites call it when they are read, so a
    configuration that every run would refuse fails before any run."""
    spec = _spec(name)
    opts = _checked_options(spec, name, loss, options)
    if spec.validate is not None:
        spec.validate(name, opts, model, loss, weight_decay)


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
    opts = _checked_options(spec, name, loss, options)
    ok, reason = available(name)
    if not ok:
        raise LiftnnError(f"peer {name!r} is not available: {reason}")
    if spec.validate is not None:
        spec.validate(name, opts, model, loss, weight_decay)
    problem = TrainingProblem(model, dataset.x_train, dataset.y_train, loss=loss,
                              weight_decay=weight_decay)
    p0 = check_params(model, params0)

    t0 = time.perf_counter()
    res = spec.fit(problem, p0, opts, name, t0)
    res["time_s"] = time.perf_counter() - t0
    return finish(res, problem, dataset, model, name)

