"""The remaining data sets: gauss-bump, teacher, santafe, laser, diabetes, moeller2.

Every builder checks its arguments before any work (LiftnnError naming the bad one) and is
deterministic for a given seed.  Arrays are float64 with samples as rows.
"""

from __future__ import annotations

import functools
import itertools
import os
from pathlib import Path

import numpy as np

from liftnn._validate import check_positive
from liftnn.datasets.base import Dataset, register
from liftnn.errors import LiftnnError


def _rng(seed) -> np.random.Generator:
    return np.random.default_rng(int(seed))


def _count(name: str, value, minimum: int = 1) -> int:
    """An integer >= minimum (bools and non-integral floats refused)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer, float, np.floating)):
        raise LiftnnError(f"{name} must be an integer >= {minimum}; got {value!r}")
    if float(value) != int(value) or int(value) < minimum:
        raise LiftnnError(f"{name} must be an integer >= {minimum}; got {value!r}")
    return int(value)


def _finite(name: str, value) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise LiftnnError(f"{name} must be a number; got {value!r}") from None
    if not np.isfinite(v):
        raise LiftnnError(f"{name} must be finite; got {value!r}")
    return v


def _alias(name: str, value, alias: str, alias_value, default):
    """Resolve a keyword that has an alias (e.g. n / n_train); both given and different: error."""
    if value is not None and alias_value is not None and value != alias_value:
        raise LiftnnError(f"give {name} or {alias}, not both ({name}={value!r}, {alias}={alias_value!r})")
    if value is not None:
        return value
    return alias_value if alias_value is not None else default


# ---- seed 004: the Gaussian bump ------------------------------------------------------------


@register("gauss-bump")
def gauss_bump(seed: int = 0, n: int = 40, a: float = 2.0, b: float = 1.5, c: float = 1.0,
               d: float = 0.5, noise: float = 0.05, lo: float | None = None,
               hi: float | None = None, n_test: int = 200) -> Dataset:
    """Seed 004 ("What if..."): y = a exp(-b (x - c)^2) + d + N(0, noise^2).

    n points evenly on [lo, hi] (default [c - 3, c + 3], so the bump and both tails are
    sampled); b > 0.  The test set is the noise-free curve on n_test points of the same interval.
    Shapes: x_train, y_train (n, 1); x_test, y_test (n_test, 1).
    """
    n = _count("n", n)
    n_test = _count("n_test", n_test, 0)
    a, b, c, d = (_finite(k, v) for k, v in (("a", a), ("b", b), ("c", c), ("d", d)))
    check_positive("b", b)
    noise = check_positive("noise", noise, strict=False)
    lo = c - 3.0 if lo is None else _finite("lo", lo)
    hi = c + 3.0 if hi is None else _finite("hi", hi)
    if not lo < hi:
        raise LiftnnError(f"need lo < hi; got lo={lo}, hi={hi}")

    def f(x):
        return a * np.exp(-b * (x - c) ** 2) + d

    x = np.linspace(lo, hi, n)
    y = f(x) + noise * _rng(seed).standard_normal(n)
    xt = np.linspace(lo, hi, n_test)
    return Dataset(x[:, None], y[:, None], xt[:, None], f(xt)[:, None],
                   {"name": "gauss-bump", "seed": int(seed), "n": n, "a": a, "b": b, "c": c,
                    "d": d, "noise": noise, "interval": [lo, hi]})


# ---- Evens et al. 2021 teacher-student ------------------------------------------------------


def _softplus(a):
    return np.logaddexp(0.0, a)


@register("teacher")
def teacher(seed: int = 0, d0: int = 5, noise: float = 0.1, m: int | None = None,
            m_test: int = 250, n: int | None = None) -> Dataset:
    """Evens et al. 2021 teacher-student regression (DESIGN.md sec. 2).

    Drawn in this order from numpy.random.default_rng(seed):
      mu ~ N(0, 0.2^2 I) (d0,);  Sigma0 entries ~ N(0, 0.2^2) (d0, d0);  Sigma = Sigma0^T Sigma0;
      teacher weights W1 (20, d0), W2 (5, 20), W3 (1, 5), each W ~ N(0, 2 / fan_in)
      (Kaiming-normal), no biases;  training inputs a_k = mu + Sigma0^T xi_k, xi_k ~ N(0, I)
      (so a ~ N(mu, Sigma));  then the test inputs;  then the noise of the training targets and
      of the test targets.
    Targets: y = W3 softplus(W2 softplus(W1 a)) + noise * N(0, 1) (linear output), for both sets,
    so the test MSE of a perfect fit is about noise^2.

    Args: d0 input dimension (>= 1); noise delta0 (>= 0); m training samples (default 250; `n` is
    accepted as an alias); m_test test samples (>= 0).
    Shapes: x_train (m, d0), y_train (m, 1), x_test (m_test, d0), y_test (m_test, 1).
    meta records mu, Sigma, Sigma0, the teacher weights and every argument.
    """
    m = _count("m", _alias("m", m, "n", n, 250))
    m_test = _count("m_test", m_test, 0)
    d0 = _count("d0", d0)
    noise = check_positive("noise", noise, strict=False)
    rng = _rng(seed)
    mu = 0.2 * rng.standard_normal(d0)
    sigma0 = 0.2 * rng.standard_normal((d0, d0))
    sizes = (d0, 20, 5, 1)
    Ws = [np.sqrt(2.0 / i) * rng.standard_normal((o, i)) for i, o in itertools.pairwise(sizes)]

    def net(A):
        H = _softplus(A @ Ws[0].T)
        H = _softplus(H @ Ws[1].T)
        return H @ Ws[2].T

    A = mu + rng.standard_normal((m, d0)) @ sigma0
    At = mu + rng.standard_normal((m_test, d0)) @ sigma0
    y = net(A) + noise * rng.standard_normal((m, 1))
    yt = net(At) + noise * rng.standard_normal((m_test, 1))
    meta = {"name": "teacher", "seed": int(seed), "d0": d0, "noise": noise, "m": m,
            "m_test": m_test, "n": m, "mu": mu, "Sigma0": sigma0, "Sigma": sigma0.T @ sigma0,
            "teacher_arch": "-".join(map(str, sizes)), "teacher_activation": "softplus",
            "teacher_bias": False, "teacher_init": "kaiming_normal",
            "teacher_weights": [W.copy() for W in Ws]}
    return Dataset(A, y, At.reshape(m_test, d0), yt, meta)


# ---- NARX series: Santa Fe laser and its Lorenz-Haken stand-in ------------------------------


def _narx(name: str, train_series: np.ndarray, continuation: np.ndarray, seed, n, lags,
          extra_meta: dict) -> Dataset:
    """Normalise by the training mean/std and build NARX pairs x_t = s[t-lags:t] -> y = s[t].

    Pairs are all t = lags .. T-1 of the training series (T - lags of them, inputs oldest value
    first); n of them, drawn without replacement with the seed and kept in time order, are the
    training set, the remaining pairs the test set.
    """
    T = len(train_series)
    n_pairs = T - lags
    if n_pairs < 1:
        raise LiftnnError(f"lags = {lags} leaves no pair in a series of {T} points")
    if n > n_pairs:
        raise LiftnnError(f"n = {n} training pairs requested but the series gives only "
                          f"{n_pairs} pairs with lags = {lags}")
    mean, std = float(np.mean(train_series)), float(np.std(train_series))
    if std == 0.0:
        raise LiftnnError(f"{name}: the training series is constant; it cannot be normalised")
    s = (train_series - mean) / std
    cont = (continuation - mean) / std
    X = np.lib.stride_tricks.sliding_window_view(s, lags)[:-1]  # rows t = lags .. T-1
    Y = s[lags:, None]
    idx = np.sort(_rng(seed).choice(n_pairs, size=n, replace=False))
    rest = np.setdiff1d(np.arange(n_pairs), idx)
    meta = {"name": name, "seed": int(seed), "n": n, "lags": lags, "mean": mean, "std": std,
            "series": s, "continuation": cont, "train_t": idx + lags, "test_t": rest + lags,
            "input_order": "oldest_first", "test_set": "the NARX pairs not drawn for training",
            **extra_meta}
    return Dataset(X[idx].copy(), Y[idx].copy(), X[rest].copy(), Y[rest].copy(), meta)


def _narx_args(n, n_train, lags) -> tuple[int, int]:
    n = _count("n", _alias("n", n, "n_train", n_train, 600))
    lags = _count("lags", lags)
    return n, lags


def _read_series(path: Path) -> np.ndarray:
    try:
        s = np.loadtxt(path, dtype=np.float64, ndmin=1)
    except (OSError, ValueError) as exc:
        raise LiftnnError(f"cannot read {path}: {exc}") from None
    if s.ndim != 1 or s.size == 0:
        raise LiftnnError(f"{path}: expected one value per line; got an array of shape {s.shape}")
    if not np.all(np.isfinite(s)):
        raise LiftnnError(f"{path}: contains NaN or Inf")
    return s


SANTAFE_FILES = ("lasertrain.csv", "laserpred.csv")


@register("santafe")
def santafe(seed: int = 0, n: int | None = None, lags: int = 80, data_dir=None,
            n_train: int | None = None) -> Dataset:
    """Santa Fe competition data set A (far-infrared laser; DESIGN.md sec. 2), NARX pairs.

    Reads lasertrain.csv (1000 training points) and laserpred.csv (the 100-point continuation)
    from `data_dir`, else from the directory in the LIFTNN_SANTAFE_DIR environment variable.
    Normalised by the training mean and std; x_t = (s_{t-lags}, ..., s_{t-1}) -> y_t = s_t for
    t = lags .. 999 (920 pairs with lags = 80); n (alias n_train, default 600) of them drawn with
    the seed for training, the other pairs for testing.  meta: "series" (the normalised 1000
    training points), "continuation" (the normalised 100 points), "mean", "std", "lags", for a
    free-run prediction of the continuation (liftnn.bench.freerun).  Shapes: x_train (n, lags),
    y_train (n, 1), x_test (T - lags - n, lags), y_test (T - lags - n, 1), T = 1000.
    """
    n, lags = _narx_args(n, n_train, lags)
    where = data_dir if data_dir is not None else os.environ.get("LIFTNN_SANTAFE_DIR")
    if where is None or str(where) == "":
        raise LiftnnError(
            "the Santa Fe laser data are not bundled: put lasertrain.csv and laserpred.csv (one "
            "value per line) in a directory and pass data_dir=DIR or set LIFTNN_SANTAFE_DIR=DIR; "
            "the 'laser' data set is a generated stand-in that needs no files")
    d = Path(os.fspath(where)).expanduser()
    missing = [str(d / f) for f in SANTAFE_FILES if not (d / f).is_file()]
    if missing:
        how = "data_dir" if data_dir is not None else "LIFTNN_SANTAFE_DIR"
        raise LiftnnError(f"Santa Fe file(s) not found: {', '.join(missing)} (the directory comes "
                          f"from {how}; it must hold {' and '.join(SANTAFE_FILES)})")
    train = _read_series(d / SANTAFE_FILES[0])
    cont = _read_series(d / SANTAFE_FILES[1])
    return _narx("santafe", train, cont, seed, n, lags, {"data_dir": str(d)})


# Lorenz-Haken single-mode laser (Haken 1975), in Lorenz form with E the field, P the
# polarisation and D the inversion measured from the pump (z = r - D):
#   dE/dt = sigma (P - E),  dP/dt = r E - P - E z,  dz/dt = E P - b z.
# sigma = 2, r = 15, b = 0.25: the "bad-cavity" regime whose intensity I = E^2 shows the Santa Fe
# pattern (spiralling growth of the pulsations, then a collapse).
LASER_PARAMS = {"sigma": 2.0, "r": 15.0, "b": 0.25, "u0": (1.0, 1.0, 1.0), "t_transient": 100.0,
                "dt": 0.47, "points": 1100, "peak": 255.0}


@functools.lru_cache(maxsize=1)
def _laser_series() -> np.ndarray:
    from scipy.integrate import solve_ivp

    p = LASER_PARAMS
    sigma, r, b = p["sigma"], p["r"], p["b"]

    def rhs(_t, u):
        E, P, z = u
        return [sigma * (P - E), r * E - P - E * z, E * P - b * z]

    t = p["t_transient"] + p["dt"] * np.arange(p["points"])
    sol = solve_ivp(rhs, (0.0, float(t[-1])), list(p["u0"]), method="DOP853", t_eval=t,
                    rtol=1e-10, atol=1e-12)
    if not sol.success:  # pragma: no cover - fixed, well-tested integration
        raise RuntimeError(f"Lorenz-Haken integration failed: {sol.message}")
    intensity = sol.y[0] ** 2
    return p["peak"] * intensity / intensity.max()  # the range of set A (0 .. 255)


@register("laser")
def laser(seed: int = 0, n: int | None = None, lags: int = 80, n_train: int | None = None) -> Dataset:
    """A chaotic laser-intensity series generated here (stand-in for the Santa Fe data).

    The Lorenz-Haken single-mode laser equations (field E, polarisation P, z = pump - inversion)

        dE/dt = sigma (P - E),   dP/dt = r E - P - E z,   dz/dt = E P - b z

    (see LASER_PARAMS: sigma = 2, r = 15, b = 0.25, start (1, 1, 1)) are integrated with scipy's DOP853 (rtol 1e-10), the transient t < 100 dropped, and the
    intensity E^2 sampled every 0.47 time units (about 7 samples per pulsation, as in set A) and
    scaled to a peak of 255 (set A's range; not quantised).  The first 1000 points are the
    training series and the next 100 the continuation; the series does not depend on the seed.
    Same NARX pairs, normalisation, keywords and meta as "santafe": x_train (n, lags),
    y_train (n, 1), x_test (1000 - lags - n, lags), y_test (1000 - lags - n, 1).
    """
    n, lags = _narx_args(n, n_train, lags)
    s = _laser_series()
    return _narx("laser", s[:1000], s[1000:1100], seed, n, lags,
                 {"generator": "Lorenz-Haken", "generator_params": dict(LASER_PARAMS)})


# ---- scikit-learn's diabetes regression -----------------------------------------------------


@register("diabetes")
def diabetes(seed: int = 0, test_fraction: float = 0.25) -> Dataset:
    """scikit-learn's bundled diabetes data (442 patients, 10 features, disease progression).

    A seeded random split (test_fraction of the rows for testing, in (0, 1)); features and target
    standardised with the training split's mean and std (applied to both splits).
    Shapes: x_train (442 - n_test, 10), y_train (442 - n_test, 1), n_test = round(442 tf).
    """
    tf = _finite("test_fraction", test_fraction)
    if not 0.0 < tf < 1.0:
        raise LiftnnError(f"test_fraction must be in (0, 1); got {test_fraction!r}")
    try:
        from sklearn.datasets import load_diabetes
    except ImportError:
        raise LiftnnError("the 'diabetes' data set needs scikit-learn (pip install scikit-learn, "
                          "or the liftnn[dev] extra)") from None
    raw = load_diabetes()
    X, y = np.asarray(raw.data, dtype=np.float64), np.asarray(raw.target, dtype=np.float64)[:, None]
    m = X.shape[0]
    n_test = min(max(round(tf * m), 1), m - 1)
    perm = _rng(seed).permutation(m)
    te, tr = np.sort(perm[:n_test]), np.sort(perm[n_test:])
    xm, xs = X[tr].mean(0), X[tr].std(0)
    ym, ys = y[tr].mean(0), y[tr].std(0)
    meta = {"name": "diabetes", "seed": int(seed), "n": len(tr), "test_fraction": tf,
            "feature_names": list(raw.feature_names), "x_mean": xm, "x_std": xs,
            "y_mean": float(ym[0]), "y_std": float(ys[0]), "train_index": tr, "test_index": te}
    return Dataset((X[tr] - xm) / xs, (y[tr] - ym) / ys, (X[te] - xm) / xs, (y[te] - ym) / ys, meta)


# ---- data for seed 001's two-hidden-layer network -------------------------------------------


@register("moeller2")
def moeller2(seed: int = 0, m: int | None = None, noise: float = 0.05, m_test: int = 20,
             n: int | None = None) -> Dataset:
    """Synthetic data for seed 001's Moeller2Net: 6 inputs, 3 targets in (-1, 1).

    From numpy.random.default_rng(seed): teacher weights W1 (5, 6), W2 (4, 5), W3 (3, 4) with
    entries N(0, 1.5^2 / fan_in); inputs y ~ N(0, I_6) for m training (default 20; alias n) and
    m_test test samples; targets z = tanh(A3 + noise * N(0, 1)), A3 = W3 H* + H0 1 the teacher's
    output pre-activation (liftnn.models.moeller.Moeller2Net), so targets stay in (-1, 1).
    Shapes: x_train (m, 6), y_train (m, 3), x_test (m_test, 6), y_test (m_test, 3).
    """
    import jax.numpy as jnp

    from liftnn.models.moeller import Moeller2Net

    m = _count("m", _alias("m", m, "n", n, 20))
    m_test = _count("m_test", m_test, 0)
    noise = check_positive("noise", noise, strict=False)
    rng = _rng(seed)
    net = Moeller2Net()
    Ws = [1.5 / np.sqrt(i) * rng.standard_normal((o, i)) for o, i in net.shapes]
    params = [(jnp.asarray(W), None) for W in Ws]
    X = rng.standard_normal((m, 6))
    Xt = rng.standard_normal((m_test, 6))

    def targets(A):
        if len(A) == 0:
            return np.zeros((0, 3))
        A3 = np.asarray(net.forward(params, A)["A3"])
        return np.tanh(A3 + noise * rng.standard_normal(A3.shape))

    y, yt = targets(X), targets(Xt)
    meta = {"name": "moeller2", "seed": int(seed), "n": m, "m": m, "m_test": m_test,
            "noise": noise, "teacher_weights": [W.copy() for W in Ws]}
    return Dataset(X, y, Xt, yt, meta)
