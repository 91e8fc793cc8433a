"""Classification data sets: generated two moons and spirals; scikit-learn's bundled iris, wine,
breast_cancer and digits.

Every builder returns a Dataset whose targets are class indices 0..k-1 as floats of shape (m, 1)
(`labels="index"`, what liftnn.models.losses.cross_entropy reads) or one-hot rows of shape (m, k)
(`labels="onehot"`: what an MLP with k outputs accepts as Y in liftnn.train today, since
MLP.check_data wants d_out columns).  meta carries task = "classification", n_classes,
class_names, the split and the noise.  Deterministic for a given seed; arguments are checked
before any work (LiftnnError naming the bad one).

- moons, spirals: drawn afresh for the training and the test set (separate random streams of the
  seed), classes balanced; the inputs are O(1) already and are not rescaled.
- iris, wine, breast_cancer, digits: the copies that ship inside scikit-learn (no download;
  scikit-learn is imported only when one of them is loaded), a seeded stratified split
  (test_fraction of every class for testing), features standardised with the training split's
  mean and standard deviation (a constant feature, e.g. digits' blank border pixels, is only
  centred).
"""

from __future__ import annotations

import numpy as np

from liftnn._validate import check_choice, check_positive
from liftnn.datasets.base import Dataset, register
from liftnn.errors import LiftnnError

LABELS = ("index", "onehot")


def _count(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise LiftnnError(f"{name} must be an integer >= {minimum}; got {value!r}")
    return int(value)


def _targets(idx: np.ndarray, k: int, labels: str) -> np.ndarray:
    """Class indices (m,) -> (m, 1) float indices or (m, k) one-hot rows."""
    if labels == "onehot":
        return np.eye(k)[idx]
    return idx.astype(np.float64)[:, None]


def _dataset(x_tr, i_tr, x_te, i_te, k, labels, meta) -> Dataset:
    meta = {**meta, "task": "classification", "n_classes": int(k), "labels": labels,
            "n": len(i_tr), "n_test": len(i_te)}
    return Dataset(x_tr, _targets(i_tr, k, labels), x_te, _targets(i_te, k, labels), meta)


def _balanced(n: int, k: int) -> np.ndarray:
    """n class indices as equal as possible, in blocks: [0, 0, ..., 1, 1, ..., k-1]."""
    return np.repeat(np.arange(k), [n // k + (c < n % k) for c in range(k)])


# ---- generated ---------------------------------------------------------------------------


def _moons(rng, n: int, noise: float):
    idx = _balanced(n, 2)
    t = rng.uniform(0.0, np.pi, n)
    x = np.where(idx[:, None] == 0, np.stack([np.cos(t), np.sin(t)], 1),
                 np.stack([1.0 - np.cos(t), 0.5 - np.sin(t)], 1))
    return x + noise * rng.standard_normal((n, 2)), idx


@register("moons")
def moons(seed: int = 0, n: int = 200, n_test: int = 200, noise: float = 0.1,
          labels: str = "index") -> Dataset:
    """Two interleaved half circles (as sklearn.datasets.make_moons): class 0 on
    (cos t, sin t), class 1 on (1 - cos t, 1/2 - sin t), t ~ U(0, pi), plus N(0, noise^2) in
    each coordinate.  Shapes: x_train (n, 2), x_test (n_test, 2); 2 classes."""
    n, n_test = _count("n", n, 2), _count("n_test", n_test, 0)
    noise = check_positive("noise", noise, strict=False)
    check_choice("labels", labels, LABELS)
    tr, te = (np.random.default_rng(s) for s in np.random.SeedSequence(int(seed)).spawn(2))
    x_tr, i_tr = _moons(tr, n, noise)
    x_te, i_te = _moons(te, n_test, noise)
    return _dataset(x_tr, i_tr, x_te, i_te, 2, labels,
                    {"name": "moons", "seed": int(seed), "noise": noise,
                     "class_names": ["upper", "lower"]})


def _spirals(rng, n: int, k: int, turns: float, noise: float):
    idx = _balanced(n, k)
    t = np.sqrt(rng.uniform(0.0, 1.0, n))  # radius; sqrt: points spread evenly along the arm
    angle = 2.0 * np.pi * (turns * t + idx / k)
    x = np.stack([t * np.cos(angle), t * np.sin(angle)], 1)
    return x + noise * rng.standard_normal((n, 2)), idx


@register("spirals")
def spirals(seed: int = 0, n: int = 300, n_test: int = 300, n_classes: int = 2,
            turns: float = 1.0, noise: float = 0.05, labels: str = "index") -> Dataset:
    """n_classes interleaved spiral arms in the unit disc: arm c at radius r ~ sqrt(U(0, 1)),
    angle 2 pi (turns r + c / n_classes), plus N(0, noise^2) in each coordinate.
    Shapes: x_train (n, 2), x_test (n_test, 2)."""
    n, n_test = _count("n", n, 2), _count("n_test", n_test, 0)
    k = _count("n_classes", n_classes, 2)
    if n < k:
        raise LiftnnError(f"n = {n} is fewer than one sample per class (n_classes = {k})")
    turns = check_positive("turns", turns)
    noise = check_positive("noise", noise, strict=False)
    check_choice("labels", labels, LABELS)
    tr, te = (np.random.default_rng(s) for s in np.random.SeedSequence(int(seed)).spawn(2))
    x_tr, i_tr = _spirals(tr, n, k, turns, noise)
    x_te, i_te = _spirals(te, n_test, k, turns, noise)
    return _dataset(x_tr, i_tr, x_te, i_te, k, labels,
                    {"name": "spirals", "seed": int(seed), "noise": noise, "turns": turns,
                     "class_names": [f"arm {c}" for c in range(k)]})


# ---- scikit-learn's bundled data sets ----------------------------------------------------


def stratified_split(idx: np.ndarray, test_fraction: float, seed: int):
    """Seeded stratified split of sample indices: round(test_fraction * m_c) of every class c
    (at least one, and at least one left for training, when the class has two or more samples)
    go to the test set.  Returns (train rows, test rows), each sorted."""
    rng = np.random.default_rng(int(seed))
    test = []
    for c in np.unique(idx):
        rows = np.flatnonzero(idx == c)
        k = len(rows)
        n_te = 0 if k < 2 else min(max(round(test_fraction * k), 1), k - 1)
        test.append(rng.permutation(rows)[:n_te])
    te = np.sort(np.concatenate(test))
    return np.setdiff1d(np.arange(len(idx)), te), te


def _bundled(name: str, loader: str, seed, test_fraction, labels) -> Dataset:
    tf = check_positive("test_fraction", test_fraction)
    if not tf < 1.0:
        raise LiftnnError(f"test_fraction must be in (0, 1); got {test_fraction!r}")
    check_choice("labels", labels, LABELS)
    try:
        import sklearn.datasets as skd
    except ImportError:
        raise LiftnnError(f"the {name!r} data set is the copy bundled with scikit-learn: install "
                          f"it (pip install scikit-learn, or the liftnn[dev] extra)") from None
    raw = getattr(skd, loader)()
    X = np.asarray(raw.data, dtype=np.float64)
    idx = np.asarray(raw.target, dtype=np.int64)
    k = len(raw.target_names)
    tr, te = stratified_split(idx, tf, seed)
    mean, std = X[tr].mean(0), X[tr].std(0)
    std = np.where(std > 0.0, std, 1.0)
    meta = {"name": name, "seed": int(seed), "test_fraction": tf,
            "class_names": [str(c) for c in raw.target_names],
            "standardised": "features, with the training split's mean and std",
            "x_mean": mean.tolist(), "x_std": std.tolist(), "source": f"sklearn.datasets.{loader}"}
    return _dataset((X[tr] - mean) / std, idx[tr], (X[te] - mean) / std, idx[te], k, labels,
                    meta)


@register("iris")
def iris(seed: int = 0, test_fraction: float = 0.25, labels: str = "index") -> Dataset:
    """Fisher's iris (150 flowers, 4 features, 3 classes of 50), scikit-learn's copy."""
    return _bundled("iris", "load_iris", seed, test_fraction, labels)


@register("wine")
def wine(seed: int = 0, test_fraction: float = 0.25, labels: str = "index") -> Dataset:
    """The UCI wine recognition data (178 wines, 13 features, 3 cultivars), scikit-learn's copy."""
    return _bundled("wine", "load_wine", seed, test_fraction, labels)


@register("breast_cancer")
def breast_cancer(seed: int = 0, test_fraction: float = 0.25, labels: str = "index") -> Dataset:
    """The Wisconsin diagnostic breast cancer data (569 tumours, 30 features, malignant /
    benign), scikit-learn's copy."""
    return _bundled("breast_cancer", "load_breast_cancer", seed, test_fraction, labels)


@register("digits")
def digits(seed: int = 0, test_fraction: float = 0.25, labels: str = "index") -> Dataset:
    """The UCI handwritten digits (1797 images of 8 x 8 pixels, 64 features, 10 classes),
    scikit-learn's copy."""
    return _bundled("digits", "load_digits", seed, test_fraction, labels)
