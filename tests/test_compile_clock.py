import jax
import jax.numpy as jnp
import numpy as np
import pytest

import liftnn as ln
from liftnn import compile_clock


def test_a_first_call_compiles_and_a_second_does_not():
    f = jax.jit(lambda x: jnp.tanh(x) @ x.T + 0.123456)
    x = jnp.ones((7, 3))
    with compile_clock.measure() as first:
        f(x).block_until_ready()
    with compile_clock.measure() as second:
        f(x).block_until_ready()
    assert first["compiles"] >= 1 and compile_clock.compile_seconds(first) > 0
    assert second["compiles"] == 0 and compile_clock.compile_seconds(second) == 0


def test_nested_measurements_each_see_their_block():
    g = jax.jit(lambda x: jnp.cos(x) * 2.5 - 0.987)
    with compile_clock.measure() as outer:
        with compile_clock.measure() as inner:
            g(jnp.ones(5)).block_until_ready()
        h = jax.jit(lambda x: jnp.sin(x) * 1.25 + 0.4321)
        h(jnp.ones(4)).block_until_ready()
    assert inner["compiles"] >= 1 and outer["compiles"] > inner["compiles"]


@pytest.mark.parametrize("method", ["alm", "adam", "lm"])
def test_train_reports_compile_and_loop_time(method):
    ds = ln.datasets.load("sin2", n=10)
    r = ln.train(ln.MLP([1, 4, 1]), ds, method=method, max_iter=5)
    assert r["compile_s"] >= 0 and r["loop_s"] >= 0
    assert np.isclose(r["compile_s"] + r["loop_s"], r["time_s"])
    assert isinstance(r["compiles"], int) and isinstance(r["cache_hits"], int)
    rs = ln.train(ln.MLP([1, 4, 1]), ds, method=method, seeds=range(2), max_iter=5)
    assert all(np.isclose(x["compile_s"] + x["loop_s"], x["batch_time_s"] / 2) for x in rs)


def test_a_persistent_cache_hit_is_counted_and_not_as_a_compilation(tmp_path):
    from liftnn import compile_cache

    old = jax.config.jax_compilation_cache_dir
    try:
        assert compile_cache.enable_compile_cache(tmp_path / "xla") is not None
        f = jax.jit(lambda x: jnp.sinh(x) * 0.731 + x ** 3)
        x = jnp.ones(6)
        with compile_clock.measure() as cold:
            f(x).block_until_ready()
        jax.clear_caches()  # the next call must go to the persistent cache
        with compile_clock.measure() as warm:
            f(x).block_until_ready()
    finally:
        from jax.experimental.compilation_cache import compilation_cache

        compilation_cache.reset_cache()  # later tests may open another directory
        jax.config.update("jax_compilation_cache_dir", old)
    assert compile_clock.compilations(cold) >= 1 and cold["cache_hits"] == 0
    assert warm["cache_hits"] >= 1 and compile_clock.compilations(warm) == 0
    assert warm["cache_read_s"] <= warm["backend_s"] + 1e-9  # the read is inside the event


def test_putting_data_on_the_device_compiles_nothing():
    # jnp.asarray of a NumPy array compiles a copy program per shape; problem.to_device does not
    from liftnn.problem import TrainingProblem, to_device

    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(37, 3)), rng.normal(size=(37, 1))
    with compile_clock.measure() as acc:
        problem = TrainingProblem(ln.MLP([3, 5, 1]), X, Y)
        to_device(rng.normal(size=(41, 2)))
    assert compile_clock.compilations(acc) == 0
    np.testing.assert_array_equal(np.asarray(problem.X), X)


@pytest.mark.parametrize("method, programs", [("alm", 5), ("lm", 2), ("adam", 2)])
def test_a_cold_training_compiles_only_its_own_programs(method, programs):
    """A first call on new shapes compiles the method's programs and the MSE, not one small
    program per array moved to the device or per eager operation (these cost ~20 ms each)."""
    rng = np.random.default_rng(1)
    X = rng.normal(size=(43, 2))
    ds = ln.datasets.Dataset(X, np.sin(X[:, :1]), X[:0], X[:0, :1], meta={"name": "probe"})
    model = ln.MLP([2, 6, 1], activation="tanh")
    model.init(0)  # the initialiser's own program is not the method's
    with compile_clock.measure() as acc:
        ln.train(model, ds, method=method, seeds=range(2), max_iter=3)
    # alm: initial states, evaluator, inner solve, outer update, train MSE; lm and adam: the
    # loop and the train MSE
    assert compile_clock.compilations(acc) <= programs
