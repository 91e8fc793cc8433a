"""The seeds' inner solves as one batched loop ("vmap") or a loop of per-seed loops ("map", the
CPU default): the same Results, and each lane equals a run of that seed alone."""

import numpy as np
import pytest

import liftnn as ln
from liftnn.lifted import alm, inner
from liftnn.problem import TrainingProblem


def _runs(monkeypatch, how, seeds, **kw):
    monkeypatch.setenv(inner.LANES_ENV, how)
    # well determined (10 weights, 40 samples): over-parameterised nets drift along flat
    # directions that rounding picks, and batched kernels round differently
    data = ln.datasets.load("sin2", n=40)
    model = ln.MLP("1-3-1", activation="tanh")
    problem = TrainingProblem(model, data.x_train, data.y_train, **kw)
    return alm.fit_many(problem, [model.init(s) for s in seeds], max_outer=6)


@pytest.mark.parametrize("decay", [0.0, 1e-3])
def test_map_and_vmap_lanes_agree(monkeypatch, decay):
    a = _runs(monkeypatch, "map", [0, 1, 2], weight_decay=decay)
    b = _runs(monkeypatch, "vmap", [0, 1, 2], weight_decay=decay)
    for x, y in zip(a, b):
        assert x["status"] == y["status"]
        np.testing.assert_allclose(x["x"], y["x"], rtol=1e-6, atol=1e-9)
        assert x["fun"] == pytest.approx(y["fun"], rel=1e-8)


def test_a_mapped_lane_equals_its_seed_alone(monkeypatch):
    many = _runs(monkeypatch, "map", [0, 1])
    for s, r in zip([0, 1], many):
        one = _runs(monkeypatch, "map", [s])[0]
        np.testing.assert_allclose(r["x"], one["x"], rtol=1e-9, atol=1e-12)
        assert r["nit"] == one["nit"]


def test_lanes_follow_the_environment(monkeypatch):
    monkeypatch.setenv(inner.LANES_ENV, "vmap")
    assert inner.lanes() == "vmap"
    monkeypatch.setenv(inner.LANES_ENV, "")
    assert inner.lanes() in ("map", "vmap")


def test_idle_lanes_of_pad_to_change_nothing_and_are_not_returned(monkeypatch):
    monkeypatch.setenv(inner.LANES_ENV, "map")
    data = ln.datasets.load("sin2", n=40)
    model = ln.MLP("1-3-1", activation="tanh")
    problem = TrainingProblem(model, data.x_train, data.y_train)
    p0s = [model.init(s) for s in (0, 1)]
    plain = alm.fit_many(problem, p0s, weight_decays=[1e-3, 1e-2], max_outer=6)
    padded = alm.fit_many(problem, p0s, weight_decays=[1e-3, 1e-2], max_outer=6, pad_to=4)
    assert len(padded) == 2
    for x, y in zip(plain, padded):
        np.testing.assert_allclose(y["x"], x["x"], rtol=1e-9, atol=1e-12)
        assert (y["nit"], y["status"], len(y["history"])) == (x["nit"], x["status"], len(x["history"]))


def test_pad_to_below_the_number_of_initialisations_is_refused():
    data = ln.datasets.load("sin2", n=20)
    model = ln.MLP("1-3-1", activation="tanh")
    problem = TrainingProblem(model, data.x_train, data.y_train)
    with pytest.raises(ln.LiftnnError, match="pad_to = 1"):
        alm.fit_many(problem, [model.init(0), model.init(1)], pad_to=1)
