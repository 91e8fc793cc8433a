"""The torch peers: torch-adam and torch-sgd (the thesis's Keras protocol, an epoch loop) and
torch-lbfgs (torch.optim.LBFGS with strong-Wolfe line search); the protocols are described in
liftnn.bench.peers.  torch is imported inside the functions: it is an optional extra.
"""

from __future__ import annotations

import functools
import math
import os
import time
from collections import deque

import numpy as np

from liftnn.bench.peers.common import POS, POS_INT, TIME, PeerSpec, budget_stop, flag, number
from liftnn.errors import LiftnnError
from liftnn.solvers import result as R
from liftnn.solvers.result import Result

HINT = "pip install 'liftnn[peers]', torch==2.13.0 first"


def available() -> tuple[bool, str]:
    """(True, "") if torch imports (then its one-time costs are paid: warm_up), else why not."""
    try:
        import torch  # noqa: F401
    except ImportError:
        return False, f"torch is not installed ({HINT})"
    except Exception as exc:  # noqa: BLE001 - a broken install: say what broke
        return False, f"torch cannot be imported ({type(exc).__name__}: {exc}; {HINT})"
    warm_up()
    return True, ""


def warm_up() -> None:
    """Pay torch's one-time per-process costs here, not in the first timed fit.

    The first torch.optim optimiser built in a process imports torch._dynamo (3.5 s on the
    development machine, as long as `import torch` itself); later ones take microseconds.
    """
    import torch

    w = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    for opt in (torch.optim.Adam([w]), torch.optim.SGD([w], lr=0.0),
                torch.optim.LBFGS([w], line_search_fn="strong_wolfe")):
        opt.zero_grad()



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


class Threads:
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


def fit_epochs(problem, params0, o, name, t0) -> Result:
    """torch-adam / torch-sgd under the Keras protocol (module docstring)."""
    import torch

    with Threads(o["threads"]):
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


def fit_lbfgs(problem, params0, o, name, t0) -> Result:
    """torch-lbfgs: torch.optim.LBFGS(strong_wolfe), one iteration per step() (module docstring)."""
    import torch

    with Threads(o["threads"]):
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
                stop = budget_stop(nit, o, t0)
                if stop is not None:
                    status, message = stop
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




def _check_sgd(opts: dict) -> None:
    if opts["nesterov"] and opts["momentum"] <= 0:
        raise LiftnnError("torch-sgd: nesterov=True needs momentum > 0")


KERAS = {  # the epoch loop shared by torch-adam and torch-sgd
    "max_iter": (4000, POS_INT),
    "patience": (10, number(0, strict=False, none=True, integer=True)),
    "min_delta": (0.0, number(0.0, strict=False)),
    "batch_size": (None, number(0, none=True, integer=True)),
    "shuffle_seed": (0, number(0, strict=False, integer=True)),
    "threads": (1, number(0, none=True, integer=True)),
    "time_budget": (None, TIME),
}
LOSSES = ("mse", "sse", "cross_entropy")

PEERS: dict[str, PeerSpec] = {
    "torch-adam": PeerSpec(
        "torch-adam", "torch",
        "PyTorch Adam, Keras protocol: full batch, lr 1e-3, stop after 10 epochs without "
        "improvement",
        {**KERAS, "lr": (1e-3, POS), "b1": (0.9, number(0.0, 1.0, strict=False)),
         "b2": (0.999, number(0.0, 1.0, strict=False)), "eps": (1e-8, POS)},
        LOSSES, fit_epochs),
    "torch-sgd": PeerSpec(
        "torch-sgd", "torch",
        "PyTorch SGD (+momentum), Keras protocol: full batch, lr 1e-2, patience 10",
        {**KERAS, "lr": (1e-2, POS), "momentum": (0.0, number(0.0, strict=False)),
         "nesterov": (False, flag)},
        LOSSES, fit_epochs, _check_sgd),
    "torch-lbfgs": PeerSpec(
        "torch-lbfgs", "torch",
        "PyTorch L-BFGS with strong-Wolfe line search, full batch",
        {"max_iter": (1000, POS_INT), "lr": (1.0, POS), "history_size": (100, POS_INT),
         "tolerance_grad": (1e-7, number(0.0, strict=False)),
         "tolerance_change": (1e-9, number(0.0, strict=False)),
         "threads": (1, number(0, none=True, integer=True)), "time_budget": (None, TIME)},
        LOSSES, fit_lbfgs),
}
