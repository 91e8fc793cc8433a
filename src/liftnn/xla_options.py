"""The XLA options of liftnn's compiled training programs, and `jit`, jax.jit with them.

On the CPU a short training is mostly compilation (docs/benchmarks.md, "What a first call
compiles"), and XLA's newer fusion emitters compile liftnn's loops (many small fusions in a
while_loop) about twice as slowly as the classic emitters, for loops that run no faster.  `jit`
compiles liftnn's programs with

- ``xla_cpu_use_fusion_emitters = False``: the classic loop emitters;
- ``xla_llvm_disable_expensive_passes = True``: LLVM without its most expensive passes.

Measured cold (docs/benchmarks.md "XLA options": fresh processes, LIFTNN_COMPILE_CACHE=off,
10 seeds in one call, 2-core CPU): sin^2 ReLU 1-16-16-1 n = 40 alm 0.23-0.30 -> 0.20 s per run
(the inner solve's compilation 1.05-1.71 -> 0.72 s), Adam 0.13-0.15 -> 0.10, lm 0.20 -> 0.13;
diabetes 10-16-16-1 alm 0.98-1.08 -> 0.68 with the loop itself faster.  The options reorder
floating-point operations (rounding), they do not approximate.

Only the CPU backend gets them (other backends compile as JAX decides).  LIFTNN_XLA_OPTIONS=off
compiles with XLA's defaults.  The weight initialisers keep plain jax.jit: a seed's initial
weights stay the same bits whatever this module does (the uniform ones compile their integer
random bits at optimisation level 0, which cannot change them: liftnn.models.mlp.BITS_OPTIONS).
"""

from __future__ import annotations

import os

import jax

#: the options `jit` passes on the CPU (module docstring)
CPU_OPTIONS = {"xla_cpu_use_fusion_emitters": False, "xla_llvm_disable_expensive_passes": True}
#: "off" (or "0", "false", "no"): XLA's default options for liftnn's programs too
ENV = "LIFTNN_XLA_OPTIONS"


def compiler_options() -> dict | None:
    """The compiler options for a program compiled now: CPU_OPTIONS on the CPU backend unless
    LIFTNN_XLA_OPTIONS is off, else None (XLA's defaults)."""
    if os.environ.get(ENV, "").strip().lower() in ("off", "0", "false", "no"):
        return None
    if jax.default_backend() != "cpu":
        return None
    return dict(CPU_OPTIONS)


def jit(fun, **kwargs):
    """jax.jit(fun, **kwargs) with `compiler_options()` (kwargs may not set compiler_options)."""
    if "compiler_options" in kwargs:
        raise TypeError("liftnn.xla_options.jit sets compiler_options itself")
    return jax.jit(fun, compiler_options=compiler_options(), **kwargs)
