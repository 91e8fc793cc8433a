import jax
import jax.numpy as jnp
import pytest

import liftnn as ln
from liftnn import compile_cache as cc
from liftnn.errors import LiftnnWarning


def test_off_values_switch_the_cache_off(monkeypatch):
    for v in ("off", "0", "none", ""):
        monkeypatch.setenv(cc.ENV, v)
        assert cc.configured_dir() is None
        assert cc.enable_compile_cache() is None


def test_cache_directory_fills_and_default_follows_xdg(tmp_path, monkeypatch):
    monkeypatch.delenv(cc.ENV, raising=False)
    monkeypatch.setattr(cc, "_enabled", None)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cc.configured_dir() == str(tmp_path / "xdg" / "liftnn" / "xla")
    old = jax.config.jax_compilation_cache_dir
    try:
        d = cc.enable_compile_cache(tmp_path / "c")
        assert d == str(tmp_path / "c") and cc.active_dir() == d
        f = jax.jit(lambda x: jnp.sin(x) * 3.0 + x ** 2)
        assert float(f(jnp.float64(0.25))) == float(jnp.sin(0.25) * 3.0 + 0.0625)
        assert any((tmp_path / "c").iterdir())  # the executable was written
    finally:
        jax.config.update("jax_compilation_cache_dir", old)


def test_unwritable_directory_warns_and_leaves_the_cache_off(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.warns(LiftnnWarning, match="cannot be written"):
        assert cc.enable_compile_cache(blocker / "sub") is None


@pytest.fixture
def fresh_default(tmp_path, monkeypatch):
    """A process in which ensure_default_cache has not run yet, LIFTNN_COMPILE_CACHE = tmp/env;
    JAX's cache directory is restored afterwards."""
    monkeypatch.setenv(cc.ENV, str(tmp_path / "env"))
    monkeypatch.setattr(cc, "_enabled", None)
    monkeypatch.setattr(cc, "_default_done", False)
    old = jax.config.jax_compilation_cache_dir
    yield tmp_path / "env"
    jax.config.update("jax_compilation_cache_dir", old)


def test_the_python_api_switches_the_default_cache_on_once(fresh_default):
    jax.config.update("jax_compilation_cache_dir", None)
    ln.train(ln.MLP([1, 3, 1]), ln.datasets.load("sin2", n=8), method="adam", max_iter=3)
    assert cc.active_dir() == str(fresh_default)
    assert jax.config.jax_compilation_cache_dir == str(fresh_default)


def test_the_cache_is_on_before_the_initial_weights_are_drawn(fresh_default, monkeypatch):
    """model.init compiles the initialiser's programs: they are cached as well."""
    jax.config.update("jax_compilation_cache_dir", None)
    model = ln.MLP([1, 3, 1])
    seen, init = [], type(model).init
    monkeypatch.setattr(type(model), "init",
                        lambda self, *a, **k: seen.append(cc.active_dir()) or init(self, *a, **k))
    ln.train(model, ln.datasets.load("sin2", n=8), method="adam", max_iter=3)
    assert seen == [str(fresh_default)]


def test_a_program_that_set_its_own_cache_directory_keeps_it(fresh_default, tmp_path):
    jax.config.update("jax_compilation_cache_dir", str(tmp_path / "theirs"))
    assert cc.ensure_default_cache() is None
    assert jax.config.jax_compilation_cache_dir == str(tmp_path / "theirs")


def test_a_second_directory_takes_effect_after_the_first_was_used(tmp_path):
    old = jax.config.jax_compilation_cache_dir
    try:
        cc.enable_compile_cache(tmp_path / "one")
        jax.jit(lambda x: jnp.cosh(x) * 1.618)(jnp.float64(0.5)).block_until_ready()
        cc.enable_compile_cache(tmp_path / "two")
        jax.jit(lambda x: jnp.tanh(x) * 2.718)(jnp.float64(0.5)).block_until_ready()
        assert any((tmp_path / "one").iterdir()) and any((tmp_path / "two").iterdir())
    finally:
        from jax.experimental.compilation_cache import compilation_cache

        compilation_cache.reset_cache()
        jax.config.update("jax_compilation_cache_dir", old)
