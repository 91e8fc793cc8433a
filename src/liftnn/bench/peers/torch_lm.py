"""torch-lm: torch-levenberg-marquardt 1.2.3 (the PyTorch port of MATLAB trainlm) on liftnn's net.

The network is liftnn.bench.peers.torch_network (float64 torch.nn.Sequential holding params0
exactly).  The library's LevenbergMarquardtModule does one LM iteration per ``training_step``
on the full batch; this peer calls it in a loop (the library's own `utils.fit` is the same loop
driven by PyTorch Lightning, with progress bars and logging we do not want timed):

    JJ = J^T J / m,  g = J^T r / m         (m = batch size: the library normalises by it)
    repeat: d = (JJ + mu I)^{-1} g  (QR by default; J^T (J J^T / m + mu I)^{-1} r / m when
            there are fewer residuals than weights), theta <- theta - d;
            loss lower -> accept, mu <- max(mu * mu_dec, mu_min); else restore theta and
            mu <- min(mu * mu_inc, mu_max)
    until a step is accepted, or mu reaches mu_max (the library stops training: trainlm's
    "maximum mu reached"), or `attempts_per_step` trials failed.

Damping (StandardDampingStrategy): mu 1e-3, mu_dec 0.1, mu_inc 10, mu_max 1e10 (trainlm's
values, DESIGN's anchors) and the library's floor mu_min 1e-10.  Because JJ is divided by m,
the library's mu is trainlm's mu / m.  The damping tensors are built in float64.

attempts_per_step: the library's default is 10, after which it keeps the last trial step even if
it raised the loss (trainlm has no such limit).  The default here (None) is the number of
increases that take mu from mu_min to mu_max, plus one, so every iteration ends as trainlm's
does: an accepted step or mu at mu_max.  Give 10 for the library's behaviour.

Objective: the library's MSELoss (mean of (f - Y)^2 over all entries) is liftnn's "mse"; "sse"
uses a Loss subclass with forward 1/2 sum (f - Y)^2 and the same residuals f - Y (its iterates
equal mse's: the step uses only the residuals and acceptance compares the losses).  The
library's residuals are per-sample network errors, so it cannot add the rows
sqrt(weight_decay) theta: weight_decay > 0 is refused.

Stopping and status: the library's stop (mu reached mu_max, no trial lowered the loss) ->
"stalled" (success, as liftnn's "lm" reports the same stop); max_iter iterations or the
time budget -> "max_iter"; a non-finite loss after an iteration (possible only when
attempts_per_step runs out) -> "diverged" with the previous iterate restored.  history[k]: the
loss C after iteration k (iter 0 = params0, recomputed by a forward pass, not the library's
returned value, which is stale when attempts run out), "mu" (the library's damping after the
iteration) and "trials".  nfev counts the library's forward passes (one per Jacobian plus one
per trial), njev = nit.
"""

from __future__ import annotations

import contextlib
import functools
import math
import time

import numpy as np

from liftnn.bench.peers.common import (
    POS,
    POS_INT,
    TIME,
    PeerSpec,
    budget_stop,
    choice,
    flag,
    import_reason,
    number,
)
from liftnn.errors import LiftnnError
from liftnn.solvers import result as R
from liftnn.solvers.result import Result


def validate(name, o, model, loss, weight_decay) -> None:
    """Checks before any work (the option values are already checked one by one)."""
    if weight_decay:
        raise LiftnnError("torch-lm: torch-levenberg-marquardt's residuals are the network's "
                          "per-sample errors; it cannot add weight decay (use weight_decay=0)")
    if not o["mu_min"] <= o["mu"] <= o["mu_max"]:
        raise LiftnnError(f"torch-lm: need mu_min <= mu <= mu_max; got mu_min={o['mu_min']:g}, "
                          f"mu={o['mu']:g}, mu_max={o['mu_max']:g}")


def default_attempts(o) -> int:
    """Trials per iteration that let mu climb from mu_min to mu_max (plus the first)."""
    return math.ceil(math.log(o["mu_max"] / o["mu_min"]) / math.log(o["mu_inc"]) - 1e-9) + 1


@contextlib.contextmanager
def _float64_default():
    import torch

    prev = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(prev)


@functools.cache
def _sse_loss_class():
    from torch_levenberg_marquardt.loss import Loss

    class SSELoss(Loss):
        """1/2 sum (f - Y)^2 with residuals f - Y (liftnn's "sse")."""

        def forward(self, y_pred, y_true):
            return 0.5 * (y_pred - y_true).square().sum()

        def residuals(self, y_pred, y_true):
            return y_pred - y_true

    return SSELoss


def _module(net, loss: str, o):
    from torch_levenberg_marquardt.damping import StandardDampingStrategy
    from torch_levenberg_marquardt.loss import MSELoss
    from torch_levenberg_marquardt.training import LevenbergMarquardtModule

    with _float64_default():  # the strategy's tensors are created with the default dtype
        damping = StandardDampingStrategy(starting_value=o["mu"], dec_factor=o["mu_dec"],
                                          inc_factor=o["mu_inc"], min_value=o["mu_min"],
                                          max_value=o["mu_max"])
    attempts = o["attempts_per_step"] or default_attempts(o)
    return LevenbergMarquardtModule(net, loss_fn=MSELoss() if loss == "mse" else _sse_loss_class()(),
                                    damping_strategy=damping, learning_rate=1.0,
                                    attempts_per_step=attempts, solve_method=o["solve_method"],
                                    use_vmap=o["use_vmap"])


def warm_up() -> None:
    """One tiny LM step: pays torch.func's one-time costs outside the timed fits."""
    import torch

    net = torch.nn.Sequential(torch.nn.Linear(1, 2, dtype=torch.float64), torch.nn.Tanh(),
                              torch.nn.Linear(2, 1, dtype=torch.float64))
    o = {"mu": 1e-3, "mu_dec": 0.1, "mu_inc": 10.0, "mu_min": 1e-10, "mu_max": 1e10,
         "attempts_per_step": 2, "solve_method": "qr", "use_vmap": True}
    x = torch.linspace(0, 1, 4, dtype=torch.float64).reshape(-1, 1)
    _module(net, "mse", o).training_step(x, x)


def fit_torch_lm(problem, params0, o, name, t0) -> Result:
    """torch-lm from params0 (module docstring)."""
    import torch

    from liftnn.bench.peers.torch import Threads, torch_network, torch_params

    with Threads(o["threads"]):
        net = torch_network(problem.model, params0)
        lm = _module(net, problem.loss, o)
        X = torch.from_numpy(np.array(problem.X, np.float64))
        Y = torch.from_numpy(np.array(problem.Y, np.float64))

        def loss_now() -> float:
            with torch.no_grad():
                return float(lm.loss_fn(lm.forward(X), Y))

        history = [{"iter": 0, "loss": loss_now(), "mu": float(lm.damping_strategy
                                                              .get_current_damping()),
                    "trials": 0, "time": time.perf_counter() - t0}]
        nit = nfev = 0
        status = message = None
        try:
            while status is None:
                budget = budget_stop(nit, o, t0)
                if budget is not None:
                    status, message = budget
                    break
                before = lm.flat_params.clone()
                _, _, stop, logs = lm.training_step(X, Y)
                nit += 1
                trials = int(logs.get("attempts", 0))
                nfev += 1 + trials
                loss = loss_now()
                mu = float(logs["damping"])
                if not math.isfinite(loss):
                    with torch.no_grad():
                        lm.flat_params.copy_(before)
                    status, message = R.DIVERGED, (f"non-finite loss after iteration {nit}; "
                                                   "returned the previous iterate")
                    break
                history.append({"iter": nit, "loss": loss, "mu": mu, "trials": trials,
                                "time": time.perf_counter() - t0})
                if stop:
                    status, message = R.STALLED, (
                        f"torch-levenberg-marquardt stopped: mu reached mu_max = "
                        f"{o['mu_max']:g} (trainlm's stop), no trial lowered the loss")
        except KeyboardInterrupt:
            status, message = R.INTERRUPTED, f"interrupted after {nit} iterations"
        return Result(params=torch_params(net), nit=nit, nfev=nfev, njev=nit, status=status,
                      message=message, history=history, threads=torch.get_num_threads(),
                      attempts_per_step=lm.attempts_per_step)


HINT = ("pip install 'liftnn[peers]' (or: pip install torch-levenberg-marquardt==1.2.3), "
        "torch==2.13.0 first")


def available() -> tuple[bool, str]:
    """torch and torch-levenberg-marquardt are optional extras; a tiny LM step pays torch's
    one-time costs here, not in the first timed fit."""
    why = import_reason("torch", HINT) or import_reason("torch_levenberg_marquardt", HINT)
    if why:
        return False, why
    warm_up()
    return True, ""


PEERS: dict[str, PeerSpec] = {
    "torch-lm": PeerSpec(
        "torch-lm", "torch-lm",
        "torch-levenberg-marquardt (PyTorch trainlm): mu 1e-3, x10 / x0.1, stop at mu_max 1e10",
        {"max_iter": (500, POS_INT), "mu": (1e-3, POS),
         "mu_dec": (0.1, number(0.0, 1.0)), "mu_inc": (10.0, number(1.0)),
         "mu_min": (1e-10, POS), "mu_max": (1e10, POS),
         "attempts_per_step": (None, number(0, none=True, integer=True)),
         "solve_method": ("qr", choice("qr", "cholesky", "solve")),
         "use_vmap": (True, flag), "threads": (1, number(0, none=True, integer=True)),
         "time_budget": (None, TIME)},
        ("mse", "sse"), fit_torch_lm, validate=validate),
}
