"""A random lifted point of a small MLP, shared by the structured-step tests of
test_linsolve.py (alm's step) and test_lifted_gn.py (lifted-gn's step)."""

import jax.numpy as jnp
import numpy as np

import liftnn as ln
from liftnn.lifted import gauss_newton as gnm


def random_point(arch, act, n, bias, seed=0):
    """(model, params, X, Y, acts, Z, lam): data and weights drawn with `seed`, states 0.1 off
    the simulated ones (an infeasible point), multipliers at scale 0.3."""
    model = ln.MLP(arch, activation=act, bias=bias)
    p = model.init(1)
    rng = np.random.default_rng(seed)
    X = jnp.asarray(rng.standard_normal((n, model.d_in)))
    Y = jnp.asarray(rng.standard_normal((n, model.d_out)))
    acts = gnm.hidden_activations(model, "gd", 1.0)
    Z = [z + 0.1 * rng.standard_normal(z.shape) for z in gnm.simulate(p, X, acts)]  # infeasible
    lam = [0.3 * rng.standard_normal(z.shape) for z in Z]
    return model, p, X, Y, acts, Z, lam
