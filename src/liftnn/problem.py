"""A training problem: a model, data and a loss; the objective every network solver minimises.

    C(theta) = loss(f_theta(X), Y) + weight_decay / 2 * ||theta||^2

For the least-squares losses ("mse", "sse") the objective is also 1/2 ||r(theta)||^2 with the
single-shooting residual r = c (f_theta(X) - Y) stacked with sqrt(weight_decay) theta, which is
what Gauss-Newton and Levenberg-Marquardt use.

The formula lives in `loss_value` / `objective_value` (pure functions of the model, the loss name,
the weights and the data); TrainingProblem's methods and the compiled first-order loop
(liftnn.solvers.first_order, which needs the data as arguments so that one compiled program serves
every data set of the same shape) both call them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import jax
import jax.numpy as jnp
import numpy as np

from liftnn import padding, xla_options
from liftnn._validate import check_positive
from liftnn.errors import LiftnnError
from liftnn.models.losses import get_loss, is_least_squares, loss_name, residual_scale


def loss_value(model, loss: str, params, X, Y, key=None):
    """loss(f_params(X), Y).  With a PRNG key the model runs in training mode (dropout masks)."""
    out = model.apply(params, X) if key is None else model.apply(params, X, key=key, train=True)
    return get_loss(loss)(out, Y)


def has_weight_decay(weight_decay) -> bool:
    """Whether the objective gets a weight-decay term: always for a traced value (one compiled
    program then serves every value > 0), for a Python number only when it is non-zero."""
    return not isinstance(weight_decay, (int, float)) or weight_decay != 0


def objective_value(model, loss: str, weight_decay: float, params, X, Y, theta=None, key=None):
    """C = loss(f_params(X), Y) + weight_decay / 2 ||theta||^2, theta = the flat params (pass it
    when it is at hand; it is only needed for weight_decay > 0)."""
    return plus_weight_decay(loss_value(model, loss, params, X, Y, key), weight_decay, params,
                             theta)


def plus_weight_decay(c, weight_decay: float, params, theta=None):
    """c + weight_decay / 2 ||theta||^2 (c itself without decay; theta: the flat params when at
    hand, else ravelled from params)."""
    if not has_weight_decay(weight_decay):
        return c
    if theta is None:
        from jax.flatten_util import ravel_pytree

        theta = ravel_pytree(params)[0]
    return c + 0.5 * weight_decay * jnp.sum(theta**2)


def to_device(a):
    """A host array (or list) on the default device without an XLA program: jnp.asarray of a
    NumPy array compiles a copy for every new shape (about 20 ms each on the CPU), device_put
    does not.  Arrays already on a device are returned as they are."""
    return a if isinstance(a, jax.Array) else jax.device_put(np.asarray(a))


def host_flat(params) -> np.ndarray:
    """ravel_pytree's flat vector (leaves in tree order, each row-major) on the host, float64,
    without the small XLA programs an eager ravel_pytree compiles per shape."""
    return np.concatenate([np.ravel(np.asarray(a, np.float64))
                           for a in jax.tree_util.tree_leaves(params)])


def layout(params):
    """(treedef, leaf shapes) of params: the structure unflat and host_unflat rebuild."""
    leaves, treedef = jax.tree_util.tree_flatten(params)
    return treedef, [tuple(np.shape(a)) for a in leaves]


def unflat(theta, treedef, shapes):
    """theta (flat: NumPy, on the device or traced) -> the pytree (treedef, leaf shapes), leaves
    sliced in tree order and reshaped row-major: ravel_pytree's unravel without the ravel (an
    eager ravel_pytree compiles a reshape per leaf shape and a concatenate, ~0.07 s cold)."""
    leaves, i = [], 0
    for shape in shapes:
        size = int(np.prod(shape))
        leaves.append(theta[i:i + size].reshape(shape))
        i += size
    return jax.tree_util.tree_unflatten(treedef, leaves)


def host_unflat(theta, treedef, shapes):
    """The inverse of host_flat for the structure (treedef, leaf shapes): params on the device
    (device_put, no copy program)."""
    return jax.tree_util.tree_map(jax.device_put, unflat(np.asarray(theta), treedef, shapes))


def loss_of(model, loss: str, params, X, Y) -> float:
    """loss_value on the host, by one jitted program per (model, loss) and shape."""
    program = _program(f"loss:{loss}", model,
                       lambda m: lambda params, X, Y: loss_value(m, loss, params, X, Y))
    X, Y = to_device(X), to_device(Y)
    return float(loss_value(model, loss, params, X, Y) if program is None else program(params, X, Y))


def _program(kind: str, model, make):
    """A jitted function of `model`, built by make(model) once per (kind, model); None for a
    model that is not hashable (the callers then run eagerly)."""
    try:
        key = (kind, model)
        hash(key)
    except TypeError:
        return None
    if key not in _PROGRAMS:
        if len(_PROGRAMS) >= 128:
            _PROGRAMS.clear()
        _PROGRAMS[key] = xla_options.jit(make(model))
    return _PROGRAMS[key]


_PROGRAMS: dict = {}


def predict(model, params, X) -> np.ndarray:
    """model.apply(params, X) on the host, by one jitted program per model (an eager forward pass
    compiles several small programs on its first call per shape): the rows go through in passes
    of liftnn.padding.predict_size rows (PREDICT_ROWS), the last one padded with zero rows whose
    outputs are dropped, so every row count (training, held-out and test rows, every fold)
    shares the program."""
    program = _program("apply", model, lambda m: lambda params, X: m.apply(params, X))
    if program is None:
        return np.asarray(model.apply(params, to_device(X)))
    X = np.asarray(X, dtype=np.float64)
    m = X.shape[0]
    rows = padding.predict_size(m)
    if rows >= m:
        return np.asarray(program(params, to_device(padding.pad_rows(X, rows))))[:m]
    parts = [np.asarray(program(params, to_device(padding.pad_rows(X[i:i + rows], rows))))
             for i in range(0, m, rows)]
    return np.concatenate(parts)[:m]


def accuracy(model, params, X, Y) -> float:
    """Fraction of samples whose largest logit is the target class (Y one-hot (m, k) or class
    indices (m, 1)), by `predict`'s jitted forward pass: the definition of ln.train's
    train_accuracy / test_accuracy and the bench's."""
    pred = np.argmax(predict(model, params, X), axis=1)
    Y = np.asarray(Y)
    label = np.argmax(Y, axis=1) if Y.ndim == 2 and Y.shape[1] > 1 else Y.reshape(-1).astype(int)
    return float(np.mean(pred == label))


class DataBound:
    """fun(x) = pure(x, *args): a function of x whose data are arguments of its compiled
    programs rather than constants in them.  liftnn.solvers.driver.scalar_functions compiles `pure` once (per
    argument shapes) for every DataBound of it, so a new data set of the same shapes (a
    cross-validation fold, the next bench cell) reuses the programs; `pure` must be hashable
    (e.g. a cached function of the model and loss)."""

    def __init__(self, pure: Callable, *args):
        self.pure, self.args = pure, args

    def __call__(self, x):
        return self.pure(x, *self.args)


@functools.lru_cache(maxsize=32)
def _unravel_of(model):
    """ravel_pytree's unravel for the model's parameters (one per model): `unflat` in the
    layout of model.init(0)."""
    return functools.partial(_unflat_in, layout(model.init(0)))


def _unflat_in(lay, theta):
    return unflat(theta, *lay)


@functools.lru_cache(maxsize=32)
def _objective_of(model, loss, decayed: bool):
    """(theta, X, Y, mu) -> C of TrainingProblem.fun with the decay mu traced (where `decayed`;
    else no decay term), one function per (model, loss, decayed)."""
    unravel = _unravel_of(model)

    def C(theta, X, Y, mu):
        return objective_value(model, loss, mu if decayed else 0.0, unravel(theta), X, Y)

    return C


@functools.lru_cache(maxsize=32)
def _padded_objective_of(model, loss, decayed: bool):
    """(theta, X, Y, w, m, mu) -> C over the real rows of padded data (liftnn.padding.masked_loss:
    row weights w, the real m traced) plus mu/2 ||theta||^2 with the decay mu traced too (where
    `decayed`; else no decay term), one function per (model, loss, decayed): a decay that
    depends on m (the classifier's prior, liftnn.sklearn) compiles nothing new per fold."""
    unravel, loss_fn = _unravel_of(model), get_loss(loss)

    def C(theta, X, Y, w, m, mu):
        params = unravel(theta)
        c = padding.masked_loss(loss_fn, loss, model.apply(params, X), Y, w, m)
        return plus_weight_decay(c, mu if decayed else 0.0, params, theta)

    return C


#: the losses whose objective data_bound_fun pads (padding.masked_loss knows their scaling)
PADDED_LOSSES = ("mse", "sse", "cross_entropy")


@dataclass(frozen=True, eq=False)
class TrainingProblem:
    """model + data + loss.  X: (m, d_in), Y: (m, d_out); optional validation data."""

    model: object
    X: np.ndarray
    Y: np.ndarray
    loss: str = "mse"
    weight_decay: float = 0.0
    X_val: np.ndarray | None = None
    Y_val: np.ndarray | None = None

    def __post_init__(self):
        X, Y = self.model.check_data(self.X, self.Y)
        object.__setattr__(self, "X", to_device(X))
        object.__setattr__(self, "Y", to_device(Y))
        if not callable(self.loss):
            object.__setattr__(self, "loss", loss_name(self.loss))
        check_positive("weight_decay", self.weight_decay, strict=False)
        if (self.X_val is None) != (self.Y_val is None):
            raise LiftnnError("give both X_val and Y_val, or neither")
        if self.X_val is not None:
            Xv, Yv = self.model.check_data(self.X_val, self.Y_val)
            object.__setattr__(self, "X_val", to_device(Xv))
            object.__setattr__(self, "Y_val", to_device(Yv))

    @property
    def m(self) -> int:
        return int(self.X.shape[0])

    @cached_property
    def _unravel(self):
        return functools.partial(_unflat_in, self._layout)

    def flatten(self, params) -> jax.Array:
        from jax.flatten_util import ravel_pytree

        return ravel_pytree(params)[0]

    def unflatten(self, theta):
        return self._unravel(theta)

    @cached_property
    def _layout(self):
        return layout(self.model.init(0))

    def host_params(self, theta):
        """unflatten for a concrete theta (a solver's result): host_unflat, without the eager
        jnp.split program unflatten compiles per shape; traced theta goes to unflatten."""
        if isinstance(theta, jax.core.Tracer):
            return self.unflatten(theta)
        return host_unflat(np.asarray(theta, np.float64), *self._layout)

    # --- objective, in params and in the flat vector theta ------------------------------------
    def data_loss(self, params, X=None, Y=None):
        """loss(f_params(X), Y) on the training data (or the X, Y given)."""
        X = self.X if X is None else X
        Y = self.Y if Y is None else Y
        return loss_value(self.model, self.loss, params, X, Y)

    def objective(self, params, X=None, Y=None):
        """C(params) = loss + weight_decay/2 ||theta||^2."""
        X = self.X if X is None else X
        Y = self.Y if Y is None else Y
        return objective_value(self.model, self.loss, self.weight_decay, params, X, Y)

    def fun(self, theta):
        """C as a function of the flat parameter vector."""
        return self.objective(self.unflatten(theta))

    def data_bound_fun(self):
        """`fun` as a DataBound: C(theta, X, Y, mu) of one function per
        (model, loss, whether there is decay) with the training data and the decay as arguments, so the classical
        solvers compile it once for every problem of those and the same shapes; `fun` itself
        when the loss is a callable (not hashable into one program).  With liftnn.padding on and
        at least padding.MIN_PAD samples, the data are padded to padding.size_for(m) and the
        objective is C(theta, X, Y, w, m, mu) over the real rows (`_padded_objective_of`), so nearby
        sample counts (cross-validation folds) share the programs too."""
        m = self.m
        size = padding.size_for(m)
        pad = (padding.enabled() and size >= padding.MIN_PAD and isinstance(self.loss, str)
               and self.loss in PADDED_LOSSES)
        try:
            pure = (_padded_objective_of if pad else _objective_of)(
                self.model, self.loss, bool(self.weight_decay))
        except TypeError:  # an unhashable model or loss
            return self.fun
        if not pad:
            return DataBound(pure, self.X, self.Y, np.float64(self.weight_decay))
        return DataBound(pure, to_device(padding.pad_rows(self.X, size)),
                         to_device(padding.pad_rows(self.Y, size)),
                         to_device(padding.row_weights(m, size)), np.float64(m),
                         np.float64(self.weight_decay))

    def residual(self, theta, X=None, Y=None):
        """Single-shooting residual r(theta) with C = 1/2 ||r||^2 (least-squares losses only);
        on (X, Y) when given (e.g. the sample-sharded data of liftnn.sharding)."""
        if not is_least_squares(self.loss):
            raise LiftnnError(f"loss {self.loss!r} is not a least-squares loss; gn/lm need mse or sse")
        X = self.X if X is None else X
        Y = self.Y if Y is None else Y
        params = self.unflatten(theta)
        c = residual_scale(self.loss, int(np.prod(Y.shape)))
        r = c * (self.model.apply(params, X) - Y).reshape(-1)
        if self.weight_decay:
            r = jnp.concatenate([r, jnp.sqrt(self.weight_decay) * theta])
        return r

    def mse(self, params, X=None, Y=None) -> float:
        """Plain mean squared error of the network on (X, Y) (what reports call train/test MSE)."""
        X = self.X if X is None else X
        Y = self.Y if Y is None else Y
        return float(np.mean((predict(self.model, params, X) - np.asarray(Y)) ** 2))

    def val_loss(self, params):
        if self.X_val is None:
            return None
        return self.data_loss(params, self.X_val, self.Y_val)
