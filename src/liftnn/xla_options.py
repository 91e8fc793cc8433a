"""The XLA options of liftnn's compiled training programs, and `jit`, jax.jit with them.

On the CPU a short training is mostly compilation (docs/benchmarks.md, "What a first call
compiles"), and XLA's newer fusion emitters compile liftnn's loops (many small fusions in a
while_loop) about twice as slowly as the classic emitters, for loops that run no faster.  `jit`
compiles liftnn's programs with

- ``xla_cpu_use_fusion_emitters = False``: the classic loop emitters;
- ``xla_llvm_disable_expensive_passes = True``: LLVM without its most expensive passes.

Measured cold (fresh process, LIFTNN_COMPILE_CACHE=off, 2-core CPU, 10 seeds in one call;
docs/benchmarks.md "XLA options"): the lifted inner solve of sin^2 ReLU 1-16-16-1 n = 40
compiled in 1.05-1.71 s with the defaults and 0.73-0.78 s with these options, diabetes
10-16-16-1 1.58-1.67 -> 0.61-0.73 s with the loop 10 % faster; Adam's and lm's programs 25-35 %
faster to compile.  The options change floating-point rounding (a different but equally exact
order of operations), not the algorithms.

Only the CPU backend gets them (other backends compile as JAX decides).  LIFTNN_XLA_OPTIONS=off
compiles with XLA's defaults.  The weight initialisers keep plain jax.jit: a seed's initial
weights stay the same bits whatever this module does.
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
