"""Curvature tools (seeds 003/004): Hessian-vector products agree with the full Hessian and with
finite differences; power iteration and Lanczos find numpy.linalg.eigvalsh's eigenvalues of SPD
and indefinite quadratics; the Gauss-Newton matrix equals the Hessian at a zero-residual
minimiser; and gradient descent diverges just above eta = 2 / lambda_max and converges just below."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import liftnn as ln
from liftnn import diagnostics as dg


def _sym(eigs, seed):
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.standard_normal((len(eigs), len(eigs))))
    A = Q @ np.diag(eigs) @ Q.T
    return 0.5 * (A + A.T)


def _quadratic(A, b):
    Aj, bj = jnp.asarray(A), jnp.asarray(b)
    return lambda t: 0.5 * t @ (Aj @ t) - bj @ t


N = 24
SPD = _sym(np.concatenate([[0.05, 0.5], np.geomspace(1.0, 9.0, N - 2)]), 0)  # kappa = 180
INDEF = _sym(np.concatenate([[-6.0, -4.5], np.linspace(-1.95, 4.0, N - 2)]), 1)  # |lambda| max is negative
THETA = np.random.default_rng(2).standard_normal(N)


def _nonquadratic(t):
    """Rosenbrock chain + a tanh term: a Hessian with off-diagonal and third-order structure."""
    return (jnp.sum(100.0 * (t[1:] - t[:-1] ** 2) ** 2 + (1.0 - t[:-1]) ** 2)
            + 0.3 * jnp.sum(jnp.tanh(t) ** 3) + 0.1 * jnp.sum(t[:-1] * t[1:]) ** 2)


def test_hvp_equals_hessian_times_v_and_finite_differences():
    rng = np.random.default_rng(5)
    th = 0.5 * rng.standard_normal(8)
    H = dg.hessian(_nonquadratic, th)
    assert np.allclose(H, H.T)
    hv = jax.jit(lambda v: dg.hvp(_nonquadratic, th, v))
    for _ in range(3):
        v = rng.standard_normal(8)
        Hv = np.asarray(hv(v))
        np.testing.assert_allclose(Hv, H @ v, rtol=1e-12, atol=1e-10)
    Hfd = dg.fd_hessian(_nonquadratic, th)
    assert np.max(np.abs(Hfd - H)) <= 1e-6 * np.max(np.abs(H))
    np.testing.assert_allclose(dg.hessian_diag(_nonquadratic, th), np.diag(H), rtol=1e-12)
    np.testing.assert_allclose(dg.hessian_diag(_nonquadratic, th, chunk=3), np.diag(H), rtol=1e-12)


def test_hutchinson_diagonal():
    """Exact for a diagonal Hessian (v_i^2 = 1); unbiased with O(1/sqrt(S)) error in general."""
    d = np.linspace(-1.0, 3.0, 10)
    f = _quadratic(np.diag(d), np.zeros(10))
    np.testing.assert_allclose(dg.hessian_diag(f, np.ones(10), method="hutchinson", n_samples=8),
                               d, rtol=1e-14)
    f2 = _quadratic(SPD, np.zeros(N))
    est = dg.hessian_diag(f2, THETA, method="hutchinson", n_samples=4000, seed=1)
    off = SPD - np.diag(np.diag(SPD))
    sd = np.sqrt(np.sum(off**2, axis=1) / 4000)  # standard deviation of each estimate
    assert np.all(np.abs(est - np.diag(SPD)) <= 5 * sd + 1e-12)


@pytest.mark.parametrize("A", [SPD, INDEF], ids=["spd", "indefinite"])
def test_power_iteration_and_lanczos_match_eigvalsh(A):
    lam = np.linalg.eigvalsh(A)
    f = _quadratic(A, np.ones(N))
    top = dg.lambda_max(f, THETA, tol=1e-10)
    assert top.converged and abs(top.value - lam[-1]) <= 1e-8 * abs(lam[-1])
    # the eigenvector: residual small
    assert np.linalg.norm(A @ top.vector - top.value * top.vector) <= 1e-8 * abs(lam[-1])
    bottom = dg.lambda_min(f, THETA, lam_max=top.value, tol=1e-10, max_iter=20000)
    assert bottom.converged and abs(bottom.value - lam[0]) <= 1e-7 * np.max(np.abs(lam))
    full = dg.lanczos(f, THETA, k=N)
    np.testing.assert_allclose(full.values, lam, atol=1e-10)
    # matrices are accepted directly, and a few Lanczos steps give the extremes
    part = dg.lanczos(A, k=16)
    assert abs(part.values[-1] - lam[-1]) <= 1e-4
    # each Ritz value has an eigenvalue within its residual bound |beta_k s_k|
    gaps = np.min(np.abs(part.values[:, None] - lam[None, :]), axis=1)
    assert np.all(gaps <= part.residuals + 1e-10)
    assert dg.power_iteration(A, tol=1e-10).value == pytest.approx(lam[np.argmax(np.abs(lam))],
                                                                    rel=1e-8)
    eig, used = dg.spectrum(f, THETA)
    assert used == "dense"
    np.testing.assert_allclose(eig, lam, atol=1e-12)


def test_condition_number_definiteness_and_shift():
    lam = np.linalg.eigvalsh(SPD)
    assert dg.condition_number(lam) == pytest.approx(np.linalg.cond(SPD), rel=1e-8)
    assert dg.condition_number(lam) == pytest.approx(9.0 / 0.05, rel=1e-8)
    assert dg.condition_number([3.0, 1e-20, -2.0]) == float("inf")
    assert dg.condition_number(np.linalg.eigvalsh(INDEF)) == pytest.approx(np.linalg.cond(INDEF),
                                                                           rel=1e-8)
    assert dg.is_positive_definite(SPD) and not dg.is_positive_definite(INDEF)
    alpha = dg.pd_shift(INDEF, alpha0=1e-3, factor=10.0)
    assert dg.is_positive_definite(INDEF + alpha * np.eye(N))
    assert not dg.is_positive_definite(INDEF + alpha / 10 * np.eye(N))
    assert alpha > 6.0  # lambda_min = -6
    assert dg.pd_shift(SPD) == 0.0
    assert dg.step_size_bound(4.0) == 0.5 and dg.step_size_bound(-1.0) == float("inf")


def test_gauss_newton_equals_hessian_at_zero_residual_minimiser():
    x = jnp.linspace(0.0, 1.0, 9)
    a, b, c = 1.5, -0.7, 0.3
    y = a * jnp.exp(b * x) + c * x**2

    def r(t):
        return t[0] * jnp.exp(t[1] * x) + t[2] * x**2 - y

    def f(t):
        return 0.5 * jnp.sum(r(t) ** 2)

    star = np.array([a, b, c])
    G, H = dg.gauss_newton_matrix(r, star), dg.hessian(f, star)
    np.testing.assert_allclose(G, H, rtol=1e-12, atol=1e-13)
    away = star + np.array([0.4, 0.5, -0.3])
    G_away = dg.gauss_newton_matrix(r, away)
    assert np.max(np.abs(G_away - dg.hessian(f, away))) > 1e-2  # the residual term matters there
    v = np.array([1.0, -2.0, 0.5])
    np.testing.assert_allclose(jax.jit(lambda w: dg.gnvp(r, away, w))(v), G_away @ v, rtol=1e-12)
    assert np.all(np.linalg.eigvalsh(G_away) >= -1e-12)


@pytest.mark.parametrize("factor,diverges", [(1.02, True), (0.98, False)])
def test_gradient_descent_step_bound(factor, diverges):
    """Seed 003: eta < 2 / lambda_max.  gd on 1/2 t'At - b't with eta = factor * bound."""
    b = np.ones(N)
    f = _quadratic(SPD, b)
    eta = factor * dg.step_size_bound(dg.lambda_max(f, THETA, tol=1e-12).value)
    grad = jax.jit(jax.grad(f))
    t = jnp.asarray(THETA)
    x_star = np.linalg.solve(SPD, b)
    err0 = np.linalg.norm(THETA - x_star)
    for _ in range(3000):
        t = t - eta * grad(t)
        err = float(jnp.linalg.norm(t - x_star))
        if not np.isfinite(err) or err > 1e6 * err0:
            break
    if diverges:
        assert err > 1e6 * err0
    else:
        assert err < 1e-8 * err0


def test_network_tools():
    model = ln.MLP("2-5-3-1", activation="tanh")
    rng = np.random.default_rng(0)
    X, Y = rng.standard_normal((12, 2)), rng.standard_normal((12, 1))
    tp = ln.TrainingProblem(model, X, Y)
    params = model.init(0)
    rep = dg.curvature_report(tp, params)
    layers = rep["layers"]
    assert [lr["layer"] for lr in layers] == [1, 2, 3]
    assert [lr["shape"] for lr in layers] == [[5, 2], [3, 5], [1, 3]]
    # per-layer norms against central finite differences of C
    theta = np.asarray(tp.flatten(params))
    h = 1e-6
    fun = jax.jit(jax.vmap(tp.fun))
    E = h * np.eye(theta.size)
    fd = (np.asarray(fun(jnp.asarray(theta + E))) - np.asarray(fun(jnp.asarray(theta - E)))) / (2 * h)
    g = tp.unflatten(jnp.asarray(fd))
    for lr, (gW, gb) in zip(layers, g):
        assert lr["weight_grad_norm"] == pytest.approx(float(jnp.linalg.norm(gW)), rel=1e-6)
        assert lr["bias_grad_norm"] == pytest.approx(float(jnp.linalg.norm(gb)), rel=1e-6)
    lam = np.linalg.eigvalsh(dg.hessian(tp.fun, theta))
    assert rep["n_params"] == model.n_params == theta.size
    assert rep["lambda_max"] == pytest.approx(lam[-1], rel=1e-10)
    assert rep["lambda_min"] == pytest.approx(lam[0], rel=1e-8, abs=1e-12)
    assert rep["lambda_max_power"] == pytest.approx(lam[-1], rel=1e-6)
    assert rep["eta_bound"] == pytest.approx(2.0 / lam[-1])
    assert rep["positive_definite"] == bool(lam[0] > 0)
    assert rep["n_negative"] + rep["n_zero"] + rep["n_positive"] == theta.size
    assert rep["grad_norm"] ** 2 == pytest.approx(
        sum(lr["weight_grad_norm"] ** 2 + lr["bias_grad_norm"] ** 2 for lr in layers), rel=1e-10)


def test_bad_input_is_named():
    f = _quadratic(SPD, np.zeros(N))
    with pytest.raises(ln.LiftnnError, match="max_n"):
        dg.hessian(f, THETA, max_n=10)
    with pytest.raises(ln.LiftnnError, match="non-finite"):
        dg.hvp_operator(f, np.full(N, np.nan))
    with pytest.raises(ln.LiftnnError, match="k must be in"):
        dg.lanczos(f, THETA, k=N + 1)
    with pytest.raises(ln.LiftnnError, match="method"):
        dg.hessian_diag(f, THETA, method="magic")
    with pytest.raises(ln.LiftnnError, match="non-empty"):
        dg.condition_number([])
    with pytest.raises(ln.LiftnnError, match="square"):
        dg.is_positive_definite(np.ones((2, 3)))
