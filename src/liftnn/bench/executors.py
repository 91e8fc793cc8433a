"""Where bench work units run: in this process, in a pool of spawned processes, or as Ray tasks.

Each executor takes `work` (a picklable top-level function unit -> plain-data result: the
runner's execute_unit) and yields (unit, result or exception) as units finish.  JAX is unsafe
after fork, so the pool spawns; a unit whose worker died is retried once in a fresh process.
See docs/benchmarks.md ("executors").

Shutting down: pool workers ignore SIGINT (a Ctrl-C reaches the whole process group; only the
parent decides) and exit by themselves within a second when their parent dies (a watchdog
thread polls the parent pid, so even a SIGKILLed bench leaves no worker behind).  When the
consumer stops early (KeyboardInterrupt, which the command line also raises on SIGTERM), closing
the generator terminates every worker of the pool (SIGTERM, then SIGKILL after a grace period)
and waits for them, with SIGINT and SIGTERM held off while it does so.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import signal
import threading
import time

from liftnn.errors import LiftnnError


def default_jobs() -> int:
    """Worker processes when --jobs is not given: min(2, cores)."""
    return max(1, min(2, os.cpu_count() or 1))


def iter_inprocess(work, units):
    """Units one after another in this process."""
    for u in units:
        yield u, work(u)


#: seconds a terminated worker gets before SIGKILL; how often a worker checks its parent
GRACE_S = 3.0
WATCH_S = 0.5


def _worker_init(parent_pid: int) -> None:
    """Pool worker start-up: ignore SIGINT and exit when the parent `parent_pid` is gone."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def watch():
        while True:
            time.sleep(WATCH_S)
            if os.getppid() != parent_pid:  # re-parented: the bench process died
                os._exit(1)

    threading.Thread(target=watch, name="liftnn-parent-watch", daemon=True).start()


@contextlib.contextmanager
def _signals_held():
    """Hold SIGINT and SIGTERM off while the workers are being stopped, so a second Ctrl-C cannot
    abandon them half-way: their handlers only note the signal, and the old handler gets it
    afterwards (main thread only, where Python handles signals; a no-op elsewhere)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught = []
    old = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(ValueError, OSError):
            old[sig] = signal.signal(sig, lambda signum, frame: caught.append((signum, frame)))
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
        if caught:
            signum, frame = caught[0]
            handler = old.get(signum)
            if callable(handler):
                handler(signum, frame)  # e.g. KeyboardInterrupt, now that the workers are gone


def _pool_processes(procs: dict, call_queue) -> list:
    """Every live worker process of a pool: those in its table and any the manager thread started
    since (replacement workers), recognised by their call queue."""
    from concurrent.futures.process import _process_worker

    seen = {p.pid: p for p in procs.values()}
    for p in mp.active_children():
        args = getattr(p, "_args", ())
        if getattr(p, "_target", None) is _process_worker and args and args[0] is call_queue:
            seen.setdefault(p.pid, p)
    return [p for p in seen.values() if p.is_alive()]


def _shutdown(ex, kill: bool) -> None:
    """Shut the pool down; with kill, stop its workers now (terminate, then SIGKILL) and reap them."""
    if not kill:
        ex.shutdown(wait=True)
        return
    with _signals_held():
        procs = getattr(ex, "_processes", None) or {}  # the dict the manager thread updates too
        call_queue = getattr(ex, "_call_queue", None)
        ex.shutdown(wait=False, cancel_futures=True)
        deadline = time.monotonic() + GRACE_S
        while True:
            alive = _pool_processes(procs, call_queue)
            if not alive:
                break
            late = time.monotonic() > deadline
            for p in alive:
                with contextlib.suppress(OSError, ValueError):
                    if late:
                        p.kill()
                    else:
                        p.terminate()
            for p in alive:
                p.join(timeout=0.2)
            if late and time.monotonic() > deadline + GRACE_S:
                break  # unkillable (e.g. uninterruptible I/O): nothing more this process can do


THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
BAYES_THREADS = "LIFTNN_BAYES_THREADS"  # liftnn.bayes.THREADS_ENV (not imported: workers stay light)


@contextlib.contextmanager
def _worker_threads(workers: int):
    """Share the cores among worker processes: BLAS / OpenMP / XLA threads per worker =
    cores // workers, so parallel units do not oversubscribe the machine (which would slow and
    blur every timing); with one core each, weight_decay="bayes" trains its two starts one after
    the other (liftnn.bayes.THREADS_ENV).  Variables the user set are left alone."""
    per = max(1, (os.cpu_count() or 1) // max(1, workers))
    saved = {k: os.environ.get(k) for k in (*THREAD_VARS, "XLA_FLAGS", BAYES_THREADS)}
    try:
        for k in THREAD_VARS:
            os.environ.setdefault(k, str(per))
        flags = os.environ.get("XLA_FLAGS", "")
        if per == 1 and "xla_cpu_multi_thread_eigen" not in flags:
            os.environ["XLA_FLAGS"] = (flags + " --xla_cpu_multi_thread_eigen=false").strip()
        if per == 1:
            os.environ.setdefault(BAYES_THREADS, "off")
        yield per
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def iter_pool(work, units, jobs: int, fresh: bool):
    """Units in spawned worker processes; a unit whose worker died is retried once, alone."""
    ctx = mp.get_context("spawn")
    workers = max(1, min(jobs, len(units)))
    with _worker_threads(workers):  # workers (spawned on demand, also later) read these at start
        yield from _pool_units(work, units, workers, fresh, ctx)


def _pool_units(work, units, workers, fresh, ctx):
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    retry = []
    init = {"initializer": _worker_init, "initargs": (os.getpid(),)}
    ex = ProcessPoolExecutor(max_workers=workers, mp_context=ctx,
                             max_tasks_per_child=1 if fresh else None, **init)
    kill = True
    try:
        futs = {ex.submit(work, u): u for u in units}
        for f in as_completed(futs):
            u = futs[f]
            try:
                yield u, f.result()
            except BrokenProcessPool:
                retry.append(u)
            except Exception as exc:  # noqa: BLE001 - e.g. unpicklable result
                yield u, exc
        kill = False
    finally:
        _shutdown(ex, kill)
    for u in retry:  # one fresh process each, so a unit that kills its worker hurts only itself
        ex = ProcessPoolExecutor(max_workers=1, mp_context=ctx, max_tasks_per_child=1, **init)
        kill = True
        try:
            f = ex.submit(work, u)
            try:
                yield u, f.result()
            except BrokenProcessPool:
                yield u, RuntimeError("the worker process died (out of memory, or a crash in native "
                                      "code)")
            except Exception as exc:  # noqa: BLE001
                yield u, exc
            kill = False
        finally:
            _shutdown(ex, kill)


def require_ray():
    """The ray module, or LiftnnError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise LiftnnError("--backend ray needs Ray, which is not installed: pip install "
                          "'liftnn[ray]' (the `ray` extra)") from None
    return ray


def iter_ray(work, units, jobs: int, fresh: bool):
    """Units as Ray tasks: on the cluster at RAY_ADDRESS if set, else a local Ray instance."""
    ray = require_ray()
    started = False
    if not ray.is_initialized():
        addr = os.environ.get("RAY_ADDRESS")
        kw = {} if addr else {"num_cpus": jobs}
        ray.init(address=addr, include_dashboard=False, log_to_driver=False, **kw)
        started = True
    task = ray.remote(num_cpus=1, max_calls=1 if fresh else 0)(work)
    refs = {task.remote(u): u for u in units}
    try:
        while refs:
            ready, _ = ray.wait(list(refs), num_returns=1)
            for r in ready:
                u = refs.pop(r)
                try:
                    yield u, ray.get(r)
                except Exception as exc:  # noqa: BLE001 - task or worker failure
                    yield u, exc
    finally:
        for r in refs:
            with contextlib.suppress(Exception):
                ray.cancel(r, force=True)
        if started:
            ray.shutdown()


