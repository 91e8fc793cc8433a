"""One BLAS thread for the host linear algebra of the classical solvers (the guard against
oversubscription between numpy's BLAS and XLA's CPU thread pool).

The classical solvers (liftnn.solvers.driver.run: cg, bfgs, lbfgs, newton, newton-cg, gn, lm and
the generalised Gauss-Newton) alternate jitted JAX evaluations, which run on XLA's CPU thread
pool, with numpy / scipy factorisations (SVD, Cholesky, eigh) on OpenBLAS's threads.  Both pools
size themselves to every core and keep their idle workers spinning for a while after a call, so
each pool's work runs against the other's spinning threads: on a busy 2-core machine gn on
breast_cancer 30-16-2 took 1.46 s per iteration with OpenBLAS's default threads and 0.18 s with
one thread, identical iterates (a Cholesky factorisation of 530 x 530: 3 ms alone).  It is the
cause of the rare huge timings of lm: `liftnn train --problem friedman1 --arch 10-16-16-1
--method lm` took 379.6 s with OpenBLAS's default threads on that busy machine (410.8 s in the
issue), 19.4 s with OPENBLAS_NUM_THREADS=1 and 21.0 s under this guard, the same 218 iterations
and train MSE each time.

`limit_blas()` caps the BLAS pool (threadpoolctl, a dependency of liftnn)
at LIFTNN_BLAS_THREADS threads (default 1; 0 or "off": no cap) for the duration of a solve.  The
systems the classical methods factor (n up to a few thousand) lose little to one thread.
Without threadpoolctl the guard does nothing; set OPENBLAS_NUM_THREADS=1 before starting Python
instead.
"""

from __future__ import annotations

import contextlib
import os
import threading

ENV = "LIFTNN_BLAS_THREADS"


def blas_threads() -> int | None:
    """The cap from LIFTNN_BLAS_THREADS (default 1); None when switched off (0, "off")."""
    v = os.environ.get(ENV, "1").strip().lower()
    if v in ("0", "off", "none", ""):
        return None
    try:
        n = int(v)
    except ValueError:
        return 1
    return n if n > 0 else None


@contextlib.contextmanager
def limit_blas():
    """Within the block, BLAS uses at most blas_threads() threads (threadpoolctl); a no-op when
    switched off, when threadpoolctl is missing, or when nested in another limit_blas."""
    n = blas_threads()
    if n is None or getattr(_state, "active", False):
        yield
        return
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield
        return
    _state.active = True
    try:
        with threadpool_limits(limits=n, user_api="blas"):
            yield
    finally:
        _state.active = False


_state = threading.local()  # .active: inside a limit_blas block in this thread
