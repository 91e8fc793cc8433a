"""Peers (liftnn.bench.peers): the same network, objective and initial weights as liftnn's solvers.

What these tests prove:
- the torch network built from liftnn params reproduces liftnn's forward pass to 1e-12 for every
  activation (with and without biases) and hands the params back bit for bit;
- every peer minimises liftnn's objective: its recorded initial loss equals
  TrainingProblem.objective(params0) (weight decay included) to 1e-12, and on sin2 (n = 10,
  tanh 1-4-1) it lowers the loss and returns finite params with a valid status;
- torch-adam stops by Keras's EarlyStopping rule; minibatches are seeded;
- scipy-lm's final cost equals liftnn's objective at the returned params; max_iter stops it at
  an accepted iterate;
- ipopt-ms ends feasible, so the network simulated from its weights has the loss IPOPT reports;
- bad input (peer, option, value, loss, params0) raises LiftnnError before any work, and a
  missing library is reported with the install hint.
Peers whose library is missing are skipped with `available()`'s reason.
"""

from __future__ import annotations

import dataclasses
import math
import sys

import jax.numpy as jnp
import numpy as np
import pytest

import liftnn as ln
from liftnn.bench import peers
from liftnn.errors import LiftnnError
from liftnn.problem import TrainingProblem
from liftnn.solvers.result import STATUSES


def need(name: str) -> None:
    ok, reason = peers.available(name)
    if not ok:
        pytest.skip(reason)


@pytest.fixture(scope="module")
def sin2():
    data = ln.datasets.load("sin2", n=10)
    model = ln.MLP("1-4-1", activation="tanh")
    return model, data, model.init(0)


def _objective(model, data, params, weight_decay=0.0) -> float:
    problem = TrainingProblem(model, data.x_train, data.y_train, weight_decay=weight_decay)
    return float(problem.objective([(jnp.asarray(W), None if b is None else jnp.asarray(b))
                                    for W, b in params]))


# small limits keep the whole file fast; each still runs the peer's real loop
FAST = {  # the peers of torch, scipy and casadi (the others: tests/bench/test_peers_more.py)
    "torch-adam": {"max_iter": 200},
    "torch-sgd": {"max_iter": 200, "lr": 0.05},
    "torch-lbfgs": {"max_iter": 50},
    "scipy-lm": {"max_iter": 50},
    "scipy-trf": {"max_iter": 50},
    "ipopt-ms": {"max_iter": 200},
}


def test_peer_names_are_the_interface():
    assert list(peers.PEERS) == ["torch-adam", "torch-sgd", "torch-lbfgs", "scipy-lm",
                                 "scipy-trf", "ipopt-ms", "optimistix-lm", "optimistix-gn",
                                 "torch-lm", "sklearn-lbfgs", "sklearn-adam"]
    assert peers.options("torch-adam")["lr"] == 1e-3
    assert peers.options("torch-adam")["patience"] == 10
    assert peers.options("torch-adam")["max_iter"] == 4000
    assert peers.options("torch-adam")["batch_size"] is None


@pytest.mark.parametrize("bias", [True, False])
def test_torch_network_reproduces_liftnn_forward_pass(bias):
    need("torch-adam")
    import torch

    model = ln.MLP((3, 6, 5, 5, 5, 4, 2),
                   activation=("softplus", "relu", "leaky_relu", "tanh", "sigmoid"),
                   output_activation="identity", bias=bias, init="normal(3.0)")
    params = model.init(7)
    # large inputs and weights: every activation sees both signs and large arguments
    X = np.random.default_rng(0).uniform(-30.0, 30.0, size=(64, 3))
    net = peers.torch_network(model, params)
    with torch.no_grad():
        out = net(torch.from_numpy(X)).numpy()
    ref = np.asarray(model.apply(params, jnp.asarray(X)))
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-12)
    back = peers.torch_params(net)
    for (W, b), (W2, b2) in zip(params, back):
        np.testing.assert_array_equal(np.asarray(W), W2)
        if bias:
            np.testing.assert_array_equal(np.asarray(b), b2)
        else:
            assert b2 is None


def test_torch_softplus_matches_jax_beyond_20():
    """torch.nn.Softplus returns a itself for a > 20 (off by e^-a, 3.6e-11 relative at a = 21);
    the peer's softplus is exact there and overflow-free at a = 800."""
    need("torch-adam")
    import torch

    model = ln.MLP((1, 1), output_activation="softplus")
    params = [(np.ones((1, 1)), np.zeros(1))]
    X = np.array([[-800.0], [-50.0], [-1.0], [0.0], [1.0], [19.0], [21.0], [25.0], [40.0], [800.0]])
    with torch.no_grad():
        out = peers.torch_network(model, params)(torch.from_numpy(X)).numpy()
        naive = torch.nn.Softplus()(torch.from_numpy(X)).numpy()
    ref = np.asarray(model.apply(params, jnp.asarray(X)))
    np.testing.assert_allclose(out, ref, rtol=1e-15, atol=0)
    assert abs(naive[6, 0] - ref[6, 0]) / ref[6, 0] > 1e-11  # a = 21: why not nn.Softplus


@pytest.mark.parametrize("name", list(FAST))
def test_peer_reduces_the_loss_on_sin2(name, sin2):
    need(name)
    model, data, p0 = sin2
    loss0 = _objective(model, data, p0)
    r = peers.fit_peer(name, model, data, p0, **FAST[name])
    assert r.status in STATUSES
    assert r.success == (r.status in ("converged", "stalled"))
    assert r.method == name and r.init == "glorot_uniform" and r.n == 10
    assert len(r.params) == 2
    for (W, b), (W0, b0) in zip(r.params, p0):
        assert W.shape == W0.shape and b.shape == b0.shape
        assert W.dtype == np.float64 and np.all(np.isfinite(W)) and np.all(np.isfinite(b))
    assert r.x.shape == (model.n_params,)
    # fun is liftnn's objective at the returned weights; train/test MSE from the liftnn model
    assert r.fun == pytest.approx(_objective(model, data, r.params), rel=1e-12, abs=1e-15)
    assert r.train_mse == pytest.approx(r.fun, rel=1e-12, abs=1e-15)
    assert math.isfinite(r.test_mse)
    assert r.fun < 0.9 * loss0, f"{name} did not lower the loss: {loss0} -> {r.fun}"
    assert r.nit >= 1 and r.nfev >= 1 and r.time_s > 0
    assert r.history and all({"iter", "loss", "time"} <= set(h) for h in r.history)
    times = [h["time"] for h in r.history]
    assert times == sorted(times) and times[-1] <= r.time_s


@pytest.mark.parametrize("name", list(FAST))
def test_peer_objective_is_liftnns_objective(name, sin2):
    """The first recorded loss is the objective at params0, weight decay included, to 1e-12."""
    need(name)
    model, data, p0 = sin2
    wd = 0.01
    r = peers.fit_peer(name, model, data, p0, weight_decay=wd, max_iter=1)
    expected = _objective(model, data, p0, weight_decay=wd)
    assert r.history[0]["loss"] == pytest.approx(expected, rel=1e-12)
    assert r.fun == pytest.approx(_objective(model, data, r.params, weight_decay=wd), rel=1e-12)
    assert r.status == "max_iter" or r.status in ("converged", "stalled")


def test_torch_adam_stops_by_keras_early_stopping(sin2):
    need("torch-adam")
    model, data, p0 = sin2
    # lr 0.5 makes Adam overshoot, so the training loss stops improving after a few epochs
    r = peers.fit_peer("torch-adam", model, data, p0, lr=0.5, patience=3)
    h = r.history_array("loss")
    best = int(np.argmin(h))
    assert r.status == "stalled" and r.success
    # Keras: stop once `patience` epochs in a row did not beat the best loss
    assert len(h) == best + 1 + 3 == r.nit
    assert np.all(h[best + 1:] >= h[best])
    # full batch: epoch 1 logs the loss of the initial weights (before its update), and the
    # final weights (not the best) are returned
    assert h[0] == pytest.approx(_objective(model, data, p0), rel=1e-12)
    assert r.nfev == r.nit


def test_torch_adam_minibatches_are_seeded(sin2):
    need("torch-adam")
    model, data, p0 = sin2
    a = peers.fit_peer("torch-adam", model, data, p0, batch_size=3, max_iter=5, patience=None)
    b = peers.fit_peer("torch-adam", model, data, p0, batch_size=3, max_iter=5, patience=None)
    c = peers.fit_peer("torch-adam", model, data, p0, batch_size=3, max_iter=5, patience=None,
                       shuffle_seed=1)
    assert a.nfev == 5 * 4  # ceil(10 / 3) steps per epoch
    np.testing.assert_array_equal(a.x, b.x)
    assert not np.array_equal(a.x, c.x)


def test_torch_lbfgs_matches_a_single_torch_call(sin2):
    """Stepping one iteration per call follows the same iterates as one long LBFGS call."""
    need("torch-lbfgs")
    import torch

    model, data, p0 = sin2
    r = peers.fit_peer("torch-lbfgs", model, data, p0, max_iter=30, tolerance_change=0.0,
                       tolerance_grad=0.0)
    net = peers.torch_network(model, p0)
    X, Y = torch.from_numpy(data.x_train), torch.from_numpy(data.y_train)
    opt = torch.optim.LBFGS(net.parameters(), max_iter=30, max_eval=10**6, history_size=100,
                            tolerance_change=0.0, tolerance_grad=0.0,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        L = torch.nn.functional.mse_loss(net(X), Y)
        L.backward()
        return L

    opt.step(closure)
    ref = np.concatenate([np.concatenate([W.reshape(-1), b]) for W, b in peers.torch_params(net)])
    assert r.nit == 30
    np.testing.assert_allclose(r.x, ref, rtol=1e-9, atol=1e-12)


def test_scipy_lm_cost_is_liftnns_objective(sin2):
    model, data, p0 = sin2
    wd = 1e-3
    r = peers.fit_peer("scipy-lm", model, data, p0, weight_decay=wd, max_iter=40)
    assert r.cost == pytest.approx(_objective(model, data, r.params, weight_decay=wd), rel=1e-12)
    assert r.fun == pytest.approx(r.cost, rel=1e-12)
    # 13 weights, 10 + 13 residuals with weight decay: no zero rows needed; without it there are
    r2 = peers.fit_peer("scipy-lm", model, data, p0, max_iter=3)
    assert "padded_rows" not in r and r2.padded_rows == 3
    # max_iter stops at the third accepted iterate, whose cost is the last recorded loss
    assert r2.status == "max_iter" and r2.nit == 3 and len(r2.history) == 4
    assert r2.fun == pytest.approx(r2.history[-1]["loss"], rel=1e-12)
    assert [h["iter"] for h in r2.history] == [0, 1, 2, 3]
    losses = [h["loss"] for h in r2.history]
    assert losses == sorted(losses, reverse=True)  # LM only accepts decreasing steps


def test_ipopt_ms_ends_feasible(sin2):
    need("ipopt-ms")
    model, data, p0 = sin2
    r = peers.fit_peer("ipopt-ms", model, data, p0)
    assert r.status == "converged" and r.ipopt_status == "Solve_Succeeded"
    assert r.nit == len(r.history) - 1
    assert r.n_variables == model.n_params + 4 * 10 and r.n_constraints == 4 * 10
    # the start is feasible (states simulated from params0) ...
    assert r.history[0]["constraint_violation"] <= 1e-12
    assert r.history[0]["loss"] == pytest.approx(_objective(model, data, p0), rel=1e-12)
    # ... and so is the end: the simulated network has the loss IPOPT minimised
    assert r.constraint_violation <= 1e-6
    assert r.train_mse == pytest.approx(r.fun_lifted, rel=1e-4, abs=1e-8)
    assert r.train_mse < 0.5 * r.history[0]["loss"]


def test_ipopt_ms_limited_memory_and_relu(sin2):
    need("ipopt-ms")
    _, data, _ = sin2
    model = ln.MLP("1-4-1", activation="relu")
    p0 = model.init(1)
    r = peers.fit_peer("ipopt-ms", model, data, p0, hessian_approximation="limited-memory",
                       max_iter=100)
    assert r.status in STATUSES and np.all(np.isfinite(r.x))
    assert r.fun < _objective(model, data, p0)


# ---- bad input ------------------------------------------------------------------------------


@pytest.fixture
def no_work(monkeypatch):
    """Make every fitting routine fail loudly: an error must come before any of them runs."""
    for name, spec in peers.PEERS.items():
        monkeypatch.setitem(peers.PEERS, name, dataclasses.replace(
            spec, fit=lambda *a, **k: pytest.fail("work started")))


def test_unknown_peer_lists_the_names(sin2, no_work):
    model, data, p0 = sin2
    with pytest.raises(LiftnnError, match="unknown peer 'keras-adam'") as err:
        peers.fit_peer("keras-adam", model, data, p0)
    for name in ("torch-adam", "ipopt-ms", "scipy-lm", "optimistix-lm", "torch-lm", "sklearn-adam"):
        assert name in str(err.value)
    with pytest.raises(LiftnnError, match="unknown peer"):
        peers.available("keras-adam")


@pytest.mark.parametrize("name, opts, match", [
    ("torch-adam", {"learning_rate": 0.1}, r"no option\(s\) 'learning_rate'.*valid options:.*lr"),
    ("scipy-lm", {"momentum": 0.9}, r"no option\(s\) 'momentum'.*ftol"),
    ("ipopt-ms", {"maxiter": 5}, r"no option\(s\) 'maxiter'.*max_iter"),
    ("torch-adam", {"lr": -1.0}, "'lr' must be > 0"),
    ("torch-adam", {"max_iter": 2.5}, "'max_iter' must be an integer"),
    ("torch-sgd", {"nesterov": True}, "nesterov=True needs momentum > 0"),
    ("scipy-lm", {"ftol": 0.0}, "machine epsilon"),
    ("scipy-trf", {"jac": "central"}, "'jac' must be one of"),
    ("ipopt-ms", {"hessian_approximation": "bfgs"}, "'hessian_approximation' must be one of"),
])
def test_bad_options_fail_before_work(sin2, no_work, name, opts, match):
    model, data, p0 = sin2
    with pytest.raises(LiftnnError, match=match):
        peers.fit_peer(name, model, data, p0, **opts)


def test_bad_loss_and_params_fail_before_work(sin2, no_work):
    model, data, p0 = sin2
    with pytest.raises(LiftnnError, match="does not support loss 'cross_entropy'.*mse"):
        peers.fit_peer("scipy-lm", model, data, p0, loss="cross_entropy")
    with pytest.raises(LiftnnError, match=r"layer 0: W has shape \(4, 2\)"):
        peers.fit_peer("scipy-lm", model, data, [(np.zeros((4, 2)), np.zeros(4)), p0[1]])
    with pytest.raises(LiftnnError, match="list of 2"):
        peers.fit_peer("scipy-trf", model, data, p0[:1])
    with pytest.raises(LiftnnError, match="non-finite"):
        peers.fit_peer("scipy-trf", model, data, [(np.full((4, 1), np.nan), np.zeros(4)), p0[1]])


# (modules made unimportable, the peer asked about, words its reason must hold, a sibling peer
# of the same library that fit_peer must refuse)
MISSING = [
    (("torch",), "torch-adam",
     ["torch is not installed (pip install 'liftnn[peers]', torch==2.13.0 first)"], "torch-lbfgs"),
    (("casadi",), "ipopt-ms", ["casadi is not installed"], "ipopt-ms"),
    (("optimistix",), "optimistix-gn",
     ["optimistix is not installed (pip install 'liftnn[peers]' (or: pip install optimistix))"],
     "optimistix-lm"),
    (("torch_levenberg_marquardt",), "torch-lm",
     ["torch_levenberg_marquardt is not installed", "pip install torch-levenberg-marquardt==1.2.3"],
     "torch-lm"),
    (("sklearn.neural_network",), "sklearn-lbfgs", ["pip install scikit-learn"], "sklearn-adam"),
]


@pytest.mark.parametrize("hidden, name, words, sibling", MISSING)
def test_missing_library_is_reported_with_the_install_hint(monkeypatch, no_work, sin2, hidden,
                                                           name, words, sibling):
    model, data, p0 = sin2
    peers._family_available.cache_clear()
    for module in hidden:
        monkeypatch.setitem(sys.modules, module, None)  # makes `import module` raise ImportError
    try:
        ok, reason = peers.available(name)
        assert not ok
        for w in words:
            assert w in reason
        assert peers.available("scipy-lm") == (True, "")
        first_words = reason.split(" (")[0]
        with pytest.raises(LiftnnError, match=f"'{sibling}' is not available: {first_words}"):
            peers.fit_peer(sibling, model, data, p0)
    finally:
        peers._family_available.cache_clear()
