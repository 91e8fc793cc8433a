"""Model selection at the front door: validation splits, early stopping on the validation loss,
the returned iterate chosen by validation loss, weight_decay="auto", and the bad-input errors."""

from __future__ import annotations

import numpy as np
import pytest

import liftnn as ln
from liftnn.problem import TrainingProblem
from liftnn.train import AUTO_GRID, split_validation


@pytest.fixture(scope="module")
def data():
    return ln.datasets.load("sin2", n=30, seed=0)


@pytest.mark.parametrize("method, opts", [
    ("adam", {"lr": 0.05, "max_iter": 400, "patience": None, "val_patience": 50}),
    ("lm", {"max_iter": 60}),
    ("lbfgs", {"max_iter": 80}),
])
def test_selection_returns_the_iterate_with_the_lowest_validation_loss(data, method, opts):
    """The returned params are the iterate whose history "val_loss" is the minimum: recomputing
    the validation loss of r.params reproduces min(history val_loss) and Result.val_loss."""
    model = ln.MLP("1-8-8-1", activation="tanh")
    r = ln.train(model, data, method=method, seed=0, validation=0.3, **opts)
    vals = r.history_array("val_loss")
    assert np.all(np.isfinite(vals)) and len(vals) == r.nit + 1
    assert r.val_loss == np.min(vals)
    Xtr, Ytr, Xv, Yv = split_validation(data.x_train, data.y_train, 0.3, 0)
    problem = TrainingProblem(model, Xtr, Ytr, X_val=Xv, Y_val=Yv)
    assert float(problem.val_loss(r.params)) == pytest.approx(np.min(vals), rel=1e-10, abs=1e-14)
    # train_mse is on the 21 samples trained on, val_mse on the 9 held out
    assert r.n == 21 and r.n_val == 9
    assert r.train_mse == pytest.approx(problem.mse(r.params), rel=1e-12)
    assert r.val_mse == pytest.approx(problem.mse(r.params, Xv, Yv), rel=1e-12)


def test_val_patience_stops_when_the_validation_loss_stops_improving(data):
    """Adam with a large lr: the run ends by val_patience, and no epoch among the last
    val_patience beat the best validation loss before them."""
    p = 15
    r = ln.train(ln.MLP("1-8-8-1"), data, method="adam", seed=0, validation=0.3, lr=0.2,
                 patience=None, val_patience=p, max_iter=4000)
    assert r.status == "stalled" and "val_patience" in r.message and r.nit < 4000
    vals = r.history_array("val_loss")
    assert np.min(vals[-p:]) >= np.min(vals[:-p])


def test_fit_many_lanes_select_by_validation_like_separate_fits(data):
    """The vectorised seeds path chooses each run's iterate by validation loss as fit does."""
    model = ln.MLP("1-8-1")
    opts = {"lr": 0.1, "max_iter": 200, "val_patience": 10, "validation": 0.25}
    many = ln.train(model, data, method="adam", seeds=[0, 1, 2], **opts)
    for s, rm in zip((0, 1, 2), many):
        r1 = ln.train(model, data, method="adam", seed=s, **opts)
        assert (rm.status, rm.nit) == (r1.status, r1.nit)
        assert rm.val_loss == pytest.approx(r1.val_loss, rel=1e-10)
        assert rm.val_loss == np.min(rm.history_array("val_loss"))


def test_split_is_deterministic_and_the_same_for_every_method(data):
    a = split_validation(data.x_train, data.y_train, 0.2, 3)
    b = split_validation(data.x_train, data.y_train, 0.2, 3)
    c = split_validation(data.x_train, data.y_train, 0.2, 4)
    assert all(np.array_equal(u, v) for u, v in zip(a, b))
    assert not np.array_equal(a[2], c[2])
    # a partition of the training samples: every sample on exactly one side
    both = np.sort(np.concatenate([a[0][:, 0], a[2][:, 0]]))
    assert np.array_equal(both, np.sort(np.asarray(data.x_train)[:, 0]))
    r1 = ln.train(ln.MLP("1-4-1"), data, method="lm", validation=0.2, validation_seed=3,
                  max_iter=5)
    r2 = ln.train(ln.MLP("1-4-1"), data, method="adam", validation=0.2, validation_seed=3,
                  max_iter=5)
    assert r1.n == r2.n == len(a[0]) and r1.n_val == r2.n_val == len(a[2])


def test_explicit_validation_arrays(data):
    Xv, Yv = np.asarray(data.x_test[:10]), np.asarray(data.y_test[:10])
    r = ln.train(ln.MLP("1-4-1"), data, method="bfgs", validation=(Xv, Yv), max_iter=30)
    problem = TrainingProblem(ln.MLP("1-4-1"), data.x_train, data.y_train, X_val=Xv, Y_val=Yv)
    assert r.n == len(data.x_train) and r.n_val == 10
    assert float(problem.val_loss(r.params)) == pytest.approx(r.val_loss, rel=1e-10)
    assert r.val_loss == np.min(r.history_array("val_loss"))


@pytest.mark.parametrize("method", ["lm", pytest.param("adam", marks=pytest.mark.slow)])
def test_weight_decay_auto_picks_the_path_entry_with_the_lowest_validation_loss(data, method):
    opts = {"max_iter": 40} if method == "lm" else {"max_iter": 200, "lr": 0.02}
    model = ln.MLP("1-8-1")
    r = ln.train(model, data, method=method, seed=0, weight_decay="auto", **opts)
    mus = [mu for mu, _, _ in r.path]
    vals = [v for _, v, _ in r.path]
    assert mus == list(AUTO_GRID)
    k = int(np.argmin(vals))
    assert r.weight_decay == AUTO_GRID[k]
    # the returned model is the chosen fit: its validation loss is that path entry's
    Xtr, Ytr, Xv, Yv = split_validation(data.x_train, data.y_train, 0.2, 0)
    problem = TrainingProblem(model, Xtr, Ytr, X_val=Xv, Y_val=Yv)
    assert float(problem.val_loss(r.params)) == pytest.approx(vals[k], rel=1e-12)
    assert r.train_mse == pytest.approx(r.path[k][2], rel=1e-12)
    # validation=None: the default 0.2 split was used, and the Result says so
    assert "0.2" in r.validation_note and "validation" in r.message
    assert r.n_val == 6


def test_weight_decay_auto_with_seeds_chooses_per_seed(data):
    res = ln.train(ln.MLP("1-4-1"), data, method="lm", seeds=[0, 1], weight_decay="auto",
                   validation=0.3, max_iter=20)
    for r in res:
        vals = [v for _, v, _ in r.path]
        assert r.weight_decay == AUTO_GRID[int(np.argmin(vals))]
        assert not hasattr(r, "validation_note") or "validation_note" not in r


@pytest.mark.parametrize("kwargs, match", [
    ({"validation": 0.0}, r"validation fraction must be in \(0, 1\)"),
    ({"validation": 1.0}, r"validation fraction must be in \(0, 1\)"),
    ({"validation": -0.5}, r"validation fraction must be in \(0, 1\)"),
    ({"validation": float("nan")}, r"validation fraction must be in \(0, 1\)"),
    ({"validation": True}, "leaks"),
    ({"validation": "test"}, "validation must be None, a fraction"),
    ({"validation": (np.zeros((5, 2)), np.zeros((5, 1)))}, "validation data.*2 features"),
    ({"validation": (np.zeros((5, 1)), np.zeros((4, 1)))}, "validation data.*5 samples"),
    ({"validation": (np.zeros((5, 1)), np.zeros((5, 3)))}, "validation data.*3 columns"),
    ({"validation": (np.full((5, 1), np.nan), np.zeros((5, 1)))}, "validation data.*non-finite"),
    ({"validation": (np.zeros((5, 1)),)}, "pair"),
    ({"validation": 0.2, "validation_seed": -1}, "validation_seed"),
    ({"weight_decay": "strong"}, "unknown weight_decay 'strong'"),
    ({"weight_decay": -1.0}, "weight_decay must be >= 0"),
])
def test_bad_model_selection_input_raises_before_work(data, kwargs, match):
    calls = []
    with pytest.raises(ln.LiftnnError, match=match):
        ln.train(ln.MLP("1-4-1"), data, method="adam", callback=lambda *a: calls.append(a),
                 **kwargs)
    assert not calls


def test_weight_decay_auto_with_too_few_samples_says_how_many_are_needed():
    tiny = ln.datasets.load("sin2", n=2, seed=0)
    with pytest.raises(ln.LiftnnError, match=r"weight_decay='auto'.*at least 3 samples"):
        ln.train(ln.MLP("1-4-1"), tiny, method="lm", weight_decay="auto")
    with pytest.raises(ln.LiftnnError, match=r"at least 10 samples"):
        ln.train(ln.MLP("1-4-1"), tiny, method="lm", validation=0.05)
