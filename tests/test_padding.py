"""liftnn.padding: the bucket ladder, and padded training = unpadded training (alm, lm, gn, the
evidence's Jacobian, predictions) without padded rows leaking into losses, statistics or the
history; nearby sample counts share one compiled program."""

import numpy as np
import pytest

import liftnn as ln
from liftnn import bayes, compile_clock, padding
from liftnn.datasets.base import Dataset
from liftnn.models.losses import get_loss
from liftnn.problem import TrainingProblem, predict


def test_the_ladder():
    assert [padding.bucket(m) for m in (1, 40, 63)] == [1, 40, 63]  # small data as given
    for m in range(padding.MIN_PAD, 3000):
        b = padding.bucket(m)
        assert m <= b <= m * (1 + 1 / padding.PER_OCTAVE)
        assert padding.bucket(b) == b and padding.bucket(m + 1) >= b
    # the folds of a 5-fold split of 442 rows (353 and 354 training rows) share a size
    assert padding.bucket(353) == padding.bucket(354) == 368


def test_the_opt_out(monkeypatch):
    monkeypatch.setenv(padding.ENV, "off")
    assert not padding.enabled() and padding.size_for(353) == 353
    monkeypatch.setenv(padding.ENV, "on")
    assert padding.enabled() and padding.size_for(353) == 368


def test_the_forward_pass_size(monkeypatch):
    """predict runs passes of PREDICT_ROWS rows whatever the row count; off: the rows as given."""
    monkeypatch.setenv(padding.ENV, "on")
    assert {padding.predict_size(m) for m in (1, 24, 30, 64, 129, 5000)} == {padding.PREDICT_ROWS}
    monkeypatch.setenv(padding.ENV, "off")
    assert padding.predict_size(30) == 30


def test_predictions_of_every_row_count_share_one_program(monkeypatch):
    monkeypatch.setenv(padding.ENV, "on")
    model = ln.MLP((3, 5, 2), activation="tanh")
    params = model.init(0)
    X = np.random.default_rng(2).normal(size=(2 * padding.PREDICT_ROWS + 7, 3))
    predict(model, params, X[:100])
    sizes = (1, 97, 128, padding.PREDICT_ROWS, padding.PREDICT_ROWS + 1, len(X))
    with compile_clock.measure() as clock:
        got = [predict(model, params, X[:m]) for m in sizes]
    assert compile_clock.compilations(clock) == 0
    for m, f in zip(sizes, got):
        np.testing.assert_allclose(f, np.asarray(model.apply(params, X[:m])), rtol=1e-13,
                                   atol=1e-15)


def test_host_params_equal_unflatten():
    model = ln.MLP((3, 4, 2), activation="tanh", bias=False)
    problem = TrainingProblem(model, np.zeros((5, 3)), np.zeros((5, 2)))
    theta = np.arange(model.n_params, dtype=float)
    for (W, b), (W0, b0) in zip(problem.host_params(theta), problem.unflatten(theta)):
        np.testing.assert_array_equal(np.asarray(W), np.asarray(W0))
        assert b is None and b0 is None


@pytest.mark.parametrize("loss", ["mse", "sse", "cross_entropy"])
def test_masked_loss_is_the_loss_of_the_real_rows(loss):
    rng = np.random.default_rng(0)
    out, m, size = rng.normal(size=(70, 3)), 70, 80
    Y = np.eye(3)[rng.integers(0, 3, m)] if loss == "cross_entropy" else rng.normal(size=(m, 3))
    want = float(get_loss(loss)(out, Y))
    junk = rng.normal(size=(size - m, 3))  # whatever the network predicts on the padded rows
    got = padding.masked_loss(get_loss(loss), loss, np.vstack([out, junk]),
                              padding.pad_rows(Y, size), padding.row_weights(m, size), m)
    assert float(got) == pytest.approx(want, rel=1e-13)


def _data(m, ce=False, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(m, 3))
    if ce:
        Y = np.eye(3)[(X[:, 0] > 0).astype(int) + (X[:, 1] > 0.5).astype(int)]
    else:
        Y = np.sin(X.sum(1, keepdims=True)) + 0.1 * rng.normal(size=(m, 1))
    return Dataset(X, Y, X[:7], Y[:7], meta={"name": "padding-test"})


def _both(monkeypatch, **kw):
    out = {}
    for how in ("off", "on"):
        monkeypatch.setenv(padding.ENV, how)
        out[how] = ln.train(seeds=range(2), **kw)
    return out["off"], out["on"]


@pytest.mark.parametrize("case", [
    {"method": "alm", "max_outer": 4},
    {"method": "alm", "max_outer": 2, "weight_decay": 1e-3},
    {"method": "alm", "max_outer": 3, "loss": "cross_entropy"},
    {"method": "lm", "max_iter": 20},
    {"method": "gn", "max_iter": 20, "weight_decay": 1e-3},
    {"method": "lbfgs", "max_iter": 30},
    {"method": "lbfgs", "max_iter": 30, "loss": "cross_entropy", "weight_decay": 1e-3},
    {"method": "bfgs", "max_iter": 15, "loss": "sse"},
    {"method": "cg", "max_iter": 15},
    {"method": "newton", "max_iter": 5, "loss": "cross_entropy"},
], ids=["alm", "alm-decay", "alm-ce", "lm", "gn", "lbfgs", "lbfgs-ce-decay", "bfgs-sse", "cg",
        "newton-ce"])
def test_padded_training_equals_unpadded(monkeypatch, case):
    ce = case.get("loss") == "cross_entropy"
    d = _data(70, ce)  # padded to 72
    assert padding.bucket(70) == 72
    model = ln.MLP((3, 5, 3 if ce else 1), activation="tanh")
    plain, padded = _both(monkeypatch, model=model, dataset=d, **case)
    for a, b in zip(plain, padded):
        np.testing.assert_allclose(b["x"], a["x"], rtol=1e-10, atol=1e-10)
        assert b["fun"] == pytest.approx(a["fun"], rel=1e-10)
        assert b["nit"] == a["nit"] and b["status"] == a["status"]
        assert b["train_mse"] == pytest.approx(a["train_mse"], rel=1e-10)
        assert len(b["history"]) == len(a["history"])
        for ha, hb in zip(a["history"], b["history"]):  # no padded row in the history's losses
            assert hb["loss"] == pytest.approx(ha["loss"], rel=1e-10)
        if "residual" in a:  # lm / gn report the residual and Jacobian of the real rows
            assert b["residual"].shape == a["residual"].shape
            assert b["jac"].shape == a["jac"].shape


def test_padded_bayes_equals_unpadded(monkeypatch):
    d = _data(70)
    model = ln.MLP((3, 5, 1), activation="tanh")
    plain, padded = _both(monkeypatch, model=model, dataset=d, method="alm",
                          weight_decay="bayes", bayes_max_cycles=2, max_outer=4)
    for a, b in zip(plain, padded):
        assert b["effective_params"] == pytest.approx(a["effective_params"], rel=1e-8)
        assert b["log_evidence"] == pytest.approx(a["log_evidence"], rel=1e-8)
        np.testing.assert_allclose(b["x"], a["x"], rtol=1e-8, atol=1e-10)


def test_jacobian_and_predictions_drop_the_padded_rows(monkeypatch):
    model = ln.MLP((3, 4, 2), activation="tanh")
    params = model.init(0)
    X = np.random.default_rng(1).normal(size=(70, 3))
    monkeypatch.setenv(padding.ENV, "off")
    J0, f0 = bayes.jacobian(model, params, X), predict(model, params, X)
    monkeypatch.setenv(padding.ENV, "on")
    J1, f1 = bayes.jacobian(model, params, X), predict(model, params, X)
    assert J1.shape == J0.shape == (140, model.n_params) and f1.shape == f0.shape == (70, 2)
    np.testing.assert_allclose(J1, J0, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(f1, f0, rtol=1e-12, atol=1e-14)
    problem = TrainingProblem(model, X, np.zeros((70, 2)))
    assert problem.mse(params) == pytest.approx(float(np.mean(f0 ** 2)), rel=1e-12)


@pytest.mark.parametrize("method", ["alm", "lm", "lbfgs"])
def test_nearby_sample_counts_share_one_program(monkeypatch, method):
    """Training on 69 and then 71 samples (both padded to 72) compiles nothing the second time."""
    monkeypatch.setenv(padding.ENV, "on")
    model = ln.MLP((3, 6, 1), activation="tanh")
    opts = {"max_outer": 2} if method == "alm" else {"max_iter": 5}
    ln.train(model, _data(69, seed=1), method=method, seeds=range(2), **opts)
    with compile_clock.measure() as clock:
        ln.train(model, _data(71, seed=2), method=method, seeds=range(2), **opts)
    assert compile_clock.compilations(clock) == 0


@pytest.mark.parametrize("method", ["lbfgs", "alm"])
def test_a_decay_that_follows_the_row_count_compiles_nothing_new(monkeypatch, method):
    """The classifier's prior (weight_decay = 1 / m) on 69 and then 71 rows: the decay is an
    argument of the padded programs, not a constant in them."""
    monkeypatch.setenv(padding.ENV, "on")
    model = ln.MLP((3, 6, 3), activation="tanh")
    opts = {"max_outer": 2} if method == "alm" else {"max_iter": 5}
    ln.train(model, _data(69, ce=True, seed=1), method=method, seeds=range(2),
             loss="cross_entropy", weight_decay=1 / 69, **opts)
    with compile_clock.measure() as clock:
        ln.train(model, _data(71, ce=True, seed=2), method=method, seeds=range(2),
                 loss="cross_entropy", weight_decay=1 / 71, **opts)
    assert compile_clock.compilations(clock) == 0


def test_unpadded_objectives_take_the_decay_as_an_argument_too():
    """Below MIN_PAD rows (no padding) two decays > 0 share the lbfgs objective's program."""
    model = ln.MLP((3, 6, 3), activation="tanh")
    data = _data(40, ce=True, seed=1)
    ln.train(model, data, method="lbfgs", loss="cross_entropy", weight_decay=0.1, max_iter=5)
    with compile_clock.measure() as clock:
        ln.train(model, data, method="lbfgs", loss="cross_entropy", weight_decay=0.2, max_iter=5)
    assert compile_clock.compilations(clock) == 0


def test_at_least_raises_the_bucket_in_its_block_only(monkeypatch):
    monkeypatch.setenv(padding.ENV, "on")
    assert padding.size_for(40) == 40
    with padding.at_least(100):
        assert padding.size_for(40) == padding.size_for(90) == padding.bucket(100) == 100
        assert padding.size_for(353) == 368
        with padding.at_least(50):  # the larger floor wins
            assert padding.size_for(40) == 100
    assert padding.size_for(40) == 40 and padding.size_for(90) == 92
    monkeypatch.setenv(padding.ENV, "off")
    with padding.at_least(100):
        assert padding.size_for(40) == 40


@pytest.mark.parametrize("method", ["lbfgs", "alm"])
def test_a_fit_on_part_of_the_rows_shares_the_full_fits_programs(monkeypatch, method):
    """The classifier's held-out comparison trains on 4/5 of the rows inside at_least(all rows):
    the later fit on every row compiles nothing, and the part's result is the unpadded one."""
    monkeypatch.setenv(padding.ENV, "on")
    model = ln.MLP((3, 5, 3), activation="tanh")
    full, part = _data(90, ce=True, seed=3), _data(72, ce=True, seed=3)
    opts = {"max_outer": 2} if method == "alm" else {"max_iter": 10}
    with padding.at_least(90):
        padded = ln.train(model, part, method=method, seeds=range(2), loss="cross_entropy", **opts)
    with compile_clock.measure() as clock:
        ln.train(model, full, method=method, seeds=range(2), loss="cross_entropy", **opts)
    assert compile_clock.compilations(clock) == 0
    monkeypatch.setenv(padding.ENV, "off")
    plain = ln.train(model, part, method=method, seeds=range(2), loss="cross_entropy", **opts)
    for a, b in zip(plain, padded):
        np.testing.assert_allclose(b["x"], a["x"], rtol=1e-9, atol=1e-10)
