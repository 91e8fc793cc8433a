"""Compile time versus loop time: how much of a training call was JAX tracing and XLA compilation.

A user pays compilation on the first call of every shape; a benchmark that reports only wall time
hides whether a method is slow or merely compiles a lot (docs/benchmarks.md, "Compile time").  `measure()` listens to
JAX's own monitoring events while a block runs and adds up the durations of

- tracing a function to a jaxpr            (/jax/core/compile/jaxpr_trace_duration),
- lowering it to an MLIR module             (/jax/core/compile/jaxpr_to_mlir_module_duration),
- XLA's backend compilation, or reading the executable from the persistent cache instead
  (/jax/core/compile/backend_compile_duration: JAX times both under this event; the cache read
  alone is also reported, /jax/compilation_cache/cache_retrieval_time_sec, and kept apart as
  cache_read_s, not added again),

and counts persistent-cache hits (/jax/compilation_cache/cache_hits) and XLA compilations
(backend events that were not cache hits).  The
listener is registered once per process; nested and consecutive measurements each see the events
of their own block, and the events of every thread (liftnn.bayes's starts side by side,
lm_compiled.compile_ahead's background compilation), so compile_s counts seconds spent compiling,
which may overlap the training.  liftnn.train reports the result as compile_s (at most the
wall time; loop_s = time_s - compile_s) in every Result.
"""

from __future__ import annotations

import contextlib
import threading

_DURATIONS = {
    "/jax/core/compile/jaxpr_trace_duration": "trace_s",
    "/jax/core/compile/jaxpr_to_mlir_module_duration": "lower_s",
    "/jax/core/compile/backend_compile_duration": "backend_s",
    "/jax/compilation_cache/cache_retrieval_time_sec": "cache_read_s",
}
_COUNTS = {
    "/jax/compilation_cache/cache_hits": "cache_hits",
    "/jax/compilation_cache/compile_requests_use_cache": "cache_requests",
}
_lock = threading.Lock()
_active: list[dict] = []
_registered = False


def _on_duration(event: str, duration: float, **_kw) -> None:
    key = _DURATIONS.get(event)
    if key is None:
        return
    with _lock:
        for acc in _active:
            acc[key] += float(duration)
            if key == "backend_s":
                acc["compiles"] += 1


def _on_event(event: str, **_kw) -> None:
    key = _COUNTS.get(event)
    if key is None:
        return
    with _lock:
        for acc in _active:
            acc[key] += 1


def _register() -> None:
    global _registered
    if _registered:
        return
    from jax import monitoring

    monitoring.register_event_duration_secs_listener(_on_duration)
    monitoring.register_event_listener(_on_event)
    _registered = True


def empty() -> dict:
    """A measurement with nothing in it (the keys `measure` fills)."""
    return {"trace_s": 0.0, "lower_s": 0.0, "backend_s": 0.0, "cache_read_s": 0.0,
            "compiles": 0, "cache_hits": 0, "cache_requests": 0}


def compile_seconds(acc: dict) -> float:
    """Seconds a measured block spent tracing, lowering, compiling or reading compiled code
    (the cache reads are inside backend_s)."""
    return acc["trace_s"] + acc["lower_s"] + acc["backend_s"]


def compilations(acc: dict) -> int:
    """XLA compilations in a measured block (backend events less persistent-cache hits)."""
    return max(acc["compiles"] - acc["cache_hits"], 0)


@contextlib.contextmanager
def measure():
    """with measure() as acc: ... -- acc (see `empty`) holds the block's compilation events."""
    _register()
    acc = empty()
    with _lock:
        _active.append(acc)
    try:
        yield acc
    finally:
        with _lock:
            del _active[next(i for i, a in enumerate(_active) if a is acc)]  # by identity
