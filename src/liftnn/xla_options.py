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

The lifted inner solve (liftnn.lifted.inner) is compiled at backend optimisation level 1
(INNER_SOLVE_LEVEL) instead of 2: measured 2026-12-07 in alternating fresh processes, its
compilation fell from 0.88-1.19 to 0.67-0.81 s on sin^2 ReLU 1-16-16-1 n = 40 (the 10-seed call
2.05-2.67 -> 1.76-2.00 s) and 0.71-0.76 -> 0.58-0.70 s on diabetes 10-16-16-1, with its loops
no slower (diabetes 10 seeds warm 7.9-8.6 -> 7.5-7.9 s, spirals 0.57 -> 0.54-0.56 s per run,
digits 2.31 -> 2.20 s per run).  lm's and Adam's loops ran slower at level 1 (sin^2 lm warm
0.13 -> 0.16-0.19 s), so they keep the default.

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
#: the backend optimisation level of the lifted inner solve (liftnn.lifted.inner.compiled): its
#: compilation 0.88-1.19 -> 0.67-0.81 s on sin^2 ReLU 1-16-16-1 with the loops no slower
#: (module docstring)
INNER_SOLVE_LEVEL = 1
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


def jit(fun, optimization_level: int | None = None, **kwargs):
    """jax.jit(fun, **kwargs) with `compiler_options()` (kwargs may not set compiler_options);
    optimization_level: XLA's backend optimisation level for this program where the options
    apply (the CPU; None: XLA's default, 2)."""
    if "compiler_options" in kwargs:
        raise TypeError("liftnn.xla_options.jit sets compiler_options itself")
    opts = compiler_options()
    if opts is not None and optimization_level is not None:
        opts["xla_backend_optimization_level"] = int(optimization_level)
    return jax.jit(fun, compiler_options=opts, **kwargs)
