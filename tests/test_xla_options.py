"""liftnn.xla_options: the CPU compiler options of liftnn's programs are accepted by the pinned
JAX, change rounding only, and LIFTNN_XLA_OPTIONS=off restores XLA's defaults."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import liftnn as ln
from liftnn import datasets, xla_options


def test_options_on_the_cpu_and_the_opt_out(monkeypatch):
    monkeypatch.delenv(xla_options.ENV, raising=False)
    assert jax.default_backend() == "cpu"
    assert xla_options.compiler_options() == xla_options.CPU_OPTIONS
    for off in ("off", "0", "False", " no "):
        monkeypatch.setenv(xla_options.ENV, off)
        assert xla_options.compiler_options() is None
    monkeypatch.setenv(xla_options.ENV, "on")
    assert xla_options.compiler_options() == xla_options.CPU_OPTIONS


def test_jit_sets_the_options_itself():
    with pytest.raises(TypeError, match="compiler_options"):
        xla_options.jit(lambda x: x, compiler_options={})


def test_a_training_step_compiles_with_the_options_and_agrees_with_the_defaults():
    """An unknown option name would fail at compilation: the options compile on this JAX, and a
    Gauss-Newton-sized computation (a loop of matrix products and a Cholesky solve) agrees with
    XLA's default compilation to rounding."""

    def f(A, b):
        def body(_, x):
            return jnp.tanh(A @ x) + b
        x = jax.lax.fori_loop(0, 20, body, b)
        M = A @ A.T + jnp.eye(A.shape[0])
        return jax.scipy.linalg.cho_solve((jnp.linalg.cholesky(M), True), x)

    rng = np.random.default_rng(0)
    A, b = rng.standard_normal((16, 16)) / 4, rng.standard_normal(16)
    ours = np.asarray(xla_options.jit(f)(A, b))
    default = np.asarray(jax.jit(f)(A, b))
    np.testing.assert_allclose(ours, default, rtol=1e-12, atol=1e-13)
    level1 = np.asarray(xla_options.jit(f, optimization_level=xla_options.INNER_SOLVE_LEVEL)(A, b))
    np.testing.assert_allclose(level1, default, rtol=1e-12, atol=1e-13)


def test_the_inner_solve_is_compiled_at_its_level(monkeypatch):
    seen = []
    real = jax.jit

    def spy(fun, **kw):
        seen.append((getattr(fun, "__name__", ""), kw.get("compiler_options")))
        return real(fun, **kw)

    monkeypatch.setattr(xla_options.jax, "jit", spy)
    from liftnn.lifted import inner

    inner._compiled.cache_clear()
    d = datasets.load("sin2", n=12, seed=0)
    ln.train(ln.MLP((1, 3, 1), activation="tanh"), d, method="alm", seed=0, max_outer=1)
    levels = {n: (o or {}).get("xla_backend_optimization_level") for n, o in seen}
    assert levels.get("each") == xla_options.INNER_SOLVE_LEVEL
    assert levels.get("_advance_body") is None  # the others keep XLA's default level


def test_alm_trains_with_the_options():
    d = datasets.load("sin2", n=20, seed=0)
    res = ln.train(ln.MLP((1, 6, 1), activation="tanh"), d, method="alm", seed=0, max_outer=5)
    assert np.isfinite(res["fun"]) and res["fun"] < res["history"][0]["loss"]
