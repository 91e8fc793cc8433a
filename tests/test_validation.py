"""Model selection at the front door: validation splits, early stopping on the validation loss,
the returned iterate chosen by validation loss, weight_decay="auto", and the bad-input errors."""

from __future__ import annotations

import sys

import numpy as np
import pytest

import liftnn as ln
from liftnn.problem import TrainingProblem
from liftnn.train import AUTO_GRID, PRIOR_PRECISION, split_validation


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
    ({"weight_decay": "prior"}, "'prior' is the cross-entropy's.*'bayes'"),
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


# --- issue 22: what a new user ran into --------------------------------------------------------
@pytest.fixture(scope="module")
def sin2():
    return ln.datasets.load("sin2", n=20, seed=0)


def _with(d, **arrays):
    parts = {"x_train": d.x_train, "y_train": d.y_train, "x_test": d.x_test, "y_test": d.y_test}
    parts.update(arrays)
    return ln.datasets.Dataset(**parts, meta={"name": "scaled"})


@pytest.mark.parametrize("X, match", [
    (np.zeros((3, 2)), r"shape \(samples, 1\).*takes 1 input.*got shape \(3, 2\)"),
    (np.zeros(3), r"takes 1 input.*got shape \(3,\).*reshape"),
    (np.zeros((2, 3, 1)), r"takes 1 input.*got shape \(2, 3, 1\)"),
])
def test_apply_with_the_wrong_input_shape_names_the_width(X, match):
    model = ln.MLP("1-4-1")
    with pytest.raises(ln.LiftnnError, match=match):
        model.apply(model.init(0), X)
    with pytest.raises(ln.LiftnnError, match=match):
        model.forward(model.init(0), X)


def test_x0_is_refused_naming_params0(sin2):
    model = ln.MLP("1-4-1")
    with pytest.raises(ln.LiftnnError, match="params0"):
        ln.train(model, sin2, method="lm", x0=model.init(0))


def test_params0_with_seeds_is_refused(sin2):
    model = ln.MLP("1-4-1")
    with pytest.raises(ln.LiftnnError, match="params0 .* seeds"):
        ln.train(model, sin2, method="lbfgs", params0=model.init(0), seeds=range(2))


def test_targets_whose_squares_overflow_are_refused_before_work(sin2):
    calls = []
    with pytest.raises(ln.LiftnnError, match=r"y_train.*overflow.*standardise"):
        ln.train(ln.MLP("1-4-1"), _with(sin2, y_train=sin2.y_train * 1e200), method="lm",
                 callback=lambda *a: calls.append(a))
    assert not calls


def test_lm_refuses_a_cost_that_overflows_at_x0(sin2):
    """Why lm 'returned non-finite parameters': it did not; it returned x0, whose residuals are
    finite but whose cost 1/2 ||r||^2 is inf, so no trial could lower it.  Now refused."""
    from liftnn.methods import METHODS

    model = ln.MLP("1-4-1")
    problem = TrainingProblem(model, sin2.x_train, sin2.y_train * 1e200)
    with pytest.raises(ln.LiftnnError, match="overflows float64 at x0"):
        METHODS["lm"].fit(problem, model.init(0), max_iter=5)


@pytest.mark.parametrize("which, factor", [("x_train", 1e200), ("y_train", 1e7),
                                           ("x_train", 1e-6)])
def test_data_far_from_unit_scale_warns_naming_the_array(sin2, which, factor):
    data = _with(sin2, **{which: getattr(sin2, which) * factor})
    with pytest.warns(ln.LiftnnWarning, match=rf"{which}.*far from unit scale.*standardise"):
        ln.train(ln.MLP("1-4-1"), data, method="lbfgs", max_iter=3)


def test_unit_scale_data_do_not_warn(sin2, recwarn):
    ln.train(ln.MLP("1-4-1"), sin2, method="lbfgs", max_iter=3)
    assert not [w for w in recwarn if issubclass(w.category, ln.LiftnnWarning)]


def test_a_train_mse_that_overflows_at_finite_weights_is_reported_not_asserted(sin2):
    """Finite weights whose outputs are ~1e200 (data far from unit scale): the train MSE is inf.
    The result says so (status diverged, a note, a warning) instead of an internal
    RuntimeError; non-finite weights are still the trainers' bug (RuntimeError)."""
    train_module = sys.modules["liftnn.train"]
    model = ln.MLP("1-4-1", activation="relu")
    problem = TrainingProblem(model, sin2.x_train + 1.0, sin2.y_train)
    huge = [(W * 0 + 1e200, b) for W, b in model.init(0)]
    res = ln.solvers.result.Result(params=huge, status="converged", success=True, message="ok")
    res["train_mse"] = problem.mse(huge)
    with pytest.warns(ln.LiftnnWarning, match="overflows float64 at the returned"):
        train_module._check_finite(res, problem, "adam")
    assert res.status == "diverged" and not res.success and "standardise" in res.message
    bad = ln.solvers.result.Result(params=[(W * np.nan, b) for W, b in model.init(0)],
                                   train_mse=float("nan"))
    with pytest.raises(RuntimeError, match="non-finite parameters"):
        train_module._check_finite(bad, problem, "adam")


def test_fewer_than_two_training_samples_are_refused(sin2):
    one = _with(sin2, x_train=sin2.x_train[:1], y_train=sin2.y_train[:1])
    with pytest.raises(ln.LiftnnError, match=r"1 sample\(s\) \(n_samples = 1\).*at least 2"):
        ln.train(ln.MLP("1-4-1"), one, method="lm")
    three = _with(sin2, x_train=sin2.x_train[:3], y_train=sin2.y_train[:3])
    with pytest.raises(ln.LiftnnError, match=r"left after the validation split have 1 sample"):
        ln.train(ln.MLP("1-4-1"), three, method="lm", validation=0.5)  # 2 held out, 1 left


def test_empty_test_set_gives_nan_with_a_note(sin2):
    data = _with(sin2, x_test=np.zeros((0, 1)), y_test=np.zeros((0, 1)))
    res = ln.train(ln.MLP("1-4-1"), data, method="lbfgs", max_iter=3)
    assert np.isnan(res.test_mse) and "no test data" in res.test_note
    assert "test_note" not in ln.train(ln.MLP("1-4-1"), sin2, method="lbfgs", max_iter=3)


def test_names_follow_one_rule_case_insensitive_with_aliases(sin2):
    """Methods, activations and losses: case ignored, documented aliases accepted."""
    res = ln.train(ln.MLP("1-4-1", activation="TanSig"), sin2, method="LM", loss="MSE",
                   max_iter=2)
    assert res.method == "lm"
    assert ln.MLP("1-4-1", activation="TANH").activations[0] == "tanh"
    assert ln.MLP("1-4-1", activation="logsig").activations[0] == "sigmoid"
    assert TrainingProblem(ln.MLP("1-4-1"), sin2.x_train, sin2.y_train, loss="SSE").loss == "sse"
    for bad, kind in (({"method": "lmx"}, "method"), ({"loss": "msee"}, "loss")):
        with pytest.raises(ln.LiftnnError, match=rf"unknown {kind}.*not case-sensitive"):
            ln.train(ln.MLP("1-4-1"), sin2, **bad)
    with pytest.raises(ln.LiftnnError, match=r"unknown activation 'tanhh'.*tansig = tanh"):
        ln.MLP("1-4-1", activation="tanhh")


def test_class_indices_with_cross_entropy_are_one_hot_at_the_front_door():
    idx = ln.datasets.load("iris", labels="index")
    hot = ln.datasets.load("iris", labels="onehot")
    model = ln.MLP("4-5-3", activation="tanh")
    a = ln.train(model, idx, method="lbfgs", loss="cross_entropy", max_iter=20)
    b = ln.train(model, hot, method="lbfgs", loss="cross_entropy", max_iter=20)
    assert a.fun == b.fun
    assert (a.train_accuracy, a.test_accuracy) == (b.train_accuracy, b.test_accuracy)
    flat = ln.datasets.Dataset(idx.x_train, idx.y_train[:, 0], idx.x_test, idx.y_test[:, 0])
    c = ln.train(model, flat, method="lbfgs", loss="cross_entropy", max_iter=20,
                 validation=(idx.x_test, idx.y_test[:, 0]))
    d = ln.train(model, hot, method="lbfgs", loss="cross_entropy", max_iter=20,
                 validation=(hot.x_test, hot.y_test))
    assert c.fun == d.fun and c.val_accuracy == d.val_accuracy


def test_weight_decay_prior_is_the_unit_prior_over_the_rows_trained_on():
    """weight_decay="prior" = PRIOR_PRECISION / m for the m rows left after a validation split:
    the same run as that number, reported in the Result."""
    data = ln.datasets.load("iris", labels="onehot")
    model = ln.MLP("4-5-3", activation="tanh")
    for validation, m in ((None, len(data.x_train)), (0.25, len(data.x_train) * 3 // 4)):
        a = ln.train(model, data, method="lbfgs", loss="cross_entropy", max_iter=30,
                     weight_decay="prior", validation=validation)
        b = ln.train(model, data, method="lbfgs", loss="cross_entropy", max_iter=30,
                     weight_decay=PRIOR_PRECISION / a.n, validation=validation)
        assert a.n == m and a.weight_decay == PRIOR_PRECISION / m and a.fun == b.fun


@pytest.mark.parametrize("arch, labels, match", [
    ("4-5-1", "index", r"3 classes but the network outputs 1.*3 outputs"),
    ("4-5-2", "onehot", r"3 classes but the network outputs 2"),
])
def test_cross_entropy_needs_one_output_per_class(arch, labels, match):
    data = ln.datasets.load("iris", labels=labels)
    with pytest.raises(ln.LiftnnError, match=match):
        ln.train(ln.MLP(arch), data, method="lbfgs", loss="cross_entropy")


def test_class_index_out_of_range_is_named():
    X = np.random.default_rng(0).normal(size=(6, 2))
    data = ln.datasets.Dataset(X, np.array([0, 1, 2, 0, 1, 2.0]), X[:0], np.zeros(0))
    with pytest.raises(ln.LiftnnError, match=r"integers 0..1; row 2 is 2.0"):
        ln.train(ln.MLP("2-3-2"), data, method="lbfgs", loss="cross_entropy")


def test_weight_decay_auto_at_the_edge_of_its_grid_warns_and_notes(sin2, monkeypatch):
    """The chosen mu_w is the grid's largest (forced here with a one-value grid): a warning and
    a note in the message; any other choice: nothing."""
    T = sys.modules["liftnn.train"]
    monkeypatch.setattr(T, "AUTO_GRID", (1e-1,))
    with pytest.warns(ln.LiftnnWarning, match="largest value of its grid"):
        res = ln.train(ln.MLP("1-4-1"), sin2, method="lbfgs", weight_decay="auto", max_iter=5)
    assert res.weight_decay == 0.1 and "largest value" in res.weight_decay_note
    assert res.weight_decay_note in res.message
    inner = ln.solvers.result.Result(weight_decay=1e-3, message="ok")
    T._auto_edge_note(inner)
    assert "weight_decay_note" not in inner and inner.message == "ok"
