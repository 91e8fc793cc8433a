"""JAX's persistent compilation cache for liftnn's command line and benchmark workers.

XLA compilation dominates short runs (the lifted solver's jitted inner loop takes seconds to
compile, the runs themselves a fraction of that).  The cache stores compiled executables on disk,
so a second process with the same shapes loads them instead of compiling again.  It is on by
default: the command line switches it on at start, the Python API at the first `ln.train` call
(`ensure_default_cache`), unless LIFTNN_COMPILE_CACHE=off or the program has set JAX's
jax_compilation_cache_dir itself; `enable_compile_cache(path)` picks another directory.

Where: the LIFTNN_COMPILE_CACHE variable if set ("off", "0", "none" or "" switch it off), else
$XDG_CACHE_HOME/liftnn/xla (default ~/.cache/liftnn/xla).  Benchmarks record which was used, so
timings taken with a warm cache are never passed off as cold ones.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV = "LIFTNN_COMPILE_CACHE"
_OFF = {"off", "0", "none", "false", "no", ""}
_enabled: str | None = None


def default_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "liftnn" / "xla"


def configured_dir() -> str | None:
    """The directory the environment asks for, or None when the cache is switched off."""
    v = os.environ.get(ENV)
    if v is None:
        return str(default_dir())
    return None if v.strip().lower() in _OFF else v


def enable_compile_cache(path: str | os.PathLike | None = None) -> str | None:
    """Switch on JAX's persistent compilation cache; returns the directory used (None if off).

    `path=None` follows LIFTNN_COMPILE_CACHE / the default directory.  An unwritable directory
    leaves the cache off (compilation still works, only slower) rather than failing the run.
    """
    global _enabled
    import jax

    d = str(path) if path is not None else configured_dir()
    if d is None:
        return None
    try:
        Path(d).mkdir(parents=True, exist_ok=True)
        probe = Path(d) / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        import warnings

        from liftnn.errors import LiftnnWarning

        warnings.warn(f"the compile cache directory {d} cannot be written ({exc}); running "
                      f"without the persistent compile cache (set {ENV} to a writable "
                      f"directory, or {ENV}=off)", LiftnnWarning, stacklevel=2)
        return None
    # JAX opens its cache once, at the first compilation that asks for it: without a reset a
    # new directory (say, after the default one of the first ln.train) would be ignored
    from jax.experimental.compilation_cache import compilation_cache

    compilation_cache.reset_cache()
    jax.config.update("jax_compilation_cache_dir", d)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    _enabled = d
    return d


def active_dir() -> str | None:
    """The cache directory switched on in this process (None if off)."""
    return _enabled


_default_done = False


def ensure_default_cache() -> str | None:
    """Switch the cache on once per process with the environment's setting, unless the program
    configured JAX's cache directory itself (then that one is left alone)."""
    global _default_done
    if _default_done:
        return _enabled
    _default_done = True
    import jax

    if _enabled is None and not jax.config.jax_compilation_cache_dir:
        return enable_compile_cache()
    return _enabled
