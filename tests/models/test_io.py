"""Saved models: PATH.json + PATH.npz (DESIGN.md sec. 3), never pickle.

Proved here: save/load round-trips MLPs (with and without biases), graphs and Moeller2Net exactly;
the files follow the documented schema (W_k of shape (out, in), b_k); a reader that uses only json
and NumPy reproduces the network's outputs and its training MSE; every schema or array mismatch is
refused with a LiftnnError that names the offending key or array; unwritable paths are caught
before training.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

import liftnn as ln
from liftnn.models.io import check_writable


def numpy_only_predict(path_stem, X):
    """Evaluate a saved MLP with json + NumPy only (no liftnn): what a user of the files does."""
    with open(f"{path_stem}.json") as f:
        meta = json.load(f)
    acts = {"identity": lambda a: a, "relu": lambda a: np.maximum(a, 0),
            "leaky_relu": lambda a: np.where(a > 0, a, 0.01 * a), "tanh": np.tanh,
            "sigmoid": lambda a: 1 / (1 + np.exp(-a)), "softplus": lambda a: np.logaddexp(0, a)}
    names = meta["activations"] + [meta["output_activation"]]
    with np.load(f"{path_stem}.npz", allow_pickle=False) as z:
        Z = np.asarray(X, dtype=float)
        for k, name in enumerate(names):
            Z = Z @ z[f"W{k}"].T + (z[f"b{k}"] if meta["bias"] else 0.0)
            Z = acts[name](Z)
    return Z


@pytest.mark.parametrize("bias", [True, False])
def test_mlp_round_trip_and_file_layout(tmp_path, bias):
    mlp = ln.MLP((3, 6, 4, 2), activation=["relu", "softplus"], output_activation="sigmoid",
                 bias=bias, init="torch_default")
    rng = np.random.default_rng(1)
    params = [(rng.normal(size=(o, i)), rng.normal(size=o) if bias else None)
              for i, o in zip(mlp.sizes[:-1], mlp.sizes[1:])]
    stem = tmp_path / "net"
    jpath, npath = ln.save_model(stem, mlp, params)
    assert jpath == tmp_path / "net.json" and npath == tmp_path / "net.npz"
    meta = json.loads(jpath.read_text())
    assert meta == {"format_version": 1, "type": "MLP", "sizes": [3, 6, 4, 2],
                    "activations": ["relu", "softplus"], "output_activation": "sigmoid",
                    "bias": bias, "init": "torch_default", "dropout": [0.0, 0.0]}
    with np.load(npath, allow_pickle=False) as z:
        expected = ["W0", "W1", "W2"] + (["b0", "b1", "b2"] if bias else [])
        assert sorted(z.files) == sorted(expected)
        assert z["W0"].shape == (6, 3) and z["W2"].shape == (2, 4)
    model, loaded = ln.load_model(stem)
    assert model == mlp
    for (W, b), (W2, b2) in zip(params, loaded):
        np.testing.assert_array_equal(np.asarray(W), np.asarray(W2))
        assert (b is None and b2 is None) or np.array_equal(np.asarray(b), np.asarray(b2))


def test_path_suffixes_are_accepted(tmp_path):
    mlp = ln.MLP((2, 3, 1))
    p = mlp.init(0)
    ln.save_model(tmp_path / "a.json", mlp, p)
    assert (tmp_path / "a.json").is_file() and (tmp_path / "a.npz").is_file()
    for name in ("a", "a.json", "a.npz", str(tmp_path / "a")):
        model, _ = ln.load_model(tmp_path / name if not os.path.isabs(name) else name)
        assert model == mlp


def test_numpy_only_reload_reproduces_outputs_and_train_mse(tmp_path):
    data = ln.datasets.load("sin2", n=40, seed=0)
    mlp = ln.MLP((1, 16, 16, 1), activation="relu", init="torch_default")
    params = mlp.init(0)
    ln.save_model(tmp_path / "m", mlp, params)
    pred = numpy_only_predict(tmp_path / "m", data.x_train)
    np.testing.assert_allclose(pred, np.asarray(mlp.apply(params, data.x_train)), rtol=1e-12,
                               atol=1e-14)
    mse_numpy = float(np.mean((pred - data.y_train) ** 2))
    mse_liftnn = ln.TrainingProblem(mlp, data.x_train, data.y_train).mse(params)
    assert mse_numpy == pytest.approx(mse_liftnn, rel=1e-12)


def test_graph_and_moeller2net_round_trip(tmp_path):
    g = ln.FeedforwardGraph(2, [(0, 3), (1, 3), (2, 3), (1, 4), (3, 4), (2, 5), (4, 5)], [4, 5],
                            activation={3: "relu"}, output_activation="tanh")
    w = np.random.default_rng(0).normal(size=g.n_params)
    ln.save_model(tmp_path / "g", g, w)
    g2, w2 = ln.load_model(tmp_path / "g")
    assert g2 == g
    np.testing.assert_array_equal(np.asarray(w2), w)
    net = ln.Moeller2Net("normal(0.5)")
    p = [(np.random.default_rng(2).normal(size=s), None) for s in net.shapes]
    ln.save_model(tmp_path / "moeller", net, p)
    net2, p2 = ln.load_model(tmp_path / "moeller")
    assert net2 == net
    for (W, _), (W2, _) in zip(p, p2):
        np.testing.assert_array_equal(np.asarray(W), np.asarray(W2))


# ---- schema errors ------------------------------------------------------------------------------


@pytest.fixture
def saved(tmp_path):
    mlp = ln.MLP((2, 3, 1), activation="tanh")
    ln.save_model(tmp_path / "m", mlp, mlp.init(0))
    return tmp_path / "m"


def rewrite_json(stem, **changes):
    path = stem.with_name(stem.name + ".json")
    meta = json.loads(path.read_text())
    for k, v in changes.items():
        if v is ...:
            del meta[k]
        else:
            meta[k] = v
    path.write_text(json.dumps(meta))


@pytest.mark.parametrize("changes, match", [
    ({"format_version": 3}, "format_version 3 is not supported"),
    ({"format_version": ...}, "missing key 'format_version'"),
    ({"type": "CNN"}, "'type' must be one of"),
    ({"sizes": ...}, "missing key.*'sizes'"),
    ({"colour": "red"}, "unknown key.*'colour'"),
    ({"sizes": [2, 0, 1]}, "'sizes' must be positive"),
    ({"sizes": [2, "3", 1]}, "'sizes' must be a list"),
    ({"activations": ["tanh", "tanh"]}, "'activations' has 2 entries"),
    ({"activations": ["swish"]}, "unknown activation 'swish'"),
    ({"output_activation": 3}, "activation names must be strings"),
    ({"bias": "yes"}, "'bias' must be true or false"),
    ({"init": "orthogonal"}, "unknown initialiser"),
    ({"dropout": [0.1, 0.2]}, "'dropout' must be a list of 1"),
])
def test_json_schema_errors_name_the_key(saved, changes, match):
    rewrite_json(saved, **changes)
    with pytest.raises(ln.LiftnnError, match=match):
        ln.load_model(saved)


def test_array_errors_name_the_array(saved):
    npz = saved.with_name("m.npz")
    with np.load(npz) as z:
        arrays = {k: z[k] for k in z.files}
    cases = [
        ({k: v for k, v in arrays.items() if k != "b1"}, "missing array.*b1"),
        ({**arrays, "W9": np.zeros(2)}, "unexpected array.*W9"),
        ({**arrays, "W1": np.zeros((3, 1))}, r"array W1 has shape \(3, 1\).*needs \(1, 3\)"),
        ({**arrays, "W0": np.full((3, 2), np.nan)}, "array W0 contains NaN"),
        ({**arrays, "b0": np.array(["a", "b", "c"])}, "array b0 has dtype"),
    ]
    for bad, match in cases:
        np.savez(npz, **bad)
        with pytest.raises(ln.LiftnnError, match=match):
            ln.load_model(saved)


def test_pickled_arrays_are_never_loaded(saved):
    np.savez(saved.with_name("m.npz"), W0=np.array([{"evil": 1}], dtype=object))
    with pytest.raises(ln.LiftnnError, match="pickle"):
        ln.load_model(saved)


def test_missing_or_unreadable_files(tmp_path, saved):
    with pytest.raises(ln.LiftnnError, match="does not exist"):
        ln.load_model(tmp_path / "nothing")
    saved.with_name("m.json").write_text("{not json")
    with pytest.raises(ln.LiftnnError, match="not a readable JSON"):
        ln.load_model(saved)
    saved.with_name("m.json").write_text("[1, 2]")
    with pytest.raises(ln.LiftnnError, match="expected a JSON object"):
        ln.load_model(saved)


# ---- writing ------------------------------------------------------------------------------------


def test_check_writable_and_save_refuse_bad_targets(tmp_path):
    check_writable(tmp_path / "ok")  # fine: nothing raised, nothing written
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ln.LiftnnError, match="does not exist"):
        check_writable(tmp_path / "no_such_dir" / "m")
    (tmp_path / "d.json").mkdir()
    with pytest.raises(ln.LiftnnError, match="not a regular file"):
        check_writable(tmp_path / "d")
    (tmp_path / "f").write_text("")
    with pytest.raises(ln.LiftnnError, match="not a directory"):
        check_writable(tmp_path / "f" / "m")
    mlp = ln.MLP((2, 3, 1))
    p = mlp.init(0)
    with pytest.raises(ln.LiftnnError, match="W1 has shape"):
        ln.save_model(tmp_path / "x", mlp, [p[0], (np.zeros((2, 3)), p[1][1])])
    with pytest.raises(ln.LiftnnError, match="NaN or Inf"):
        ln.save_model(tmp_path / "x", mlp, [(np.full((3, 2), np.inf), p[0][1]), p[1]])
    with pytest.raises(ln.LiftnnError, match="custom function"):
        ln.save_model(tmp_path / "x", ln.MLP((2, 3, 1), init=lambda k, i, o: None), p)
    assert not (tmp_path / "x.json").exists()


# ---- format 2: the training data's scaling; SavedModel.predict in the user's units --------------


def _scaled(tmp_path):
    from liftnn.datasets.scaling import Standardizer

    mlp = ln.MLP((2, 5, 2), activation="tanh")
    params = mlp.init(4)
    sc = Standardizer(x_mean=[1.0, -2.0], x_std=[2.0, 0.5], y_mean=[10.0, 0.0], y_std=[3.0, 0.1],
                      features=["u", "v"], targets=["p", "q"])
    ln.save_model(tmp_path / "s", mlp, params, scaling=sc, data={"name": "mine", "n": 7})
    return mlp, params, sc


def test_scaling_round_trip_and_predict_in_user_units(tmp_path):
    mlp, params, _ = _scaled(tmp_path)
    meta = json.loads((tmp_path / "s.json").read_text())
    assert meta["format_version"] == 2 and meta["scaling"]["targets"] == ["p", "q"]
    assert meta["data"] == {"name": "mine", "n": 7}
    saved = ln.load_model(tmp_path / "s")
    model, _ = saved  # unpacks like format 1
    assert model == mlp and saved.features == ("u", "v") and saved.targets == ("p", "q")
    X = np.random.default_rng(0).normal(size=(6, 2)) * 5
    Z = np.asarray(mlp.apply(params, (X - [1.0, -2.0]) / [2.0, 0.5]))
    np.testing.assert_allclose(saved.predict(X), Z * [3.0, 0.1] + [10.0, 0.0], rtol=1e-14)
    assert saved.predict(X[0]).shape == (1, 2)  # one sample as a 1-D row
    assert not saved.has_std
    with pytest.raises(ln.LiftnnError, match="has no posterior"):
        saved.predict(X, return_std=True)
    with pytest.raises(ln.LiftnnError, match=r"has 3 input column\(s\) but the model .* takes 2 "
                                             r"\(u, v\)"):
        saved.predict(np.ones((2, 3)))


def test_format_1_files_still_load_and_predict_unscaled(saved):
    meta = json.loads(saved.with_name("m.json").read_text())
    assert meta["format_version"] == 1 and "scaling" not in meta
    s = ln.load_model(saved)
    model, params = s
    X = np.linspace(-1, 1, 8).reshape(4, 2)
    np.testing.assert_array_equal(s.predict(X), np.asarray(model.apply(params, X)))
    assert s.scaling.identity and s.targets == ("y0",) and s.features == ("x0", "x1")


def test_bad_scaling_refused_naming_it(tmp_path, saved):
    from liftnn.datasets.scaling import Standardizer

    mlp = ln.MLP((2, 3, 1))
    with pytest.raises(ln.LiftnnError, match="the scaling has 3 inputs; the network has 2"):
        ln.save_model(tmp_path / "w", mlp, mlp.init(0),
                      scaling=Standardizer(x_mean=[0, 0, 0], x_std=[1, 1, 1]))
    assert not list(tmp_path.glob("w.*"))
    rewrite_json(saved, scaling={"x_mean": [0, 0], "x_std": [1, 1]})  # still version 1
    with pytest.raises(ln.LiftnnError, match="unknown key.*'scaling'"):
        ln.load_model(saved)
    rewrite_json(saved, format_version=2, scaling={"x_mean": [0, 0], "x_std": [1, -1]})
    with pytest.raises(ln.LiftnnError, match="m.json: scaling 'x_std' must be > 0"):
        ln.load_model(saved)
    rewrite_json(saved, scaling={"y_mean": [0, 0], "y_std": [1, 1]})
    with pytest.raises(ln.LiftnnError, match="the scaling has 2 outputs; the network has 1"):
        ln.load_model(saved)
