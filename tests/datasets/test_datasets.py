"""Data sets: determinism per seed, shapes, the NARX series, the teacher statistics, bad input.

Proved here: every data set is reproducible for a seed (and the seeded ones change with it);
shapes and meta match the documentation; the Santa Fe loader reads the files from data_dir or
LIFTNN_SANTAFE_DIR, normalises by the training mean/std and builds oldest-first lag windows whose
meta supports a free-run prediction, and says where to put the files when they are absent; the
Lorenz-Haken "laser" series is deterministic and Santa-Fe-like; the teacher-student inputs have
the documented mean and covariance and the targets are the recorded teacher plus noise of the
given size; bad keywords are refused with a named LiftnnError.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

import liftnn as ln
from liftnn.datasets import load, names

SANTAFE_DIR = Path(os.environ.get("LIFTNN_SANTAFE_DIR")
                   or Path(__file__).resolve().parents[3] / "shared" / "data" / "santafe")
HAVE_SANTAFE = all((SANTAFE_DIR / f).is_file() for f in ("lasertrain.csv", "laserpred.csv"))
needs_santafe = pytest.mark.skipif(not HAVE_SANTAFE, reason=f"Santa Fe files not at {SANTAFE_DIR}")
HAVE_SKLEARN = True
try:
    import sklearn  # noqa: F401
except ImportError:  # pragma: no cover
    HAVE_SKLEARN = False

SEEDED = {  # name -> keywords; these draw noise or a split from the seed
    "sin2": {"n": 20},
    "gauss-bump": {},
    "teacher": {"m": 50, "m_test": 20},
    "laser": {"n": 100},
    "moeller2": {},
}


def arrays(d):
    return (d.x_train, d.y_train, d.x_test, d.y_test)


def test_registry_has_every_documented_name():
    assert {"sine", "sin2", "moeller", "linear3", "gauss-bump", "teacher", "santafe", "laser",
            "diabetes", "moeller2"} <= set(names())


@pytest.mark.parametrize("name", list(SEEDED))
def test_deterministic_per_seed(name):
    a, b, c = (load(name, seed=s, **SEEDED[name]) for s in (3, 3, 4))
    for x, y in zip(arrays(a), arrays(b)):
        np.testing.assert_array_equal(x, y)
    assert any(not np.array_equal(x, y) for x, y in zip(arrays(a), arrays(c)))
    assert a.meta["name"] == name and a.meta["seed"] == 3
    assert all(x.dtype == np.float64 and np.all(np.isfinite(x)) for x in arrays(a))


@pytest.mark.parametrize("name", ["sine", "moeller", "linear3"])
def test_fixed_data_sets_do_not_depend_on_the_seed(name):
    for x, y in zip(arrays(load(name, seed=0)), arrays(load(name, seed=5))):
        np.testing.assert_array_equal(x, y)


def test_gauss_bump_follows_the_formula():
    d = load("gauss-bump", n=30, a=3.0, b=2.0, c=0.5, d=-1.0, noise=0.0, n_test=50)
    assert d.x_train.shape == (30, 1) and d.x_test.shape == (50, 1)
    np.testing.assert_allclose(d.y_train, 3.0 * np.exp(-2.0 * (d.x_train - 0.5) ** 2) - 1.0,
                               rtol=1e-15)
    assert d.x_train.min() == -2.5 and d.x_train.max() == 3.5   # [c - 3, c + 3]
    noisy = load("gauss-bump", n=2000, noise=0.1, seed=1)
    clean = load("gauss-bump", n=2000, noise=0.0, seed=1)
    assert np.std(noisy.y_train - clean.y_train) == pytest.approx(0.1, rel=0.1)


# ---- teacher-student (Evens et al. 2021) --------------------------------------------------------


def test_teacher_shapes_and_meta():
    d = load("teacher", seed=0)
    assert d.x_train.shape == (250, 5) and d.y_train.shape == (250, 1)
    assert d.x_test.shape == (250, 5) and d.y_test.shape == (250, 1)
    m = d.meta
    assert (m["d0"], m["noise"], m["m"], m["m_test"]) == (5, 0.1, 250, 250)
    assert [W.shape for W in m["teacher_weights"]] == [(20, 5), (5, 20), (1, 5)]
    np.testing.assert_allclose(m["Sigma"], m["Sigma0"].T @ m["Sigma0"], rtol=1e-15)
    assert load("teacher", d0=10, m=30).x_train.shape == (30, 10)
    assert load("teacher", n=30).x_train.shape == (30, 5)  # n is an alias of m


def test_teacher_statistics():
    """a ~ N(mu, Sigma): sample mean and covariance of 20 000 draws within a few standard errors;
    y - teacher(a) has standard deviation noise; mu and Sigma0 entries have std 0.2."""
    d = load("teacher", seed=1, d0=5, noise=0.2, m=20000, m_test=0)
    mu, Sigma = d.meta["mu"], d.meta["Sigma"]
    se = np.sqrt(np.diag(Sigma) / d.n)
    assert np.all(np.abs(d.x_train.mean(0) - mu) < 5 * se)
    np.testing.assert_allclose(np.cov(d.x_train.T), Sigma, atol=5 * np.max(np.diag(Sigma)) / np.sqrt(d.n))
    W1, W2, W3 = d.meta["teacher_weights"]
    sp = lambda a: np.logaddexp(0, a)
    clean = sp(sp(d.x_train @ W1.T) @ W2.T) @ W3.T
    assert np.std(d.y_train - clean) == pytest.approx(0.2, rel=0.03)
    big = load("teacher", seed=2, d0=40, m=1, m_test=0).meta
    assert np.std(big["Sigma0"]) == pytest.approx(0.2, rel=0.1)      # 1600 entries
    assert np.std(W1) == pytest.approx(np.sqrt(2 / 5), rel=0.35)      # Kaiming normal, 100 draws


# ---- Santa Fe ------------------------------------------------------------------------------------


def fake_santafe(tmp_path, T=300, C=30):
    s = np.arange(T + C, dtype=float) % 17 + np.sin(np.arange(T + C))
    np.savetxt(tmp_path / "lasertrain.csv", s[:T], fmt="%.17g")
    np.savetxt(tmp_path / "laserpred.csv", s[T:], fmt="%.17g")
    return s[:T], s[T:]


def test_santafe_loader_on_files_in_data_dir(tmp_path):
    train, cont = fake_santafe(tmp_path)
    d = load("santafe", data_dir=tmp_path, n=100, lags=20, seed=0)
    mean, std = train.mean(), train.std()
    s = (train - mean) / std
    assert d.x_train.shape == (100, 20) and d.x_test.shape == (280 - 100, 20)
    np.testing.assert_allclose(d.meta["series"], s, rtol=1e-12)
    np.testing.assert_allclose(d.meta["continuation"], (cont - mean) / std, rtol=1e-12)
    assert d.meta["mean"] == pytest.approx(mean) and d.meta["std"] == pytest.approx(std)
    # every pair is (s[t-lags .. t-1], s[t]) with the window oldest first
    for x, y, t in zip(d.x_train, d.y_train, d.meta["train_t"]):
        np.testing.assert_array_equal(x, s[t - 20:t])
        assert y[0] == s[t]
    # training and test pairs partition all pairs
    assert sorted(np.r_[d.meta["train_t"], d.meta["test_t"]]) == list(range(20, 300))


def test_santafe_from_the_environment_variable(tmp_path, monkeypatch):
    fake_santafe(tmp_path)
    monkeypatch.setenv("LIFTNN_SANTAFE_DIR", str(tmp_path))
    assert load("santafe", n=10, lags=5).x_train.shape == (10, 5)


@needs_santafe
def test_santafe_real_files():
    d = load("santafe", data_dir=SANTAFE_DIR, seed=0)
    assert d.x_train.shape == (600, 80) and d.y_train.shape == (600, 1)
    assert d.x_test.shape == (920 - 600, 80)
    assert d.meta["series"].shape == (1000,) and d.meta["continuation"].shape == (100,)
    assert d.meta["lags"] == 80
    assert np.mean(d.meta["series"]) == pytest.approx(0, abs=1e-12)
    assert np.std(d.meta["series"]) == pytest.approx(1, rel=1e-12)
    raw = np.loadtxt(SANTAFE_DIR / "lasertrain.csv")
    np.testing.assert_allclose(d.meta["series"] * d.meta["std"] + d.meta["mean"], raw, rtol=1e-12)
    assert load("santafe", data_dir=SANTAFE_DIR, n_train=200).n == 200


def test_santafe_absent_gives_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("LIFTNN_SANTAFE_DIR", raising=False)
    with pytest.raises(ln.LiftnnError, match="LIFTNN_SANTAFE_DIR.*'laser'"):
        load("santafe")
    (tmp_path / "lasertrain.csv").write_text("1\n2\n")
    with pytest.raises(ln.LiftnnError, match="laserpred.csv"):
        load("santafe", data_dir=tmp_path)


# ---- the generated laser ------------------------------------------------------------------------


def test_laser_series_is_deterministic_and_santa_fe_like():
    d = load("laser", seed=0)
    assert d.x_train.shape == (600, 80) and d.x_test.shape == (320, 80)
    s, c = d.meta["series"], d.meta["continuation"]
    assert s.shape == (1000,) and c.shape == (100,) and d.meta["lags"] == 80
    assert np.mean(s) == pytest.approx(0, abs=1e-12) and np.std(s) == pytest.approx(1, rel=1e-12)
    raw = s * d.meta["std"] + d.meta["mean"]  # undoing the normalisation rounds by a few ulps
    assert -1e-9 <= raw.min() < 5 and 200 < raw.max() <= 255 + 1e-9   # intensity scaled like set A
    # pulsations of about 7 samples, as in the Santa Fe series
    peaks = np.flatnonzero((raw[1:-1] > raw[:-2]) & (raw[1:-1] >= raw[2:]))
    assert 5 < np.mean(np.diff(peaks)) < 10
    other = load("laser", seed=1)
    np.testing.assert_array_equal(other.meta["series"], s)          # the series is fixed
    assert not np.array_equal(other.x_train, d.x_train)             # the drawn pairs are not
    t = d.meta["train_t"][0]
    np.testing.assert_array_equal(d.x_train[0], s[t - 80:t])


# ---- diabetes, moeller2 -------------------------------------------------------------------------


@pytest.mark.skipif(not HAVE_SKLEARN, reason="scikit-learn not installed")
def test_diabetes_split_and_standardisation():
    d = load("diabetes", seed=0)
    assert d.d_in == 10 and d.n + len(d.x_test) == 442 and len(d.x_test) == 110
    np.testing.assert_allclose(d.x_train.mean(0), 0, atol=1e-12)
    np.testing.assert_allclose(d.x_train.std(0), 1, rtol=1e-12)
    assert set(d.meta["train_index"]).isdisjoint(d.meta["test_index"])
    assert not np.array_equal(load("diabetes", seed=1).x_train, d.x_train)


def test_diabetes_without_scikit_learn(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ln.LiftnnError, match="scikit-learn"):
        load("diabetes")


def test_moeller2_data_fit_the_network():
    d = load("moeller2", seed=0)
    assert d.x_train.shape == (20, 6) and d.y_train.shape == (20, 3)
    assert np.all(np.abs(d.y_train) < 1) and np.std(d.y_train) > 0.2
    clean = load("moeller2", seed=0, noise=0.0)
    net = ln.Moeller2Net()
    params = [(W, None) for W in clean.meta["teacher_weights"]]
    np.testing.assert_allclose(np.asarray(net.apply(params, clean.x_train)), clean.y_train,
                               rtol=1e-13)


# ---- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name, kw, match", [
    ("gauss-bump", {"n": 0}, "n must be"),
    ("gauss-bump", {"noise": -0.1}, "noise"),
    ("gauss-bump", {"b": 0.0}, "b must be > 0"),
    ("gauss-bump", {"lo": 2.0, "hi": 1.0}, "lo < hi"),
    ("teacher", {"m": 0}, "m must be"),
    ("teacher", {"d0": 0}, "d0 must be"),
    ("teacher", {"noise": -1}, "noise"),
    ("teacher", {"m": 10, "n": 20}, "not both"),
    ("teacher", {"width": 3}, "unexpected keyword"),
    ("laser", {"n": 0}, "n must be"),
    ("laser", {"n": 2000}, "only 920 pairs"),
    ("laser", {"lags": 1000}, "no pair"),
    ("laser", {"n": 5, "n_train": 6}, "not both"),
    ("laser", {"n": 2.5}, "integer"),
    ("diabetes", {"test_fraction": 1.0}, "test_fraction"),
    ("moeller2", {"m": -1}, "m must be"),
    ("moeller2", {"noise": float("nan")}, "noise"),
    ("nope", {}, "unknown data set"),
])
def test_bad_input_is_refused(name, kw, match):
    with pytest.raises(ln.LiftnnError, match=match):
        load(name, **kw)


def test_dataset_test_part_must_match_the_training_width():
    from liftnn.datasets import Dataset

    with pytest.raises(ln.LiftnnError, match="x_test has 3 columns"):
        Dataset(np.ones((3, 2)), np.ones((3, 1)), np.ones((4, 3)), np.ones((4, 1)))
    d = Dataset(np.ones((3, 1)), np.ones(3), [], [])
    assert d.x_test.shape == (0, 1) and d.y_test.shape == (0, 1)


def test_print_dataset_is_a_summary_not_the_arrays():
    d = load("wine")
    text = str(d)
    assert text == repr(d)
    assert text.startswith("Dataset('wine': n=133 train, 45 test; x_train (133, 13), y_train "
                           "(133, 1), x_test (45, 13), y_test (45, 1); meta: class_names")
    assert "n_classes" in text and "[" not in text and len(text) < 400
    own = ln.datasets.Dataset(np.zeros((3, 2)), np.zeros(3), np.zeros((0, 2)), np.zeros(0))
    assert repr(own) == ("Dataset('custom': n=3 train, 0 test; x_train (3, 2), y_train (3, 1), "
                         "x_test (0, 2), y_test (0, 1); meta: none)")
