"""Training samples padded to a bucket size, so that nearby sample counts share one program.

A jitted program is compiled for the shapes of its arguments: every new number of training
samples (a cross-validation fold, a validation split, a bench cell) compiles the trainer again,
which on small problems costs more than the training (docs/benchmarks.md "Compile time").  The
trainers that pad (`alm`, `lm` / `gn` through liftnn.solvers.lm_compiled, and the classical
solvers' objective, liftnn.problem.TrainingProblem.data_bound_fun) append zero rows to X
and Y up to `bucket(m)` and carry a row weight w (1 for a real sample, 0 for a padded one) and
the real m as traced arguments: every residual of a padded row is multiplied by its weight (it
adds nothing to a loss, a gradient, a Gauss-Newton matrix or a constraint), and every mean
divides by the real m.  The results equal the unpadded program's up to the rounding of sums of
different lengths (tests/test_padding.py checks 1e-10 on short runs).

The ladder: m itself below MIN_PAD; above, the next multiple of 2^(floor(log2 m) - 4), i.e.
sixteen sizes per octave, at most 1/16 (6.25 %) extra rows (353 and 354 -> 368, 332 -> 336): a
single training pays at most that much more loop time, and the folds of a split (whose sizes
differ by a row or two) nearly always share a size.
LIFTNN_PAD=off trains on the data as given.  Sharded training (devices > 1) does not pad.
"""

from __future__ import annotations

import contextlib
import os
import threading

import numpy as np

#: below this many samples the data are used as given (small problems compile small programs)
MIN_PAD = 64
#: the rows of every padded forward pass (predict_size)
PREDICT_ROWS = 512
#: steps of the ladder per doubling of m
PER_OCTAVE = 16
#: "off" (or "0", "false", "no"): no padding
ENV = "LIFTNN_PAD"


def enabled() -> bool:
    """Whether the trainers pad (LIFTNN_PAD is not off)."""
    return os.environ.get(ENV, "").strip().lower() not in ("off", "0", "false", "no")


def bucket(m: int) -> int:
    """The padded size for m samples (module docstring): m below MIN_PAD, else the next multiple
    of 2^(floor(log2 m) - log2 PER_OCTAVE)."""
    m = int(m)
    if m < MIN_PAD:
        return m
    step = 2 ** max(m.bit_length() - 1 - (PER_OCTAVE.bit_length() - 1), 0)
    return -(-m // step) * step


_FLOOR = threading.local()


def size_for(m: int) -> int:
    """bucket(m) when padding is enabled, else m; inside `at_least(n)` the bucket of
    max(m, n)."""
    if not enabled():
        return int(m)
    return bucket(max(int(m), getattr(_FLOOR, "rows", 0)))


@contextlib.contextmanager
def at_least(rows: int):
    """Within the block (this thread), training pads to the bucket of at least `rows` samples:
    a fit on part of the data (the classifier's held-out comparison, liftnn.sklearn) then
    shares its programs with the later fit on every row.  Blocks nest (the larger floor wins)."""
    old = getattr(_FLOOR, "rows", 0)
    _FLOOR.rows = max(old, int(rows))
    try:
        yield
    finally:
        _FLOOR.rows = old


def predict_size(m: int) -> int:
    """The rows of one forward pass (liftnn.problem.predict) for m rows: PREDICT_ROWS when
    padding is enabled (m rows are padded up to it, or split into passes of it), else m.  A
    forward pass of the small networks liftnn trains costs microseconds next to compiling one
    (0.05-0.17 s per row count on a 2-core CPU), so every prediction of a model (training,
    held-out and test rows of each cross-validation fold) shares one program."""
    return PREDICT_ROWS if enabled() else int(m)


def pad_rows(A, size: int) -> np.ndarray:
    """A (m, ...) with zero rows appended to `size` rows (host NumPy, float64)."""
    A = np.asarray(A, dtype=np.float64)
    extra = int(size) - A.shape[0]
    if extra < 0:
        raise ValueError(f"cannot pad {A.shape[0]} rows to {size}")
    if extra == 0:
        return A
    return np.concatenate([A, np.zeros((extra,) + A.shape[1:])], axis=0)


def row_weights(m: int, size: int) -> np.ndarray:
    """w (size,): 1 for the m real rows, 0 for the padded ones."""
    w = np.zeros(int(size))
    w[:int(m)] = 1.0
    return w


#: the losses that are means over the samples (a padded batch's mean is rescaled to the real m)
MEAN_LOSSES = ("mse", "cross_entropy")


def masked_loss(loss_fn, loss: str, out, Y, w, m):
    """loss_fn(out, Y) over the real rows only: a padded row (w = 0) predicts its own target
    (zero residual; for the cross-entropy its one-hot row is zero), and a mean loss is rescaled
    from the padded row count to the real m.  Traceable (out, Y, w, m may be traced)."""
    import jax.numpy as jnp

    filled = jnp.where(w[:, None] > 0, out, Y)
    value = loss_fn(filled, Y)
    return value * (Y.shape[0] / m) if loss in MEAN_LOSSES else value
