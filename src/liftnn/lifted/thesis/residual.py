"""The lifted (multiple-shooting) least-squares problem of an MLP, in the thesis's terms.

The thesis (docs/lifted.md, references), ch. 1.3 / 3.1-3.2 (Table 3.1).  A network with D hidden
layers, input size I = d_0, hidden widths d_1..d_D and output size O = d_{D+1}, evaluated on N samples x^1..x^N.  Indices
follow the thesis: W_0 maps the input to the first hidden layer, W_D is the output layer, so
`params[l] = (W_l, b_l)` of the MLP is the thesis's (W_l, b_l), W_l of shape (d_{l+1}, d_l).

Variables u (one vector): the weights and biases of every layer and the states of every sample,

    z_j^n = state of hidden layer j (j = 1..D) for sample n,     z_0^n = x^n (data, not a variable).

Residuals (thesis eq. 3.1 with its sign convention):

    F   = (y^n - sigma_O(W_D z_D^n + b_D)) / sqrt(rho)              (O*N rows, the output residual)
    h_j = z_j^n - sigma_j(W_{j-1} z_{j-1}^n + b_{j-1})  (+ lam_j / rho)   (d_j*N rows, j = 1..D)

so that with multipliers lam and penalty rho (the thesis calls it c; here `penalty`, so as not to
clash with the residual scale c of liftnn.lifted.gauss_newton) the augmented Lagrangian is
L_rho(u, lam) = rho/2 ||[F; h + lam/rho]||^2 - ||lam||^2/(2 rho)
              = 1/2 ||F_unscaled||^2 + <lam, h> + rho/2 ||h||^2.
With rho = 1 and lam = 0 the residual is plain [y - f; h].  (The sign of F is the thesis's; it does
not change ||F||^2, only the sign of F's Jacobian rows.)

Natural ordering (Table 3.1, fig. 3.2):

- columns: for each layer l = 0..D in turn, the neuron-wise rows of W_l (W_{l,1}, ..., W_{l,d_{l+1}},
  d_l columns each, i.e. W_l.ravel() row-major) then b_l (d_{l+1} columns); after all weights, the
  states z_1, ..., z_D, each neuron-wise: z_{j,k} = (z_{j,k}^1 .. z_{j,k}^N), N columns per neuron
  (i.e. Z_j.T.ravel() for Z_j of shape (N, d_j));
- rows: F first (output neuron-wise, N rows each), then h_1, ..., h_D (neuron-wise, N rows each).

Sizes for equal hidden widths W (thesis 3.2): (D*W*N + O*N) rows and
(D*W*N + O + (D+I+O)*W + (D-1)*W^2) columns (liftnn.lifted.thesis.jacobian.jacobian_shape).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import jax
import jax.numpy as jnp
import numpy as np

from liftnn._validate import check_positive
from liftnn.errors import LiftnnError
from liftnn.models.activations import get_activation


@dataclass(frozen=True)
class ThesisLayout:
    """Where every block of u and of the residual lives, in the natural ordering (Table 3.1).

    Attributes:
        sizes: (d_0, ..., d_{D+1}) = (I, d_1, ..., d_D, O).
        n: number of samples N.
        bias: whether the layers have biases (the thesis's formula assumes they do).
    """

    sizes: tuple
    n: int
    bias: bool = True

    def __post_init__(self):
        sizes = tuple(int(s) for s in self.sizes)
        if len(sizes) < 2 or any(s <= 0 for s in sizes):
            raise LiftnnError(f"layer sizes must be >= 2 positive integers; got {self.sizes}")
        if int(self.n) < 1:
            raise LiftnnError(f"the lifted problem needs at least one sample; got N = {self.n}")
        object.__setattr__(self, "sizes", sizes)
        object.__setattr__(self, "n", int(self.n))
        object.__setattr__(self, "bias", bool(self.bias))

    # ---- counts ---------------------------------------------------------------------------
    @property
    def n_layers(self) -> int:
        """Number of weight layers L = D + 1."""
        return len(self.sizes) - 1

    @property
    def depth(self) -> int:
        """Number of hidden layers D."""
        return len(self.sizes) - 2

    def layer_params(self, l: int) -> int:
        """Weights + biases of layer l: d_{l+1} (d_l + bias)."""
        return self.sizes[l + 1] * (self.sizes[l] + int(self.bias))

    @property
    def n_weights(self) -> int:
        """P: all weights and biases."""
        return sum(self.layer_params(l) for l in range(self.n_layers))

    @property
    def n_states(self) -> int:
        """N * (d_1 + ... + d_D)."""
        return self.n * sum(self.sizes[1:-1])

    @property
    def n_vars(self) -> int:
        """Length of u (columns of the Jacobian)."""
        return self.n_weights + self.n_states

    @property
    def n_rows(self) -> int:
        """Length of the residual: N * (d_1 + ... + d_D + O)."""
        return self.n * sum(self.sizes[1:])

    # ---- natural-ordering offsets --------------------------------------------------------
    def w_offset(self, l: int) -> int:
        """First column of W_l (layer l = 0..D)."""
        return sum(self.layer_params(i) for i in range(l))

    def b_offset(self, l: int) -> int:
        """First column of b_l (only with bias)."""
        if not self.bias:
            raise LiftnnError("this network has no biases")
        return self.w_offset(l) + self.sizes[l + 1] * self.sizes[l]

    def z_offset(self, j: int) -> int:
        """First column of the states z_j (j = 1..D)."""
        if not 1 <= j <= self.depth:
            raise LiftnnError(f"state index j must be in 1..{self.depth}; got {j}")
        return self.n_weights + self.n * sum(self.sizes[1:j])

    def f_row_offset(self) -> int:
        """First row of F (always 0 in the natural ordering)."""
        return 0

    def h_row_offset(self, j: int) -> int:
        """First row of h_j (j = 1..D)."""
        if not 1 <= j <= self.depth:
            raise LiftnnError(f"constraint index j must be in 1..{self.depth}; got {j}")
        return self.n * self.sizes[-1] + self.n * sum(self.sizes[1:j])

    def row_offset(self, l: int) -> int:
        """First row of the residual block produced by layer l: h_{l+1} for l < D, F for l = D."""
        return self.f_row_offset() if l == self.n_layers - 1 else self.h_row_offset(l + 1)

    # ---- pack / unpack --------------------------------------------------------------------
    def pack(self, params, Z) -> jax.Array:
        """(params, states) -> u in the natural ordering.

        params: [(W_l (d_{l+1}, d_l), b_l (d_{l+1},) or None)] for l = 0..D;
        Z: [Z_1, ..., Z_D], Z_j of shape (N, d_j) (samples as rows).  Returns u: (n_vars,).
        """
        if len(params) != self.n_layers:
            raise LiftnnError(f"expected {self.n_layers} layers of params; got {len(params)}")
        if len(Z) != self.depth:
            raise LiftnnError(f"expected {self.depth} state arrays Z_1..Z_D; got {len(Z)}")
        parts = []
        for l, (W, b) in enumerate(params):
            W = jnp.asarray(W, jnp.float64)
            if W.shape != (self.sizes[l + 1], self.sizes[l]):
                raise LiftnnError(f"W_{l} has shape {W.shape}; expected "
                                  f"{(self.sizes[l + 1], self.sizes[l])}")
            parts.append(W.reshape(-1))
            if self.bias:
                if b is None or jnp.shape(b) != (self.sizes[l + 1],):
                    raise LiftnnError(f"b_{l} must have shape ({self.sizes[l + 1]},); got "
                                      f"{None if b is None else jnp.shape(b)}")
                parts.append(jnp.asarray(b, jnp.float64))
        for j, Zj in enumerate(Z, start=1):
            Zj = jnp.asarray(Zj, jnp.float64)
            if Zj.shape != (self.n, self.sizes[j]):
                raise LiftnnError(f"Z_{j} has shape {Zj.shape}; expected {(self.n, self.sizes[j])}")
            parts.append(Zj.T.reshape(-1))
        return jnp.concatenate(parts) if parts else jnp.zeros(0)

    def unpack(self, u):
        """u -> (params, Z) (inverse of pack); pure slicing, so it can be differentiated."""
        if jnp.shape(u) != (self.n_vars,):
            raise LiftnnError(f"u has shape {jnp.shape(u)}; the lifted problem has {self.n_vars} "
                              "variables")
        params, p = [], 0
        for l in range(self.n_layers):
            o, i = self.sizes[l + 1], self.sizes[l]
            W = u[p:p + o * i].reshape(o, i)
            p += o * i
            b = None
            if self.bias:
                b = u[p:p + o]
                p += o
            params.append((W, b))
        Z = []
        for j in range(1, self.depth + 1):
            d = self.sizes[j]
            Z.append(u[p:p + d * self.n].reshape(d, self.n).T)
            p += d * self.n
        return params, Z


def simulate_states(model, params, X) -> list:
    """States of a forward pass: [Z_1, ..., Z_D], Z_j = sigma_j(Z_{j-1} W_{j-1}^T + b_{j-1}), (N, d_j).

    This is the feasible point of the lifted problem (all h_j = 0) for the weights `params`
    (Evens et al. 2021's start; the thesis ch. 1.3; docs/lifted.md).
    """
    X = model.check_data(X)
    _, outs = model.forward(params, jnp.asarray(X))
    return [jnp.asarray(z) for z in outs[1:-1]]


def feasible_start(model, params, X) -> jax.Array:
    """u_0 = pack(params, simulated states): the lifted starting point with h(u_0) = 0.

    Args:
        model: an MLP; params: its weights [(W_l, b_l)]; X: (N, d_in) training inputs.
    Returns:
        u_0 of shape (n_vars,) in the natural ordering of Table 3.1.
    """
    X = model.check_data(X)
    layout = ThesisLayout(model.sizes, X.shape[0], model.bias)
    return layout.pack(params, simulate_states(model, params, X))


@dataclass(frozen=True, eq=False)
class ThesisResidual:
    """The lifted residual of `model` on data (X, Y) in the thesis's notation and ordering
    (eq. 3.1, Table 3.1): what the analytic Jacobian and its spy plots are built from
    (liftnn.lifted.thesis.jacobian).  The trainer (method="alm") does not use it; it works on
    the per-sample form of liftnn.lifted.gauss_newton.

    X: (N, I), Y: (N, O); penalty = rho > 0 scales the output rows by 1/sqrt(rho) (the thesis's
    penalty parameter c; rho = 1 gives the unscaled problem).  The residual is

        r(u) = [F(u) ; h_1(u) + lam_1/rho ; ... ; h_D(u) + lam_D/rho]     (n_rows,)

    in the natural ordering, a jnp function usable with jax.jacfwd / jax.jvp.
    """

    model: object
    X: np.ndarray
    Y: np.ndarray
    penalty: float = 1.0

    def __post_init__(self):
        X, Y = self.model.check_data(self.X, self.Y)
        check_positive("penalty", self.penalty)
        object.__setattr__(self, "X", jnp.asarray(X))
        object.__setattr__(self, "Y", jnp.asarray(Y))
        object.__setattr__(self, "penalty", float(self.penalty))

    @cached_property
    def layout(self) -> ThesisLayout:
        return ThesisLayout(self.model.sizes, int(self.X.shape[0]), self.model.bias)

    @cached_property
    def activations(self) -> tuple:
        """Activation of each layer l = 0..D (the last one is sigma_O)."""
        return tuple(get_activation(a) for a in self.model.activations)

    def pack(self, params, Z) -> jax.Array:
        return self.layout.pack(params, Z)

    def unpack(self, u):
        return self.layout.unpack(u)

    def feasible_start(self, params) -> jax.Array:
        """u_0 with states from simulating the network with `params` (h(u_0) = 0)."""
        return self.layout.pack(params, simulate_states(self.model, params, self.X))

    def pre_activations(self, u) -> list:
        """A_l = Z_l W_l^T + b_l for l = 0..D, each (N, d_{l+1}) (Z_0 = X)."""
        params, Z = self.unpack(u)
        Zs = [self.X] + list(Z)
        return [Zs[l] @ W.T + (b if b is not None else 0.0) for l, (W, b) in enumerate(params)]

    def output_residual(self, u) -> jax.Array:
        """F = (Y - sigma_O(Z_D W_D^T + b_D)) / sqrt(rho), output-neuron-wise: (O*N,)."""
        params, Z = self.unpack(u)
        W, b = params[-1]
        Zl = Z[-1] if Z else self.X
        A = Zl @ W.T + (b if b is not None else 0.0)
        return ((self.Y - self.activations[-1].f(A)) / jnp.sqrt(self.penalty)).T.reshape(-1)

    def constraints(self, u) -> jax.Array:
        """h = [h_1; ...; h_D], h_j = Z_j - sigma_j(Z_{j-1} W_{j-1}^T + b_{j-1}), neuron-wise."""
        params, Z = self.unpack(u)
        Zs = [self.X] + list(Z)
        hs = []
        for l in range(self.layout.depth):
            W, b = params[l]
            A = Zs[l] @ W.T + (b if b is not None else 0.0)
            hs.append((Zs[l + 1] - self.activations[l].f(A)).T.reshape(-1))
        return jnp.concatenate(hs) if hs else jnp.zeros(0)

    def residual(self, u, lam=None) -> jax.Array:
        """r(u) = [F ; h + lam/rho] (n_rows,), natural row ordering (F first, then h_1..h_D).

        lam: multipliers of h, shape (n_rows - O*N,), or None for lam = 0.
        """
        h = self.constraints(u)
        if lam is not None:
            lam = jnp.asarray(lam)
            if lam.shape != h.shape:
                raise LiftnnError(f"lam has shape {lam.shape}; h has {h.shape}")
            h = h + lam / self.penalty
        return jnp.concatenate([self.output_residual(u), h])

    def simulated_loss(self, u) -> float:
        """1/2 ||y - f(x)||^2 of the network with u's weights (states re-simulated)."""
        params, _ = self.unpack(u)
        return float(0.5 * jnp.sum((self.model.apply(params, self.X) - self.Y) ** 2))
