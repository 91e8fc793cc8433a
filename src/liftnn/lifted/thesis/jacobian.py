"""The analytic block Jacobian of the lifted residual (the thesis sec. 3.2-3.4, Table 3.1; docs/lifted.md).

Assembled directly from its blocks as a scipy.sparse matrix (never from autodiff; autodiff only
checks it, the thesis sec. 3.3).  For layer l = 0..D with input states Z_l (Z_0 = X), pre-activation
a_k^n = W_{l,k} z_l^n + b_{l,k} and sign/scale s = -1 for the h_{l+1} rows, s = -1/sqrt(rho) for the
F rows, the row (neuron k, sample n) of the block produced by layer l has

    d/dW_{l,k}        = s * sigma_l'(a_k^n) * (z_l^n)^T           (d_l entries:  "-x sigma'(W x + b)")
    d/db_{l,k}        = s * sigma_l'(a_k^n)                        (1 entry:      "-sigma'(W x + b)")
    d/dz_{l+1,k}^n    = 1                       (l < D only: the identity block of z_{l+1} in h_{l+1})
    d/dz_{l,i}^n      = s * W_l[k, i] * sigma_l'(a_k^n)   (l >= 1:  "-W sigma'" diagonal N x N blocks)

Two orderings (both returned with their permutations):

- "natural" (fig. 3.2): columns [W_0, b_0, W_1, b_1, ..., W_D, b_D, z_1, ..., z_D], rows
  [F, h_1, ..., h_D], every block neuron-wise (see liftnn.lifted.thesis.residual).
- "banded" (fig. 3.3, "the rows corresponding to the loss function put at the bottom"): stage-wise,
  rows [h_1, h_2, ..., h_D, F] and columns grouped per stage l = 0..D as
  G_l = [W_l, b_l, z_{l+1}] (G_D = [W_D, b_D], no states), i.e. [W_0, b_0, z_1, W_1, b_1, z_2, ...,
  z_D, W_D, b_D]; inside each block the natural (neuron-wise) order is kept.  Row block l
  (h_{l+1}, or F for l = D) touches only column groups G_{l-1} (its z_l tail) and G_l, so the
  matrix is block lower-bidiagonal (block bandwidth (1, 0)): the "diagonal structure" of fig. 3.3,
  each layer coupled only to its neighbours.  Permutations: J_banded = J_natural[rows][:, cols].
  Scalar bandwidths (every nonzero (i, j) has -lower <= j - i <= upper) are given exactly by
  `banded_bandwidth`; for N >= max d_l, upper = P - O (P = weights + biases) and
  lower = max_l N (d_l + d_{l+1} - 1) - Q_l (Q_l = weights of layers before l): O(N W),
  independent of D, while the natural ordering's upper bandwidth is ~ the number of columns.

nnz counts the structural nonzeros (an entry with sigma' = 0, e.g. an inactive ReLU, is stored as
an explicit zero), so the pattern is that of the thesis's figures for every activation.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp

from liftnn._validate import check_choice
from liftnn.errors import LiftnnError
from liftnn.lifted.thesis.residual import ThesisLayout, ThesisResidual

ORDERINGS = ("natural", "banded")


class BlockJacobian(NamedTuple):
    """J (rows, cols) CSR in `ordering`; J == J_natural[row_perm][:, col_perm].

    row_blocks / col_blocks: [(label, start, stop)] of the variable / residual groups in this
    ordering (for spy-plot annotations).
    """

    J: sp.csr_matrix
    row_perm: np.ndarray
    col_perm: np.ndarray
    ordering: str
    row_blocks: list
    col_blocks: list


def jacobian_shape(I: int, O: int, W: int, D: int, N: int) -> tuple[int, int]:
    """Thesis sec. 3.2: (D*W*N + O*N) x (D*W*N + O + (D+I+O)*W + (D-1)*W^2).

    For an I-W-...-W-O network (D hidden layers of width W, biases) on N samples.  The Jacobian is
    taller than wide when N >= 1 + (D+I+O) W/O + (D-1) W^2/O.
    """
    vals = {"I": I, "O": O, "W": W, "D": D, "N": N}
    for k, v in vals.items():
        if int(v) != v or int(v) < 1:
            raise LiftnnError(f"{k} must be a positive integer; got {v!r}")
    I, O, W, D, N = (int(vals[k]) for k in "IOWDN")
    return D * W * N + O * N, D * W * N + O + (D + I + O) * W + (D - 1) * W * W


def structural_nnz(layout: ThesisLayout) -> int:
    """Structural nonzeros: sum_l d_{l+1} N (d_l + bias + [l < D] + [l >= 1] d_l)."""
    s, N, D = layout.sizes, layout.n, layout.depth
    return sum(s[l + 1] * N * (s[l] + int(layout.bias) + (l < D) + (l >= 1) * s[l])
               for l in range(layout.n_layers))


# ---- orderings ----------------------------------------------------------------------------
def _w_cols(lay: ThesisLayout, l: int) -> np.ndarray:
    return np.arange(lay.w_offset(l), lay.w_offset(l) + lay.sizes[l + 1] * lay.sizes[l])


def _b_cols(lay: ThesisLayout, l: int) -> np.ndarray:
    if not lay.bias:
        return np.zeros(0, dtype=np.int64)
    return np.arange(lay.b_offset(l), lay.b_offset(l) + lay.sizes[l + 1])


def _z_cols(lay: ThesisLayout, j: int) -> np.ndarray:
    return np.arange(lay.z_offset(j), lay.z_offset(j) + lay.n * lay.sizes[j])


def _block_rows(lay: ThesisLayout, l: int) -> np.ndarray:
    r0 = lay.row_offset(l)
    return np.arange(r0, r0 + lay.n * lay.sizes[l + 1])


def banded_permutation(layout: ThesisLayout) -> tuple[np.ndarray, np.ndarray]:
    """(row_perm, col_perm) with J_banded = J_natural[row_perm][:, col_perm] (fig. 3.3).

    row_perm = [rows of h_1, ..., h_D, rows of F];
    col_perm = [W_0, b_0, z_1, W_1, b_1, z_2, ..., z_D, W_D, b_D] (natural column indices).
    """
    L = layout.n_layers
    rows = np.concatenate([_block_rows(layout, l) for l in range(L)])  # h_1..h_D then F
    cols = []
    for l in range(L):
        cols += [_w_cols(layout, l), _b_cols(layout, l)]
        if l < L - 1:
            cols.append(_z_cols(layout, l + 1))
    return rows.astype(np.int64), np.concatenate(cols).astype(np.int64)


def block_labels(layout: ThesisLayout, ordering: str = "natural") -> tuple[list, list]:
    """[(label, start, stop)] for the row groups and the column groups of `ordering`."""
    check_choice("ordering", ordering, ORDERINGS)
    L, D, N = layout.n_layers, layout.depth, layout.n
    row_groups = [(f"h{l + 1}" if l < D else "F", layout.sizes[l + 1] * N) for l in range(L)]
    wgroups = []
    for l in range(L):
        wgroups.append((f"W{l}", layout.sizes[l + 1] * layout.sizes[l]))
        if layout.bias:
            wgroups.append((f"b{l}", layout.sizes[l + 1]))
    zgroups = [(f"z{j}", layout.sizes[j] * N) for j in range(1, D + 1)]
    if ordering == "natural":
        rows = [row_groups[-1]] + row_groups[:-1]
        cols = wgroups + zgroups
    else:
        rows = row_groups
        per = 2 if layout.bias else 1
        cols = []
        for l in range(L):
            cols += wgroups[per * l:per * (l + 1)]
            if l < D:
                cols.append(zgroups[l])

    def spans(groups):
        out, p = [], 0
        for name, size in groups:
            out.append((name, p, p + size))
            p += size
        return out

    return spans(rows), spans(cols)


# ---- assembly -----------------------------------------------------------------------------
def _triplets(problem: ThesisResidual, u) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """COO (rows, cols, vals) of the natural-ordering Jacobian, block by block."""
    lay = problem.layout
    params, Z = problem.unpack(np.asarray(u, np.float64))  # numpy slicing: no dispatch
    Zs = [np.asarray(problem.X)] + [np.asarray(z) for z in Z]
    N, L = lay.n, lay.n_layers
    R, C, V = [], [], []
    n_idx = np.arange(N)
    for l, (W, b) in enumerate(params):
        W = np.asarray(W)
        d_in, d_out = lay.sizes[l], lay.sizes[l + 1]
        Zin = Zs[l]                                                       # (N, d_in)
        A = Zin @ W.T + (np.asarray(b) if b is not None else 0.0)         # (N, d_out)
        S = np.asarray(problem.activations[l].df(jnp.asarray(A))).T      # (d_out, N): sigma'
        s = -1.0 if l < L - 1 else -1.0 / np.sqrt(problem.penalty)
        k_idx = np.arange(d_out)
        rows = lay.row_offset(l) + k_idx[:, None] * N + n_idx[None, :]   # (d_out, N)
        i_idx = np.arange(d_in)
        # W_{l,k}: rows (k, n), cols w_off + k d_in + i, value s sigma'(a_k^n) z_l^n[i]
        R.append(np.broadcast_to(rows[:, :, None], (d_out, N, d_in)).ravel())
        C.append(np.broadcast_to((lay.w_offset(l) + k_idx[:, None, None] * d_in
                                  + i_idx[None, None, :]), (d_out, N, d_in)).ravel())
        V.append((s * S[:, :, None] * Zin[None, :, :]).ravel())
        if lay.bias:  # b_{l,k}: value s sigma'(a_k^n)
            R.append(rows.ravel())
            C.append(np.broadcast_to(lay.b_offset(l) + k_idx[:, None], (d_out, N)).ravel())
            V.append((s * S).ravel())
        if l < L - 1:  # identity block of z_{l+1} in h_{l+1}
            R.append(rows.ravel())
            C.append((lay.z_offset(l + 1) + k_idx[:, None] * N + n_idx[None, :]).ravel())
            V.append(np.ones(d_out * N))
        if l >= 1:  # z_{l,i}: diagonal N x N blocks, value s W_l[k, i] sigma'(a_k^n)
            R.append(np.broadcast_to(rows[:, :, None], (d_out, N, d_in)).ravel())
            C.append(np.broadcast_to(lay.z_offset(l) + i_idx[None, None, :] * N
                                     + n_idx[None, :, None], (d_out, N, d_in)).ravel())
            V.append((s * W[:, None, :] * S[:, :, None]).ravel())
    return (np.concatenate(R).astype(np.int64), np.concatenate(C).astype(np.int64),
            np.concatenate(V).astype(np.float64))


def jacobian(problem: ThesisResidual, u, ordering: str = "natural") -> BlockJacobian:
    """The analytic Jacobian dr/du of `problem.residual` at u, as CSR in `ordering`.

    Args:
        problem: a ThesisResidual (model, X: (N, I), Y: (N, O), penalty rho).
        u: (n_vars,) point in the natural ordering (see liftnn.lifted.thesis.residual).
        ordering: "natural" (Table 3.1 / fig. 3.2) or "banded" (fig. 3.3).
    Returns:
        BlockJacobian(J, row_perm, col_perm, ordering, row_blocks, col_blocks); J has shape
        (n_rows, n_vars) and J == J_natural[row_perm][:, col_perm].  The multipliers lam of
        residual(u, lam) do not enter the Jacobian.
    """
    check_choice("ordering", ordering, ORDERINGS)
    lay = problem.layout
    u = np.asarray(u, np.float64)
    if u.shape != (lay.n_vars,):
        raise LiftnnError(f"u has shape {u.shape}; the lifted problem has {lay.n_vars} variables")
    if not np.all(np.isfinite(u)):
        raise LiftnnError("u contains non-finite values")
    r, c, v = _triplets(problem, u)
    if ordering == "natural":
        row_perm, col_perm = np.arange(lay.n_rows), np.arange(lay.n_vars)
    else:
        row_perm, col_perm = banded_permutation(lay)
        r = np.argsort(row_perm)[r]  # new position of each natural row
        c = np.argsort(col_perm)[c]
    J = sp.coo_matrix((v, (r, c)), shape=(lay.n_rows, lay.n_vars)).tocsr()
    J.sort_indices()
    rows, cols = block_labels(lay, ordering)
    return BlockJacobian(J, row_perm, col_perm, ordering, rows, cols)


def bandwidth(J) -> tuple[int, int]:
    """(lower, upper) of the stored pattern: every entry (i, j) has -lower <= j - i <= upper."""
    C = sp.coo_matrix(J)
    if C.nnz == 0:
        return 0, 0
    d = C.col.astype(np.int64) - C.row.astype(np.int64)
    return int(max(0, -d.min())), int(max(0, d.max()))


def banded_bandwidth(layout: ThesisLayout) -> tuple[int, int]:
    """Exact (lower, upper) bandwidth of the banded ordering's structural pattern.

    Row (block l, neuron k, sample n) sits at R_l + kN + n with R_l = N (d_1 + ... + d_l); column
    group G_l starts at S_l = Q_l + R_l where Q_l = P_0 + ... + P_{l-1} counts the weights (and
    biases) of the layers before l.  So col - row is, for the entries of that row,
        W_{l,k,i}:    Q_l + k d_l + i - kN - n,         b_{l,k}:  Q_l + d_{l+1} d_l + k - kN - n,
        z_{l+1,k}^n:  Q_{l+1}  (l < D),                 z_{l,i}^n: Q_l - N d_l + (i - k) N  (l >= 1),
    each affine in (k, i, n), so its extremes are at the corners of the index box; this function
    evaluates them.  (For N >= max d: upper = P - O with biases, and
    lower = max_l N (d_l + d_{l+1} - 1) - Q_l.)
    """
    s, N, D, beta = layout.sizes, layout.n, layout.depth, int(layout.bias)
    lo, hi = -np.inf, -np.inf   # max of (row - col) and of (col - row)
    Q = 0
    for l in range(layout.n_layers):
        d_in, d_out = s[l], s[l + 1]
        K, I_, Nn = (0, d_out - 1), (0, d_in - 1), (0, N - 1)
        vals = [Q + k * d_in + i - k * N - n for k in K for i in I_ for n in Nn]
        if beta:
            vals += [Q + d_out * d_in + k - k * N - n for k in K for n in Nn]
        if l < D:
            vals.append(Q + d_out * (d_in + beta))
        if l >= 1:
            vals += [Q - N * d_in + (i - k) * N for k in K for i in I_]
        hi = max(hi, max(vals))
        lo = max(lo, -min(vals))
        Q += d_out * (d_in + beta)
    return int(max(lo, 0)), int(max(hi, 0))


def autodiff_jacobian(problem: ThesisResidual, u) -> np.ndarray:
    """Dense jax.jacfwd of problem.residual at u (the reference of the thesis sec. 3.3)."""
    lay = problem.layout
    if lay.n_rows * lay.n_vars > 2e7:
        raise LiftnnError(f"the dense autodiff Jacobian would have {lay.n_rows} x {lay.n_vars} "
                          "entries; check on a smaller problem")
    return np.asarray(jax.jit(jax.jacfwd(problem.residual))(jnp.asarray(u, jnp.float64)))


def max_abs_error(problem: ThesisResidual, u) -> float:
    """max |J_analytic - J_autodiff| over all entries, natural ordering."""
    Ja = jacobian(problem, u, "natural").J.toarray()
    return float(np.max(np.abs(Ja - autodiff_jacobian(problem, u)))) if Ja.size else 0.0


# ---- spy plots ----------------------------------------------------------------------------
def spy(J, path, title: str = "", *, row_blocks=None, col_blocks=None) -> Path:
    """Save a spy plot of J's stored (structural) entries to `path` (PNG, matplotlib Agg).

    Marker size shrinks with the matrix size (about 250 / max(rows, cols) points, clipped to
    [0.3, 6]).  row_blocks / col_blocks: [(label, start, stop)] draw block boundaries and labels
    (see BlockJacobian), as in the thesis figs. 3.2 and 3.3.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    J = sp.csr_matrix(J)
    path = Path(path)
    if path.parent and not path.parent.exists():
        raise LiftnnError(f"cannot write {path}: folder {path.parent} does not exist")
    rows, cols = J.shape
    ms = float(np.clip(250.0 / max(rows, cols, 1), 0.3, 6.0))
    aspect = rows / max(cols, 1)
    fig, ax = plt.subplots(figsize=(7.0, max(3.0, min(9.0, 7.0 * aspect)) + 0.8))
    ax.spy(J, markersize=ms, precision="present", color="k")
    for blocks, line, set_ticks in ((row_blocks, ax.axhline, "y"), (col_blocks, ax.axvline, "x")):
        if not blocks:
            continue
        for _, a, b in blocks[1:]:
            line(a - 0.5, color="tab:blue", lw=0.6, alpha=0.6)
        centres = [(a + b - 1) / 2 for _, a, b in blocks]
        labels = [name for name, _, _ in blocks]
        if set_ticks == "y":
            ax.set_yticks(centres, labels)
        else:
            ax.set_xticks(centres, labels, rotation=0, fontsize=8)
            ax.tick_params(axis="x", bottom=False, labelbottom=False)
    ax.set_title(f"{title}\n{rows} x {cols}, nnz = {J.nnz}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
