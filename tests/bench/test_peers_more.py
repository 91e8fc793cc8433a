"""The peers a user would pick (liftnn.bench.peers): optimistix, torch-levenberg-marquardt, scikit-learn MLP.

What these tests prove:
- every peer starts from params0 and minimises the stated objective: its first recorded loss
  equals liftnn's objective at params0 to 1e-12 (weight decay included for optimistix; for
  scikit-learn adam its own objective mean (f - Y)^2 + alpha/n ||W||^2, and liftnn's exactly at
  alpha = 0, for regression and for 2- and 3-class cross-entropy); scikit-learn lbfgs started at
  a minimiser stays there (it would not if it drew its own weights);
- on sin2 (n = 10, tanh 1-4-1) each peer lowers the loss and returns finite params with a valid
  status, and its train/test MSE are liftnn's at the returned weights;
- optimistix-lm reaches the minimiser liftnn's own "lm" reaches from the same start (sin2 n = 20,
  tanh 1-3-1, weight decay 1e-3 so that the minimiser exists), up to the network's symmetries;
- torch-lm follows trainlm's damping rule (mu x0.1 on success, stop with status "stalled" at
  mu_max) and gives the same iterates for mse and sse;
- bad input raises LiftnnError before any work; a missing library is reported with the pip
  command.
Peers whose library is missing are skipped with `available()`'s reason.
"""

from __future__ import annotations

import dataclasses
import math

import jax.numpy as jnp
import numpy as np
import pytest

import liftnn as ln
from liftnn.bench import peers as pm
from liftnn.bench.peers import sklearn as sklearn_mlp
from liftnn.bench.peers import torch_lm
from liftnn.datasets.base import Dataset
from liftnn.errors import LiftnnError
from liftnn.problem import TrainingProblem
from liftnn.solvers.result import STATUSES


def need(name: str) -> None:
    ok, reason = pm.available(name)
    if not ok:
        pytest.skip(reason)


def _jax(params):
    return [(jnp.asarray(W), None if b is None else jnp.asarray(b)) for W, b in params]


def _objective(model, data, params, weight_decay=0.0, loss="mse") -> float:
    problem = TrainingProblem(model, data.x_train, data.y_train, loss=loss,
                              weight_decay=weight_decay)
    return float(problem.objective(_jax(params)))


@pytest.fixture(scope="module")
def sin2():
    data = ln.datasets.load("sin2", n=10)
    model = ln.MLP("1-4-1", activation="tanh")
    return model, data, model.init(0)


# optimistix's GaussNewton takes full steps; from these starts (J nearly singular, as in
# test_optimistix_gn_reports_a_singular_step) weight decay keeps its steps from jumping away
FAST = {
    "optimistix-lm": {"max_steps": 60},
    "optimistix-gn": {"max_steps": 10, "weight_decay": 0.1},
    "torch-lm": {"max_iter": 40},
    "sklearn-lbfgs": {"max_iter": 100, "alpha": 0.0},
    "sklearn-adam": {"max_iter": 300, "alpha": 0.0, "lr": 0.01},
}


def test_peer_names_and_defaults_are_the_interface():
    assert [p for p in pm.PEERS if p in FAST] == ["optimistix-lm", "optimistix-gn", "torch-lm",
                                                  "sklearn-lbfgs", "sklearn-adam"]
    assert set(FAST) <= set(pm.PEERS)
    lm = pm.options("torch-lm")
    assert (lm["mu"], lm["mu_dec"], lm["mu_inc"], lm["mu_max"]) == (1e-3, 0.1, 10.0, 1e10)
    assert pm.options("sklearn-adam")["alpha"] == pm.options("sklearn-lbfgs")["alpha"] == 1e-4
    assert pm.options("optimistix-lm")["max_steps"] == 1000
    # attempts per iteration: enough for mu to climb from its floor 1e-10 to 1e10
    assert torch_lm.default_attempts(lm) == 21


@pytest.mark.parametrize("name", list(FAST))
def test_peer_reduces_the_loss_on_sin2(name, sin2):
    need(name)
    model, data, p0 = sin2
    wd = FAST[name].get("weight_decay", 0.0)
    loss0 = _objective(model, data, p0, wd)
    r = pm.fit_peer(name, model, data, p0, **FAST[name])
    assert r.status in STATUSES
    assert r.success == (r.status in ("converged", "stalled"))
    assert r.method == name and r.init == "glorot_uniform" and r.n == 10
    for (W, b), (W0, b0) in zip(r.params, p0):
        assert W.shape == W0.shape and b.shape == b0.shape
        assert W.dtype == np.float64 and np.all(np.isfinite(W)) and np.all(np.isfinite(b))
    assert r.fun == pytest.approx(_objective(model, data, r.params, wd), rel=1e-12, abs=1e-15)
    assert r.train_mse == pytest.approx(_objective(model, data, r.params), rel=1e-12, abs=1e-15)
    assert math.isfinite(r.test_mse)
    assert r.fun < 0.9 * loss0, f"{name} did not lower the loss: {loss0} -> {r.fun}"
    assert r.nit >= 1 and r.nfev >= 1 and r.time_s > 0
    assert r.history and all({"iter", "loss", "time"} <= set(h) for h in r.history)
    assert r.history[-1]["time"] <= r.time_s
    if name != "sklearn-adam":  # adam logs each epoch's loss before that epoch's update
        assert r.history[-1]["loss"] == pytest.approx(r.fun, rel=1e-9, abs=1e-15)


@pytest.mark.parametrize("name", ["optimistix-lm", "optimistix-gn"])
def test_optimistix_starts_at_params0_with_weight_decay(name, sin2):
    need(name)
    model, data, p0 = sin2
    wd = 0.01
    r = pm.fit_peer(name, model, data, p0, weight_decay=wd, max_steps=1)
    assert r.history[0]["loss"] == pytest.approx(_objective(model, data, p0, wd), rel=1e-12)
    assert r.status == "max_iter" and r.optimistix_result == "nonlinear_max_steps_reached"
    r = pm.fit_peer(name, model, data, p0, weight_decay=wd, max_steps=20)
    losses = [h["loss"] for h in r.history]
    assert r.history[0]["loss"] == pytest.approx(_objective(model, data, p0, wd), rel=1e-12)
    assert r.fun == pytest.approx(r.cost, rel=1e-12)
    assert r.fun == pytest.approx(_objective(model, data, r.params, wd), rel=1e-12)
    if name == "optimistix-lm":  # a trust region accepts only steps that lower the loss
        assert losses == sorted(losses, reverse=True) and len(losses) == r.nit + 1
        assert r.nfev == 20 >= r.nit


def test_optimistix_gn_reports_a_singular_step():
    """From this start J has a singular value of 1e-8: the full GN step (the exact least-squares
    step, as numpy's lstsq gives it too) multiplies the loss by 1e13, and at the new point J is
    singular; lineax's QR fails there and the run ends with the library's verdict."""
    need("optimistix-gn")
    data = ln.datasets.load("sin2", n=20)
    model = ln.MLP("1-3-1", activation="tanh")
    r = pm.fit_peer("optimistix-gn", model, data, model.init(0), max_steps=5)
    assert r.optimistix_result == "singular" and r.status == "line_search_failed"
    assert not r.success and "(singular)" in r.message
    assert np.all(np.isfinite(r.x)) and r.fun > 1e10 * r.history[0]["loss"]


def _canonical(model, params):
    """A one-hidden-layer tanh net up to its symmetries: unit signs (w_in > 0) and unit order."""
    (W1, b1), (W2, b2) = [(np.asarray(W), np.asarray(b)) for W, b in params]
    s = np.sign(W1[:, 0])
    W1, b1, W2 = W1 * s[:, None], b1 * s, W2 * s[None, :]
    order = np.argsort(W1[:, 0])
    return np.concatenate([W1[order, 0], b1[order], W2[0, order], b2])


def test_optimistix_lm_reaches_liftnns_lm_minimiser():
    need("optimistix-lm")
    data = ln.datasets.load("sin2", n=20)
    model = ln.MLP("1-3-1", activation="tanh")
    wd = 1e-3  # without it the weights drift to infinity: no minimiser to compare
    p0 = model.init(1)
    ref = ln.train(model, data, method="lm", params0=p0, weight_decay=wd, max_iter=2000)
    r = pm.fit_peer("optimistix-lm", model, data, p0, weight_decay=wd, rtol=1e-10,
                         atol=1e-10, max_steps=2000)
    assert ref.status == "converged" and r.status == "converged"
    assert r.fun == pytest.approx(ref.fun, rel=1e-10)
    np.testing.assert_allclose(_canonical(model, r.params), _canonical(model, ref.params),
                               rtol=0, atol=1e-4)


def test_torch_lm_follows_trainlms_damping(sin2):
    need("torch-lm")
    model, data, p0 = sin2
    r = pm.fit_peer("torch-lm", model, data, p0, max_iter=300)
    assert r.history[0]["loss"] == pytest.approx(_objective(model, data, p0), rel=1e-12)
    assert r.history[0]["mu"] == 1e-3
    losses = r.history_array("loss")
    assert np.all(np.diff(losses) <= 0)  # trainlm accepts only steps that lower the loss
    for prev, h in zip(r.history, r.history[1:]):
        if h["loss"] < prev["loss"]:  # success after k failed trials: mu * 10^k * 0.1
            expected = max(prev["mu"] * 10.0 ** (h["trials"] - 1) * 0.1, 1e-10)
            assert h["mu"] == pytest.approx(expected, rel=1e-9)
    assert r.status == "stalled" and "mu_max" in r.message and r.history[-1]["mu"] == 1e10
    assert r.nit < 300 and r.success
    # sse: the same residuals, the same accept/reject decisions, so the same iterates
    s = pm.fit_peer("torch-lm", model, data, p0, loss="sse", max_iter=30)
    m = pm.fit_peer("torch-lm", model, data, p0, max_iter=30)
    np.testing.assert_allclose(s.x, m.x, rtol=1e-9, atol=1e-12)
    assert s.history[0]["loss"] == pytest.approx(_objective(model, data, p0, loss="sse"),
                                                 rel=1e-12)


def test_torch_lm_limits(sin2):
    need("torch-lm")
    model, data, p0 = sin2
    r = pm.fit_peer("torch-lm", model, data, p0, time_budget=1e-9)
    assert r.status == "max_iter" and r.nit == 0 and "time budget" in r.message
    np.testing.assert_array_equal(r.x, np.concatenate([np.r_[W.reshape(-1), b] for W, b in p0]))
    # the library's own default: 10 trials, then it keeps the last trial step
    r = pm.fit_peer("torch-lm", model, data, p0, attempts_per_step=10, max_iter=20)
    assert r.attempts_per_step == 10 and r.status in STATUSES
    assert all(h["trials"] <= 10 for h in r.history)


def test_sklearn_adam_starts_at_params0(sin2):
    need("sklearn-adam")
    model, data, p0 = sin2
    r = pm.fit_peer("sklearn-adam", model, data, p0, alpha=0.0, max_iter=5,
                         n_iter_no_change=100)
    # full batch: epoch 1 logs the loss at the weights it started from
    assert r.history[0]["loss"] == pytest.approx(_objective(model, data, p0), rel=1e-12)
    assert r.status == "max_iter" and r.nit == 5 and len(r.history) == 5
    # alpha > 0: scikit-learn's own objective, mean (f - Y)^2 + alpha/n ||W||^2 (weights only)
    alpha = 0.5
    r = pm.fit_peer("sklearn-adam", model, data, p0, alpha=alpha, max_iter=2)
    pen = alpha / 10 * sum(float(np.sum(np.asarray(W) ** 2)) for W, _ in p0)
    assert r.history[0]["loss"] == pytest.approx(_objective(model, data, p0) + pen, rel=1e-12)
    assert r.history[0]["sklearn_loss"] == pytest.approx(r.history[0]["loss"] / 2, rel=1e-15)
    assert r.alpha == alpha and "alpha/(2 n)" in r.objective
    # lbfgs logs no per-iteration loss; its history[0] (the formula) equals adam's first epoch,
    # which scikit-learn computed itself
    lb = pm.fit_peer("sklearn-lbfgs", model, data, p0, alpha=alpha, max_iter=1)
    assert lb.history[0]["loss"] == pytest.approx(r.history[0]["loss"], rel=1e-12)


def test_sklearn_lbfgs_started_at_a_minimiser_stays_there(sin2):
    need("sklearn-lbfgs")
    model, data, p0 = sin2
    first = pm.fit_peer("sklearn-lbfgs", model, data, p0, alpha=0.0, tol=1e-10,
                             max_iter=2000)
    again = pm.fit_peer("sklearn-lbfgs", model, data, first.params, alpha=0.0, tol=1e-6)
    assert first.fun < 0.5 * _objective(model, data, p0)
    assert again.status == "converged" and again.nit <= 2
    assert again.fun <= first.fun * (1 + 1e-9)
    # one L-BFGS step may slide along the nearly flat valley of the minimiser without changing
    # the loss (measured: 2.7e-6 in one weight with scikit-learn 1.9.1 / SciPy 1.17.1), so the
    # weights are compared to the step such a valley allows, the loss to 1e-9 above
    np.testing.assert_allclose(again.x, first.x, rtol=0, atol=1e-5)
    # from scikit-learn's own initial weights it would land elsewhere; the history starts at p0
    assert again.history[0]["loss"] == pytest.approx(first.fun, rel=1e-12)


def _classes(k: int, m: int = 30):
    rng = np.random.default_rng(k)
    labels = np.arange(m) % k
    centres = rng.normal(size=(k, 2)) * 3
    X = centres[labels] + rng.normal(size=(m, 2))
    Y = np.eye(k)[labels]
    return Dataset(X[:20], Y[:20], X[20:], Y[20:])


@pytest.mark.parametrize("k", [2, 3])
def test_sklearn_classifier_starts_at_params0(k):
    need("sklearn-adam")
    data = _classes(k)
    model = ln.MLP(f"2-5-{k}", activation="relu")
    p0 = model.init(3)
    r = pm.fit_peer("sklearn-adam", model, data, p0, loss="cross_entropy", alpha=0.0,
                         max_iter=50, lr=0.01)
    ce0 = _objective(model, data, p0, loss="cross_entropy")
    assert r.history[0]["loss"] == pytest.approx(ce0, rel=1e-12)
    # the returned weights (for k = 2 two logits rebuilt from scikit-learn's one) fit better
    assert _objective(model, data, r.params, loss="cross_entropy") < ce0
    assert [p[0].shape for p in r.params] == [(5, 2), (k, 5)]
    r2 = pm.fit_peer("sklearn-lbfgs", model, data, p0, loss="cross_entropy", alpha=0.0,
                          max_iter=50)
    assert _objective(model, data, r2.params, loss="cross_entropy") < ce0
    # with a penalty: on scikit-learn's weights (for k = 2 the output layer is one row)
    kw = {"loss": "cross_entropy", "alpha": 0.7, "max_iter": 1}
    a = pm.fit_peer("sklearn-adam", model, data, p0, **kw)
    b = pm.fit_peer("sklearn-lbfgs", model, data, p0, **kw)
    assert b.history[0]["loss"] == pytest.approx(a.history[0]["loss"], rel=1e-12)
    assert a.history[0]["loss"] > ce0


def test_sklearn_binary_mapping_round_trips():
    W = np.arange(10.0).reshape(2, 5)
    p0 = [(np.ones((5, 2)), np.zeros(5)), (W, np.array([0.5, -1.0]))]
    coefs, intercepts = sklearn_mlp._to_sklearn(p0, binary=True)
    np.testing.assert_array_equal(coefs[-1][:, 0], W[1] - W[0])
    assert intercepts[-1].tolist() == [-1.5]

    class Est:
        coefs_, intercepts_ = coefs, intercepts

    back = sklearn_mlp._from_sklearn(Est, p0, binary=True)
    np.testing.assert_array_equal(back[-1][0], W)
    np.testing.assert_array_equal(back[-1][1], p0[-1][1])


# ---- bad input ------------------------------------------------------------------------------


@pytest.fixture
def no_work(monkeypatch):
    """Make every fitting routine fail loudly: an error must come before any of them runs."""
    for name in FAST:
        monkeypatch.setitem(pm.PEERS, name, dataclasses.replace(
            pm.PEERS[name], fit=lambda *a, **k: pytest.fail("work started")))


@pytest.mark.parametrize("name, kw, match", [
    ("optimistix-lm", {"maxiter": 5}, r"no option\(s\) 'maxiter'.*max_steps"),
    ("optimistix-lm", {"rtol": -1.0}, "'rtol' must be >= 0"),
    ("optimistix-gn", {"rtol": 0.0, "atol": 0.0}, "rtol and atol are both 0"),
    ("optimistix-lm", {"norm": "l1"}, "'norm' must be one of"),
    ("optimistix-lm", {"loss": "cross_entropy"}, "does not support loss 'cross_entropy'"),
    ("torch-lm", {"weight_decay": 0.1}, "cannot add weight decay"),
    ("torch-lm", {"mu": 1e12}, "mu_min <= mu <= mu_max"),
    ("torch-lm", {"solve_method": "lu"}, "'solve_method' must be one of"),
    ("torch-lm", {"max_iter": 2.5}, "'max_iter' must be an integer"),
    ("sklearn-lbfgs", {"weight_decay": 0.1}, "alpha/\\(2 n\\)"),
    ("sklearn-adam", {"lr": 0.0}, "'lr' must be > 0"),
    ("sklearn-adam", {"loss": "sse"}, "does not support loss 'sse'"),
])
def test_bad_options_fail_before_work(sin2, no_work, name, kw, match):
    model, data, p0 = sin2
    need(name)
    with pytest.raises(LiftnnError, match=match):
        pm.fit_peer(name, model, data, p0, **kw)


@pytest.mark.parametrize("model, match", [
    (ln.MLP("1-4-1", activation="softplus"), "activation 'softplus' has no scikit-learn"),
    (ln.MLP("1-4-4-1", activation=("tanh", "relu")), "one activation for every hidden layer"),
    (ln.MLP("1-4-1", activation="tanh", bias=False), "always has biases"),
    (ln.MLP("1-4-1", activation="tanh", output_activation="tanh"), "output activation"),
])
def test_sklearn_refuses_models_it_cannot_represent(sin2, no_work, model, match):
    need("sklearn-adam")
    _, data, _ = sin2
    with pytest.raises(LiftnnError, match=match):
        pm.fit_peer("sklearn-adam", model, data, model.init(0))


def test_bad_params_fail_before_work(sin2, no_work):
    model, data, p0 = sin2
    need("optimistix-lm")
    with pytest.raises(LiftnnError, match=r"layer 0: W has shape \(4, 2\)"):
        pm.fit_peer("optimistix-lm", model, data, [(np.zeros((4, 2)), np.zeros(4)), p0[1]])


def test_sklearn_classifier_needs_every_class():
    Y = _classes(3).y_train.copy()
    Y[:, 2] = 0.0
    Y[:, 0] = 1.0 - Y[:, 1]  # class 2 never occurs in the training labels
    with pytest.raises(LiftnnError, match="all 3 classes must occur"):
        sklearn_mlp._labels(Y, 3)
