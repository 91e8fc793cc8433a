import jax
import jax.numpy as jnp

from liftnn import compile_cache as cc


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


def test_unwritable_directory_leaves_the_cache_off(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert cc.enable_compile_cache(blocker / "sub") is None
