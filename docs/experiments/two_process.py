"""One training problem over two processes on this machine, with JAX's own distributed runtime.

    python docs/experiments/two_process.py            # starts both processes and waits for them

The launcher starts two copies of this script (`--process-id 0` and `--process-id 1`), each
with one CPU device, that join through ``jax.distributed.initialize`` with a coordinator on the
loopback address 127.0.0.1 (process 0 hosts it).  jax.devices() then lists both processes'
devices; ``ln.train(..., devices=2)`` splits the samples over them, so each process holds half of
X, Y, the lifted states and the multipliers, and the sums over samples are all-reduced between
the processes by XLA's CPU collectives (gloo).  Both processes run the same program (SPMD) on the
same data and get the same, replicated weights.

Each process also trains the same problem on its own device (devices=None) and prints the
largest difference of the weights and of the per-iteration losses; the launcher checks that they
agree to 1e-10 (the alm run uses damping 1e-4, as in tests/test_sharding.py: with the default
1e-9 the Gauss-Newton step amplifies any change in the order of the sample sums).  On several
machines the same script runs with --coordinator <host0>:<port> --process-id <i> on each host.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time

METHODS = (("alm", {"max_outer": 3, "damping": 1e-4}),
           ("lm", {"max_iter": 5}),
           ("adam", {"max_iter": 30, "lr": 1e-2, "patience": None}))


def worker(coordinator: str, process_id: int, num_processes: int) -> None:
    import jax

    jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes,
                               process_id=process_id)
    import numpy as np

    import liftnn as ln

    data = ln.datasets.load("sin2", n=64)
    model = ln.MLP("1-8-8-1", activation="tanh")
    out = {"process": jax.process_index(), "processes": jax.process_count(),
           "global_devices": len(jax.devices()), "local_devices": len(jax.local_devices())}
    for method, opts in METHODS:
        t0 = time.perf_counter()
        many = ln.train(model, data, method=method, seed=0, devices=num_processes, **opts)
        t1 = time.perf_counter()
        one = ln.train(model, data, method=method, seed=0, **opts)
        la = np.array([h["loss"] for h in many.history])
        lb = np.array([h["loss"] for h in one.history])
        out[method] = {
            "max_dx": float(np.max(np.abs(np.asarray(many.x) - np.asarray(one.x)))),
            "max_rel_dloss": float(np.max(np.abs(la - lb) / np.abs(lb))) if la.shape == lb.shape
            else float("inf"),
            "iterations": len(la) - 1, "loss": float(la[-1]), "sharded_s": t1 - t0}
    print("RESULT " + json.dumps(out), flush=True)
    jax.distributed.shutdown()


def launch(num_processes: int = 2, timeout: float = 600.0) -> list[dict]:
    with socket.socket() as s:  # a free port on the loopback interface
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "JAX_PLATFORMS": "cpu",
           "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    env.pop("XLA_FLAGS", None)  # one CPU device per process
    procs = [subprocess.Popen([sys.executable, __file__, "--coordinator", f"127.0.0.1:{port}",
                               "--process-id", str(i), "--num-processes", str(num_processes)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(num_processes)]
    results = []
    for i, p in enumerate(procs):
        try:
            stdout, stderr = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise SystemExit(f"process {i} did not finish in {timeout:g} s") from None
        lines = [s for s in stdout.splitlines() if s.startswith("RESULT ")]
        if p.returncode or not lines:
            raise SystemExit(f"process {i} failed (rc {p.returncode}):\n{stderr[-3000:]}")
        results.append(json.loads(lines[-1][len("RESULT "):]))
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--coordinator", help="host:port of process 0 (worker mode)")
    ap.add_argument("--process-id", type=int)
    ap.add_argument("--num-processes", type=int, default=2)
    a = ap.parse_args()
    if a.coordinator is not None:
        worker(a.coordinator, a.process_id, a.num_processes)
        return
    results = launch(a.num_processes)
    for r in results:
        print(json.dumps(r))
    ok = all(r["global_devices"] == a.num_processes and r[m]["max_dx"] <= 1e-10
             and r[m]["max_rel_dloss"] <= 1e-10 for r in results for m, _ in METHODS)
    print("two processes agree with one device to 1e-10:", ok)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
