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
