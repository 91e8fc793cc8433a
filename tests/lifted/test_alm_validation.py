"""Validation-based selection in alm: with X_val / Y_val in the TrainingProblem the returned
weights are the outer iterate with the lowest validation loss of the simulated network (not the
lowest training loss), best_iter points at it, and the validation loss stops a run early."""

from itertools import pairwise

import numpy as np
import pytest

import liftnn as ln
from liftnn.lifted import alm
from liftnn.problem import TrainingProblem


@pytest.fixture(scope="module")
def val_problem():
    data = ln.datasets.load("sin2", n=20)
    model = ln.MLP("1-8-8-1", activation="tanh")
    # held-out points between the training samples: an interpolating fit shows up here
    rng = np.random.default_rng(0)
    Xv = np.sort(rng.uniform(0.0, np.pi, 15))[:, None]
    Yv = np.sin(Xv ** 2)
    return model, TrainingProblem(model, data.x_train, data.y_train, X_val=Xv, Y_val=Yv)


def _check_selection(r, prob):
    vals = [h["val_loss"] for h in r.history]
    assert len(vals) == r.outer_iterations + 1  # the start and every outer iterate
    assert float(prob.val_loss(r.params)) == pytest.approx(min(vals), rel=1e-12, abs=1e-15)
    assert r.val_loss == pytest.approx(min(vals), rel=1e-12, abs=1e-15)
    assert vals[r.best_iter] == min(vals)
    # fun is the training objective of the returned network, not of the last iterate
    assert r.fun == pytest.approx(float(prob.objective(r.params)), rel=1e-10)
    assert r.fun == pytest.approx(r.history[r.best_iter]["loss"], rel=1e-12)


def test_returns_the_iterate_with_the_lowest_validation_loss(val_problem):
    model, prob = val_problem
    r = alm.fit(prob, model.init(0), max_outer=6, stop="none", val_patience=100)
    assert r.outer_iterations == 6
    _check_selection(r, prob)


def test_validation_patience_stops_early(val_problem):
    model, prob = val_problem
    r = alm.fit(prob, model.init(1), max_outer=40, stop="none", val_patience=1)
    vals = [h["val_loss"] for h in r.history]
    # with patience 1 the run ends at the first outer iterate that does not improve the best
    assert r.status == "converged" and "validation" in r.message, r.message
    assert r.outer_iterations < 40
    assert vals[-1] >= min(vals[:-1])
    assert all(b < a for a, b in pairwise(vals[:-1]))  # improving until then
    _check_selection(r, prob)


def test_vectorised_runs_select_per_seed(val_problem):
    model, prob = val_problem
    res = alm.fit_many(prob, [model.init(s) for s in (2, 3, 4)], max_outer=6, stop="none",
                       val_patience=3)
    for r in res:
        _check_selection(r, prob)


def test_without_validation_nothing_changes(val_problem):
    model, prob = val_problem
    plain = TrainingProblem(model, prob.X, prob.Y)
    r = alm.fit(plain, model.init(0), max_outer=4)
    assert "val_loss" not in r and all("val_loss" not in h for h in r.history)
    best = min(h["loss"] for h in r.history)
    assert r.fun == pytest.approx(best, rel=1e-12)
    assert r.history[r.best_iter]["loss"] == pytest.approx(best, rel=1e-12)


def test_val_patience_is_checked(val_problem):
    model, prob = val_problem
    with pytest.raises(ln.LiftnnError, match="val_patience"):
        alm.fit(prob, model.init(0), val_patience=0)
