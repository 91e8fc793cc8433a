"""The structured (states-eliminated) Gauss-Newton step (liftnn.lifted.inner.gn_step) equals a
dense solve of the full lifted system (J^T J + D) d = -(J^T R + mu_w theta) to 1e-8, for every
linear-solver mode."""

import jax.numpy as jnp
import numpy as np
import pytest
from _points import random_point
from jax.flatten_util import ravel_pytree

import liftnn as ln
from liftnn.lifted import gauss_newton as gnm
from liftnn.lifted import inner, linsolve
from liftnn.models.activations import get_activation

CASES = [
    ("1-4-3-1", "tanh", 7, True, "primal"),
    ("1-4-3-1", "tanh", 7, True, "dual"),
    ("1-4-3-1", "tanh", 40, True, "cg"),  # cg serves over-determined (m O >= P) systems
    ("2-3-3-2", "sigmoid", 5, True, "dual"),
    ("2-3-3-2", "softplus", 20, True, "primal"),
    ("2-3-3-2", "tanh", 20, True, "cg"),
    ("3-5-2", "tanh", 4, False, "dual"),
    ("3-5-2", "leaky_relu", 30, False, "primal"),
    ("2-4-4-4-1", "tanh", 9, True, "dual"),
    ("2-4-4-4-1", "sigmoid", 40, True, "primal"),
]




@pytest.mark.parametrize("arch,act,n,bias,mode", CASES)
@pytest.mark.parametrize("mu_w,damping", [(0.0, 1e-6), (0.05, 1e-3)])
def test_structured_step_equals_dense_reference(arch, act, n, bias, mode, mu_w, damping):
    model, p, X, Y, acts, Z, lam = random_point(arch, act, n, bias)
    out = get_activation("identity")
    beta, m = 0.7, n
    c = (2.0 / (n * model.d_out)) ** 0.5
    s2 = beta / m
    omega = [lj * np.sqrt(m) / beta for lj in lam]
    prob = gnm.AugmentedLSQ(X, Y, omega, s2, mu_w, acts, out, c)
    step = inner.gn_step(prob, p, Z, mode, damping)
    ref_p, ref_Z = linsolve.dense_reference_step(prob, p, Z, damping)
    got = np.concatenate([np.asarray(step.dtheta)] + [np.asarray(z).ravel() for z in step.dZ])
    ref = np.asarray(ravel_pytree((ref_p, ref_Z))[0])
    tol = 1e-8 if mode != "cg" else 1e-7
    assert np.linalg.norm(got - ref) <= tol * np.linalg.norm(ref)


def test_reduced_jacobian_matches_matvecs():
    """Jh formed explicitly agrees with the matrix-free products Jh v and Jh^T w."""
    _model, p, X, Y, acts, Z, _lam = random_point("2-3-3-2", "tanh", 6, True)
    out = get_activation("identity")
    c, s2 = 0.3, 0.5
    lin = gnm.linearise(gnm.AugmentedLSQ(X, Y, [0.0 * z for z in Z], s2, 0.0, acts, out, c), p, Z)
    Jh = np.asarray(gnm.reduced_jacobian(lin))  # (m, O, P)
    theta, unravel = ravel_pytree(p)
    v = np.random.default_rng(3).standard_normal(theta.shape[0])
    w = np.random.default_rng(4).standard_normal(Jh.shape[:2])
    Jv = np.asarray(gnm.jh_matvec(lin, unravel(jnp.asarray(v))))
    JTw = np.asarray(ravel_pytree(gnm.jh_rmatvec(lin, jnp.asarray(w)))[0])
    np.testing.assert_allclose(Jv, np.einsum("mkp,p->mk", Jh, v), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(JTw, np.einsum("mkp,mk->p", Jh, w), rtol=1e-12, atol=1e-12)
    K = np.asarray(linsolve.dual_gram(lin))
    Jm = Jh.reshape(-1, Jh.shape[2])
    np.testing.assert_allclose(K, Jm @ Jm.T, rtol=1e-12, atol=1e-12)


def test_auto_choice_by_size():
    assert linsolve.choose("auto", m=20, O=1, P=321) == "dual"
    assert linsolve.choose("auto", m=1000, O=1, P=321) == "primal"
    assert linsolve.choose("auto", m=10_000, O=1, P=50_000) == "cg"
    assert linsolve.choose("cg", m=5, O=1, P=10) == "cg"


@pytest.mark.parametrize("sizes,act,bias,mu_w", [
    ((1, 4, 3, 1), "tanh", True, 0.0), ((2, 3, 3, 2), "softplus", False, 0.1),
    ((3, 5, 2), "sigmoid", True, 1e-3)])
def test_merit_gradient_equals_autodiff_and_finite_differences(sizes, act, bias, mu_w):
    """The inner loop's analytic gradient of Phi = L_beta + const (no autodiff in the loop)."""
    import jax

    from liftnn.lifted import gauss_newton as gnm
    from liftnn.models.activations import get_activation

    model = ln.MLP(list(sizes), activation=act, bias=bias)
    rng = np.random.default_rng(1)
    m = 6
    X = jnp.asarray(rng.normal(size=(m, sizes[0])))
    Y = jnp.asarray(rng.normal(size=(m, sizes[-1])))
    params = model.init(2)
    acts = gnm.hidden_activations(model, "gd", 1.0)
    out_act = get_activation("identity")
    Z = [z + 0.1 * jnp.asarray(rng.normal(size=z.shape)) for z in gnm.simulate(params, X, acts)]
    omega = [0.05 * jnp.asarray(rng.normal(size=z.shape)) for z in Z]
    s2, c = 0.7, 0.3

    prob = gnm.AugmentedLSQ(X, Y, omega, s2, mu_w, acts, out_act, c)

    def phi(p, z):
        return gnm.merit(prob, p, z)

    val, gp, gz = gnm.merit_value_and_grad(gnm.linearise(prob, params, Z))
    ref_val, (rp, rz) = jax.value_and_grad(phi, argnums=(0, 1))(params, Z)
    assert float(val) == pytest.approx(float(ref_val), rel=1e-13)
    flat = lambda tree: np.concatenate([np.ravel(a) for a in jax.tree_util.tree_leaves(tree)])
    np.testing.assert_allclose(flat(gp), flat(rp), rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(flat(gz), flat(rz), rtol=1e-10, atol=1e-13)
    # central differences along a random direction in (theta, Z)
    dp = jax.tree_util.tree_map(lambda a: jnp.asarray(rng.normal(size=a.shape)), params)
    dz = [jnp.asarray(rng.normal(size=z.shape)) for z in Z]
    h = 1e-6
    plus = phi(jax.tree_util.tree_map(lambda a, d: a + h * d, params, dp), [a + h * d for a, d in zip(Z, dz)])
    minus = phi(jax.tree_util.tree_map(lambda a, d: a - h * d, params, dp), [a - h * d for a, d in zip(Z, dz)])
    fd = (float(plus) - float(minus)) / (2 * h)
    exact = float(flat(gp) @ flat(dp) + flat(gz) @ flat(dz))
    assert fd == pytest.approx(exact, rel=1e-7, abs=1e-9)
