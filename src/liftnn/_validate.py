"""Input and option checks shared by every front door and solver (one home for them).

Each raises LiftnnError naming the bad argument, before any work starts:

- arrays: `as_2d_finite`, `check_data` (inputs/targets against a model's widths);
- arrays against a network: `check_input_shape` (what MLP.apply is given), `check_samples`
  (at least two training samples), `check_scale` (overflowing or far-from-unit-scale data),
  `class_targets` (class indices -> one-hot rows for the cross-entropy);
- scalars: `check_positive`, `check_choice`, `canonical` (a name among choices or aliases,
  compared without case: the rule for method, activation and loss names);
- option dicts (validated in place, so a solver reads the checked value back): `number`,
  `integer`, `choice`, `callable_or_none`, and `merge_options` (defaults + user options, unknown
  names rejected with the valid ones listed).
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

from liftnn.errors import LiftnnError, LiftnnWarning

#: check_scale warns when an array's largest column scale (max over columns of |mean| and std)
#: lies outside this range: far from unit scale, which the default initialisations assume
SCALE_RANGE = (1e-4, 1e4)
#: check_scale refuses targets with |values| above this: their squared errors overflow float64
#: (sqrt(max float64) is 1.3e154)
OVERFLOW_LIMIT = 1e150


def as_2d_finite(name: str, a: Any, allow_empty: bool = False) -> np.ndarray:
    """Return `a` as a float64 2-D array, or raise if it is empty, ragged or not finite.

    A 1-D array is read as one feature per sample (a column).
    """
    try:
        arr = np.asarray(a, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise LiftnnError(f"{name} is not a numeric array: {exc}") from None
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise LiftnnError(f"{name} must be 2-D (samples, features); got shape {arr.shape}")
    if arr.shape[0] == 0 and not allow_empty:
        raise LiftnnError(f"{name} is empty (0 samples)")
    if arr.shape[1] == 0:
        raise LiftnnError(f"{name} has 0 features (shape {arr.shape})")
    bad = ~np.isfinite(arr)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        kind = "NaN" if np.isnan(arr[i, j]) else "Inf"
        raise LiftnnError(
            f"{name} contains {int(bad.sum())} non-finite value(s); first is {kind} at row {i}, "
            f"column {j}"
        )
    return arr


def check_data(X: Any, Y: Any, d_in: int, d_out: int, names: tuple[str, str] = ("X", "Y")):
    """X: (m, d_in) and, unless Y is None, Y: (m, d_out), both finite (every model's check_data).

    Returns X, or (X, Y), as float64 arrays.
    """
    xn, yn = names
    X = as_2d_finite(xn, X)
    if X.shape[1] != d_in:
        raise LiftnnError(f"{xn} has {X.shape[1]} features but the network takes {d_in}")
    if Y is None:
        return X
    Y = as_2d_finite(yn, Y)
    if Y.shape[0] != X.shape[0]:
        raise LiftnnError(f"{xn} has {X.shape[0]} samples but {yn} has {Y.shape[0]}")
    if Y.shape[1] != d_out:
        raise LiftnnError(f"{yn} has {Y.shape[1]} columns but the network outputs {d_out}")
    return X, Y


def check_choice(kind: str, value: str, choices: Any) -> str:
    """Raise if `value` is not one of `choices`, listing the valid names."""
    if value not in choices:
        raise LiftnnError(f"unknown {kind} {value!r}; choose one of: {', '.join(sorted(choices))}")
    return value


def canonical(kind: str, value: Any, choices: Any, aliases: dict | None = None) -> str:
    """The canonical name of `value` among `choices`, or of an alias (alias -> canonical name),
    compared without regard to case ("LM" -> "lm", "TanSig" -> "tanh").  This is the one rule for
    method, activation and loss names; an unknown name raises LiftnnError listing the valid ones
    (and the aliases)."""
    aliases = aliases or {}
    key = str(value).strip().lower()
    by_lower = {str(c).lower(): c for c in choices}
    if key in by_lower:
        return by_lower[key]
    if key in {a.lower() for a in aliases}:
        return next(c for a, c in aliases.items() if a.lower() == key)
    also = (f" (aliases: {', '.join(f'{a} = {c}' for a, c in sorted(aliases.items()))})"
            if aliases else "")
    raise LiftnnError(f"unknown {kind} {value!r}; choose one of: {', '.join(sorted(choices))}"
                      f"{also}; names are not case-sensitive")


def check_input_shape(shape: tuple, d_in: int, name: str = "X") -> None:
    """Raise unless `shape` is (samples, d_in): what a network's apply is given (static shapes
    only, so it also runs under jit)."""
    shape = tuple(int(s) for s in shape)
    if len(shape) == 2 and shape[1] == d_in:
        return
    if len(shape) == 1:
        hint = (f"; one sample is X.reshape(1, -1), {shape[0]} samples of one feature "
                f"X.reshape(-1, 1)")
    elif len(shape) == 2:
        hint = f" ({shape[1]} feature(s) per sample)"
    else:
        hint = ""
    raise LiftnnError(f"{name} must have shape (samples, {d_in}): the network takes {d_in} input "
                      f"feature(s); got shape {shape}{hint}")


def check_samples(name: str, m: int, minimum: int = 2) -> None:
    """Raise unless there are at least `minimum` samples (a fit to one sample is exact and
    says nothing)."""
    if m < minimum:
        raise LiftnnError(f"{name} have {m} sample(s) (n_samples = {m}); training needs at "
                          f"least {minimum}")


def check_scale(name: str, A: np.ndarray, targets: bool = False) -> None:
    """Warn (LiftnnWarning) when A (m, k) is far from unit scale: the largest column |mean| or
    std outside SCALE_RANGE.  Targets with |values| above OVERFLOW_LIMIT raise LiftnnError:
    their squared errors overflow float64, so no MSE could be reported."""
    A = np.asarray(A, dtype=np.float64)
    if A.size == 0:
        return
    top = float(np.max(np.abs(A)))
    if targets and top > OVERFLOW_LIMIT:
        raise LiftnnError(f"{name} has values up to {top:.3g}: their squared errors overflow "
                          f"float64 (the MSE would be inf); standardise {name} (subtract each "
                          f"column's mean, divide by its std) before training")
    if top == 0.0:
        return
    B = A / top  # mean and std of A / max|A|: no overflow for huge data
    scale = top * float(np.max(np.maximum(np.abs(B.mean(axis=0)), B.std(axis=0))))
    lo, hi = SCALE_RANGE
    if not lo <= scale <= hi:
        warnings.warn(f"{name} is far from unit scale (largest column |mean| or std = "
                      f"{scale:.3g}, outside [{lo:g}, {hi:g}]): the initial weights and the "
                      f"solvers' tolerances assume O(1) data; standardise {name} (subtract each "
                      f"column's mean, divide by its std)", LiftnnWarning, stacklevel=3)


def class_targets(name: str, Y: np.ndarray, k: int) -> np.ndarray:
    """Class indices Y (m, 1) or (m,) with values 0..k-1 -> one-hot rows (m, k) (the
    cross-entropy's targets for a network with k outputs); raise naming a value that is not a
    class index."""
    y = np.asarray(Y, dtype=np.float64).reshape(-1)
    bad = (y != np.round(y)) | (y < 0) | (y >= k)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise LiftnnError(f"{name} holds class indices for the cross-entropy of a network with "
                          f"{k} outputs: values must be integers 0..{k - 1}; row {i} is {float(y[i])!r}")
    return np.eye(k)[y.astype(np.int64)]


def check_positive(name: str, value: float, strict: bool = True) -> float:
    """Raise unless value is a finite number > 0 (or >= 0 with strict=False)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise LiftnnError(f"{name} must be a number; got {value!r}") from None
    if not np.isfinite(v) or (v <= 0 if strict else v < 0):
        raise LiftnnError(f"{name} must be {'> 0' if strict else '>= 0'}; got {value!r}")
    return v


# --- option dicts, checked in place ---------------------------------------------------------


def merge_options(method: str, options: dict, defaults: dict) -> dict:
    """defaults + options; an unknown option name raises LiftnnError listing the valid ones."""
    unknown = sorted(set(options) - set(defaults))
    if unknown:
        raise LiftnnError(f"unknown option(s) {', '.join(map(repr, unknown))} for method "
                          f"{method!r}; valid options: {', '.join(sorted(defaults))}")
    return {**defaults, **options}


def number(o: dict, name: str, lo: float | None = None, hi: float | None = None,
           lo_open: bool = False, hi_open: bool = False) -> float:
    """Validate o[name] as a finite number in the given range (in place); raise naming it.

    The message reads e.g. "lr must be > 0; got 0.0" or "beta must be >= 0 and < 1; got 1.0".
    """
    v = o[name]
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
        raise LiftnnError(f"{name} must be a number; got {v!r}")
    v = float(v)
    bad = not math.isfinite(v)
    if lo is not None:
        bad |= v <= lo if lo_open else v < lo
    if hi is not None:
        bad |= v >= hi if hi_open else v > hi
    if bad:
        parts = []
        if lo is not None:
            parts.append(f"{'>' if lo_open else '>='} {lo:g}")
        if hi is not None:
            parts.append(f"{'<' if hi_open else '<='} {hi:g}")
        rng = " and ".join(parts) if parts else "finite"
        raise LiftnnError(f"{name} must be {rng}; got {o[name]!r}")
    o[name] = v
    return v


def integer(o: dict, name: str, lo: int, allow_none: bool = False) -> int | None:
    """Validate o[name] as an integer >= lo (or None when allowed), in place."""
    v = o[name]
    if v is None and allow_none:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
        raise LiftnnError(f"{name} must be an integer >= {lo}{' or None' if allow_none else ''}; "
                          f"got {v!r}")
    o[name] = int(v)
    return int(v)


def choice(o: dict, name: str, choices: tuple) -> str:
    """Validate o[name] as one of `choices`."""
    if o[name] not in choices:
        raise LiftnnError(f"{name} must be one of {', '.join(map(repr, choices))}; got {o[name]!r}")
    return o[name]


def callable_or_none(o: dict, name: str):
    """Validate o[name] as a callable or None."""
    if o[name] is not None and not callable(o[name]):
        raise LiftnnError(f"{name} must be callable or None; got {o[name]!r}")
    return o[name]


def check_lifted_problem(problem, method: str) -> None:
    """What a lifted method (alm, lifted-gn) needs of a TrainingProblem: a least-squares loss or
    the softmax cross-entropy (`check_class_targets`), and an MLP with at least one hidden layer
    (whose states become the lifted variables)."""
    if problem.loss not in ("mse", "sse", "cross_entropy"):
        raise LiftnnError(f"{method} needs a least-squares loss (mse or sse) or cross_entropy; "
                          f"got {problem.loss!r}")
    if not hasattr(problem.model, "activations") or not hasattr(problem.model, "sizes"):
        raise LiftnnError(f"{method} trains MLPs (ln.MLP)")
    if len(problem.model.sizes) < 3:
        raise LiftnnError(f"{method} needs at least one hidden layer (there are no states to lift)")
    if problem.loss == "cross_entropy":
        check_class_targets(problem, method)


def check_class_targets(problem, method: str) -> None:
    """The lifted cross-entropy (liftnn.lifted.output) needs logits: an identity output
    activation, O >= 2 outputs, and one-hot targets Y (m, O) (training and validation) with at
    least two classes present in the training targets."""
    act = problem.model.activations[-1]
    if act != "identity":
        raise LiftnnError(f"{method} with cross_entropy needs the logits as the network's output "
                          f"(output activation 'identity'; the softmax is part of the loss); got "
                          f"{act!r}")
    O = int(problem.model.sizes[-1])
    if O < 2:
        raise LiftnnError(f"{method} with cross_entropy needs one output per class (at least "
                          f"2); the network has {O} output")
    for name, Y in (("Y", problem.Y), ("Y_val", problem.Y_val)):
        if Y is None:
            continue
        Y = np.asarray(Y)
        if Y.ndim != 2 or Y.shape[1] != O or not np.all((Y == 0) | (Y == 1)) or not np.all(
                Y.sum(axis=1) == 1):
            raise LiftnnError(f"{method} with cross_entropy needs one-hot targets {name} (m, {O}) "
                              f"(one 1 per row, zeros elsewhere); got values that are not "
                              f"(convert class indices with jax.nn.one_hot or "
                              f"datasets.load(..., labels='onehot'); real-valued targets "
                              f"take a least-squares loss, mse or sse)")
    if int(np.count_nonzero(np.asarray(problem.Y).sum(axis=0))) < 2:
        raise LiftnnError(f"{method} with cross_entropy needs at least two classes in the "
                          f"training targets; Y holds a single class")
