"""Moeller2Net: seed 001's network with two hidden layers and computed bias components.

Seed 001, task 3 ("Neural network with two hidden layers"): input y in R^6, W1 in R^{5x6},
W2 in R^{4x5}, W3 in R^{3x4}, 62 parameters and no free biases:

    h*  = W1 y                               (no activation)
    h0  = sigmoid(sum_{j=1..6} W1_{1j} y_j)  = sigmoid(h*_1)
    H*  = tanh(W2 h* + h0 1)                 (1 in R^4)
    H0  = tanh(sum_{j=1..5} W2_{1j} h_j + h0) = H*_1
    z   = tanh(W3 H* + H0 1)                 (1 in R^3)

See the class docstring for how the report's ambiguous formulas are read.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from liftnn._validate import check_data
from liftnn.errors import LiftnnError
from liftnn.models.initializers import get_initializer, initializer_name


class Moeller2Net:
    """Seed 001's network with two hidden layers and *computed* bias components (62 weights).

    Shapes: y (input) in R^6, W1: (5, 6), W2: (4, 5), W3: (3, 4); output z in (-1, 1)^3.
    Params: [(W1, None), (W2, None), (W3, None)] (the layout of a bias-free MLP).

        h*  = W1 y                          h0 = sigmoid(W1[0] . y)      (= sigmoid(h*_1))
        H*  = tanh(W2 h* + h0 1_4)          H0 = tanh(W2[0] . h* + h0)   (= H*_1)
        z   = tanh(W3 H* + H0 1_3)

    Reading of the report (seed 001, "Neural network with two hidden layers"):

    - "h0 = sigma(sum_{j=1}^6 W_1j y_j)": W_1j is read as the entries of the first row of W1
      (the only 6-vector of weights the network has), so h0 = sigmoid(h*_1).
    - "H0 = tanh(sum_{j=1}^5 W_2j h_j + h0)": W_2j is the first row of W2 and h_j (j = 1..5) the
      components of h* (the report writes h = (h0, h*^T)^T and sums from 1), so
      H0 = tanh(W2[0] . h* + h0), which is exactly the first component of H*.
    - Hence the two "bias" components are not independent neurons: they reuse the first rows of
      W1 and W2.  Any reading with separate bias weights would add parameters, contradicting the
      report's count (6 x 5) + (5 x 4) + (4 x 3) = 62 "since the biases ... are not independent
      variables".
    - The layer maps use h* and H* (W2 is 4x5 and multiplies the 5-vector h*; W3 is 3x4 and
      multiplies the 4-vector H*); h0 and H0 enter only as the added constant vectors h0 1, H0 1.
    - The report's objective f = (1/m) sum_i ||z_i - z(y_i)||^2 equals d_out * "mse"
      (= 2/m * "sse"); liftnn's losses are used unchanged.
    """

    sizes = (6, 5, 4, 3)
    d_in = 6
    d_out = 3
    n_params = 62

    def __init__(self, init="glorot_uniform"):
        get_initializer(init)
        object.__setattr__(self, "init_spec", init)

    def __setattr__(self, name, value):
        raise AttributeError("Moeller2Net is immutable; build a new one")

    def __eq__(self, other):
        return isinstance(other, Moeller2Net) and self.init_name == other.init_name

    def __hash__(self):
        return hash(("Moeller2Net", self.init_name))

    def __repr__(self):
        return f"Moeller2Net(init={self.init_name!r})"

    @property
    def init_name(self) -> str:
        return initializer_name(self.init_spec)

    @property
    def shapes(self) -> tuple[tuple[int, int], ...]:
        """Weight shapes ((5, 6), (4, 5), (3, 4))."""
        return tuple((o, i) for i, o in zip(self.sizes[:-1], self.sizes[1:]))

    def init(self, seed: int = 0) -> list:
        """[(W1, None), (W2, None), (W3, None)] drawn with the initialiser (its biases dropped)."""
        return [(W, None) for W in _moeller_init_fn(self)(jax.random.PRNGKey(int(seed)))]

    def _weights(self, params):
        try:
            Ws = [jnp.asarray(p[0], jnp.float64) for p in params]
        except (TypeError, IndexError):
            raise LiftnnError("Moeller2Net params must be [(W1, None), (W2, None), (W3, None)]") from None
        if len(Ws) != 3 or any(W.shape != s for W, s in zip(Ws, self.shapes)):
            raise LiftnnError(f"Moeller2Net params must have weight shapes {self.shapes}; got "
                              f"{tuple(W.shape for W in Ws)}")
        return Ws

    def flatten(self, params) -> jax.Array:
        """Params -> theta: W1, W2, W3 row-major, concatenated (62,)."""
        return jnp.concatenate([W.reshape(-1) for W in self._weights(params)])

    def unflatten(self, theta) -> list:
        theta = jnp.asarray(theta, jnp.float64).reshape(-1)
        if theta.shape != (62,):
            raise LiftnnError(f"Moeller2Net has 62 parameters; got a vector of {theta.shape[0]}")
        out, k = [], 0
        for o, i in self.shapes:
            out.append((theta[k:k + o * i].reshape(o, i), None))
            k += o * i
        return out

    def forward(self, params, X) -> dict:
        """All intermediate quantities, each (m, .): h_star, h0, A2 (= W2 h* + h0 1), H_star,
        H0, A3 (= W3 H* + H0 1), z."""
        return _moeller_forward(self._weights(params), jnp.asarray(X, jnp.float64))

    def apply(self, params, X, **_ignored) -> jax.Array:
        """Output z(y), shape (m, 3)."""
        return self.forward(params, X)["z"]

    def __call__(self, params, X, **kw):
        return self.apply(params, X, **kw)

    def check_data(self, X, Y=None):
        """Validate X: (m, 6) (and Y: (m, 3))."""
        return check_data(X, Y, self.d_in, self.d_out)

    def describe(self) -> dict:
        return {"type": "Moeller2Net", "init": self.init_name}


@functools.lru_cache(maxsize=16)
def _moeller_init_fn(model: Moeller2Net):
    """One jitted function drawing W1, W2, W3 from a key (compiled once per initialiser)."""
    initf = get_initializer(model.init_spec)

    def draw(key):
        keys = jax.random.split(key, 3)
        return [jnp.asarray(initf(k, i, o)[0], jnp.float64) for k, (o, i) in zip(keys, model.shapes)]

    return jax.jit(draw)


@jax.jit
def _moeller_forward(Ws, Y):
    W1, W2, W3 = Ws
    h_star = Y @ W1.T                       # (m, 5), no activation
    h0 = jax.nn.sigmoid(h_star[:, 0])       # (m,)   sigmoid(W1[0] . y)
    A2 = h_star @ W2.T + h0[:, None]        # (m, 4)
    H_star = jnp.tanh(A2)
    H0 = jnp.tanh(A2[:, 0])                 # (m,)   tanh(W2[0] . h* + h0)
    A3 = H_star @ W3.T + H0[:, None]        # (m, 3)
    return {"h_star": h_star, "h0": h0, "A2": A2, "H_star": H_star, "H0": H0, "A3": A3,
            "z": jnp.tanh(A3)}
