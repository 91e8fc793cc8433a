"""The analytic sparse Jacobian of the lifted residual (seed 000 Table 3.1) equals jax.jacfwd to
1e-10, has the thesis's dimensions (D W N + O N) x (D W N + O + (D+I+O) W + (D-1) W^2), and its
banded ordering (fig. 3.3) is a permutation of the natural one with the stated bandwidth."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import liftnn as ln
from liftnn.lifted.thesis import jacobian as jm
from liftnn.lifted.thesis.residual import ThesisLayout, ThesisResidual, feasible_start

# (arch, activation, output activation, N, bias, penalty c)
CASES = [
    ("2-3-3-2", "tanh", "identity", 7, True, 1.0),       # the thesis's figs. 3.2 / 3.3
    ("1-4-4-4-1", "sigmoid", "identity", 5, True, 2.5),
    ("2-3-3-2", "softplus", "tanh", 6, True, 0.3),
    ("3-5-4-2", "relu", "identity", 6, True, 1.0),      # random point: away from the kinks
    ("3-5-2", "tanh", "sigmoid", 4, False, 1.0),        # no biases
]


def _setup(arch, act, out_act, N, bias, c, seed=0):
    model = ln.MLP(arch, activation=act, output_activation=out_act, bias=bias)
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N, model.d_in))
    Y = rng.standard_normal((N, model.d_out))
    lp = ThesisResidual(model, X, Y, penalty=c)
    u = rng.standard_normal(lp.layout.n_vars)
    return model, lp, u


@pytest.mark.parametrize("arch,act,out_act,N,bias,c", CASES)
def test_analytic_equals_autodiff_and_banded_is_a_permutation(arch, act, out_act, N, bias, c):
    _, lp, u = _setup(arch, act, out_act, N, bias, c)
    if act == "relu":  # the generalised derivative equals autodiff only away from a = 0
        assert min(np.abs(np.asarray(a)).min() for a in jax.jit(lp.pre_activations)(u)) > 1e-6
    nat = jm.jacobian(lp, u, "natural")
    J_ad = jm.autodiff_jacobian(lp, u)  # jax.jit(jax.jacfwd(lp.residual)), dense
    assert nat.J.shape == J_ad.shape == (lp.layout.n_rows, lp.layout.n_vars)
    assert np.max(np.abs(nat.J.toarray() - J_ad)) <= 1e-10
    # every autodiff nonzero lies in the analytic (structural) pattern
    stored = np.zeros(J_ad.shape, bool)
    C = nat.J.tocoo()
    stored[C.row, C.col] = True
    assert not np.any((J_ad != 0) & ~stored)
    assert nat.J.nnz == jm.structural_nnz(lp.layout)
    assert np.array_equal(nat.row_perm, np.arange(lp.layout.n_rows))

    ban = jm.jacobian(lp, u, "banded")
    assert np.array_equal(np.sort(ban.row_perm), np.arange(lp.layout.n_rows))
    assert np.array_equal(np.sort(ban.col_perm), np.arange(lp.layout.n_vars))
    np.testing.assert_array_equal(ban.J.toarray(), nat.J.toarray()[ban.row_perm][:, ban.col_perm])
    assert ban.J.nnz == nat.J.nnz
    # the claimed bandwidth, and narrower than the natural ordering
    lo, hi = jm.bandwidth(ban.J)
    assert (lo, hi) == jm.banded_bandwidth(lp.layout)
    nlo, nhi = jm.bandwidth(nat.J)
    assert lo + hi < nlo + nhi


@pytest.mark.parametrize("arch,act,out_act,N,bias,c", CASES[:3])
def test_banded_is_block_lower_bidiagonal(arch, act, out_act, N, bias, c):
    """Row block l (h_{l+1}, or F last) touches only column groups G_{l-1} (its z_l) and G_l."""
    _, lp, u = _setup(arch, act, out_act, N, bias, c)
    ban = jm.jacobian(lp, u, "banded")
    rows, cols = ban.row_blocks, ban.col_blocks
    per = 3 if bias else 2  # W, (b,) z per stage
    groups = [cols[per * l:per * (l + 1)] for l in range((len(cols) + 1) // per)]
    assert [r[0] for r in rows] == [f"h{j}" for j in range(1, lp.layout.depth + 1)] + ["F"]
    A = ban.J.toarray() != 0
    for l, (_, r0, r1) in enumerate(rows):
        allowed = np.zeros(A.shape[1], bool)
        g = groups[l]
        allowed[g[0][1]:g[-1][2]] = True
        if l >= 1:
            z_prev = groups[l - 1][-1]
            assert z_prev[0] == f"z{l}"
            allowed[z_prev[1]:z_prev[2]] = True
        assert not A[r0:r1, ~allowed].any()
        assert A[r0:r1, allowed].any()


@pytest.mark.parametrize("I,O,W,D,N", [(2, 2, 3, 2, 7), (1, 1, 4, 3, 5), (3, 2, 5, 1, 11)])
def test_shape_matches_the_thesis_formula(I, O, W, D, N):
    sizes = (I,) + (W,) * D + (O,)
    lay = ThesisLayout(sizes, N, True)
    assert jm.jacobian_shape(I, O, W, D, N) == (lay.n_rows, lay.n_vars)
    assert jm.jacobian_shape(2, 2, 3, 2, 7) == (56, 71)


def test_thesis_example_counts():
    """I=2, O=2, W=3, D=2, N=7 (figs. 3.2/3.3): 56 x 71 with 350 structural nonzeros."""
    lay = ThesisLayout((2, 3, 3, 2), 7, True)
    assert (lay.n_rows, lay.n_vars, jm.structural_nnz(lay)) == (56, 71, 350)
    assert lay.n_weights == 29


def test_feasible_start_has_zero_constraints_and_output_residual():
    model = ln.MLP("2-3-3-2", activation="tanh")
    rng = np.random.default_rng(3)
    X, Y = rng.standard_normal((7, 2)), rng.standard_normal((7, 2))
    params = [(jnp.asarray(rng.standard_normal((o, i))), jnp.asarray(rng.standard_normal(o)))
              for i, o in zip(model.sizes[:-1], model.sizes[1:])]
    lp = ThesisResidual(model, X, Y, penalty=4.0)
    u0 = feasible_start(model, params, X)
    np.testing.assert_allclose(u0, lp.feasible_start(params))
    r = np.asarray(jax.jit(lp.residual)(u0))
    O, N = 2, 7
    np.testing.assert_allclose(r[O * N:], 0.0, atol=1e-15)
    F = (Y - np.asarray(model.apply(params, X))) / 2.0  # 1/sqrt(c), output-neuron-wise
    np.testing.assert_allclose(r[:O * N], F.T.ravel(), rtol=1e-13, atol=1e-15)
    # pack/unpack round trip and multipliers entering as h + lam/c
    p2, Z2 = lp.unpack(u0)
    np.testing.assert_array_equal(np.asarray(lp.pack(p2, Z2)), np.asarray(u0))
    lam = rng.standard_normal(lp.layout.n_rows - O * N)
    np.testing.assert_allclose(np.asarray(jax.jit(lp.residual)(u0, lam))[O * N:], lam / 4.0,
                               atol=1e-15)


def test_bad_input_is_named():
    with pytest.raises(ln.LiftnnError, match="W must be a positive integer"):
        jm.jacobian_shape(2, 2, 0, 2, 7)
    model = ln.MLP("2-3-2", activation="tanh")
    lp = ThesisResidual(model, np.zeros((4, 2)), np.zeros((4, 2)))
    with pytest.raises(ln.LiftnnError, match="variables"):
        jm.jacobian(lp, np.zeros(5))
    with pytest.raises(ln.LiftnnError, match="ordering"):
        jm.jacobian(lp, np.zeros(lp.layout.n_vars), "diagonal")
    with pytest.raises(ln.LiftnnError, match="penalty must be > 0"):
        ThesisResidual(model, np.zeros((4, 2)), np.zeros((4, 2)), penalty=0.0)
    with pytest.raises(ln.LiftnnError, match="features"):
        ThesisResidual(model, np.zeros((4, 3)), np.zeros((4, 2)))
