"""Scaling of one training problem over devices: time per iteration and peak memory vs devices, m.

    python docs/experiments/scaling_devices.py [--m 1000 10000 100000] [--devices 1 2 4]
                                                [--lm-max-m 10000] [--out docs/experiments]

For every (devices, m) it trains sin^2 (ln.datasets.load("sin2", n=m)) with an MLP 1-16-16-1
(tanh, P = 321 weights) in a fresh child process whose environment has
XLA_FLAGS=--xla_force_host_platform_device_count=<devices> (JAX fixes its devices when it starts),
with ``ln.train(..., devices=<devices>)`` (liftnn.sharding, docs/devices.md):

- alm: stop="none", max_inner=3, eps0 = eps_min = 1e-30 (every inner solve runs all its GN
  steps); time per GN iteration = the wall time of outer iterations 2..max_outer (history
  "time"; outer iteration 1 includes the compilation) divided by their GN iterations.
- lm (m <= --lm-max-m: its Jacobian, (m, P), is gathered to the host for the SVD): max_iter=4,
  time per iteration over iterations 2..4.

Peak memory is the child's peak resident set size (getrusage ru_maxrss: the JAX runtime, the
data, the compiled programs and every device's buffers).  On the CPU all forced host devices live
in that one process, so "per device" is the total divided by the devices; on a GPU each device's
own peak would be read from device.memory_stats().  The log-log slopes are least-squares fits of
log(time) and log(memory) against log(m) per device count.

Writes scaling_devices.csv and scaling_devices.md to --out.  On a CPU host the forced devices
share the same cores (XLA already multithreads one device), so the table shows the overhead of
sharding, not a speed-up; absolute times need real devices.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

ARCH = "1-16-16-1"


def child(method: str, devices: int, m: int) -> dict:
    """One measurement (runs inside the child process)."""
    import resource

    import jax

    import liftnn as ln

    data = ln.datasets.load("sin2", n=m)
    model = ln.MLP(ARCH, activation="tanh")
    base = _rss_mb()
    if method == "alm":
        opts = {"max_outer": 3, "max_inner": 3, "eps0": 1e-30, "eps_min": 1e-30, "stop": "none"}
    else:
        opts = {"max_iter": 4, "gtol": 0.0}
    t0 = time.perf_counter()
    r = ln.train(model, data, method=method, seed=0, devices=devices, **opts)
    wall = time.perf_counter() - t0
    h = r.history
    if method == "alm":
        iters = sum(e["gn_iters"] for e in h[2:])
    else:
        iters = len(h) - 2
    per = (h[-1]["time"] - h[1]["time"]) / iters if iters > 0 else math.nan
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # kB on Linux
    return {"method": method, "devices": devices, "jax_devices": len(jax.devices()), "m": m,
            "P": int(model.n_params), "iters_timed": iters, "time_per_iter_s": per,
            "wall_s": wall, "peak_rss_mb": peak, "peak_rss_per_device_mb": peak / devices,
            "baseline_rss_mb": base, "status": r.status,
            "linear_solver": r.get("linear_solver", "")}


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return float(line.split()[1]) / 1024.0
    return math.nan


def measure(method: str, devices: int, m: int, timeout: float) -> dict:
    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
           "JAX_PLATFORMS": os.environ.get("JAX_PLATFORMS", "cpu"),
           "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    cmd = [sys.executable, __file__, "--child", method, str(devices), str(m)]
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout,
                              check=False)
    except subprocess.TimeoutExpired:
        return {"method": method, "devices": devices, "m": m, "status": f"timeout {timeout:g} s"}
    lines = [s for s in proc.stdout.splitlines() if s.startswith("RESULT ")]
    if proc.returncode or not lines:
        tail = proc.stderr.strip().splitlines()[-1:] or ["?"]
        return {"method": method, "devices": devices, "m": m,
                "status": f"failed (rc {proc.returncode}): {tail[0][:120]}"}
    return json.loads(lines[-1][len("RESULT "):])


def slope(rows: list[dict], key: str) -> float:
    """Least-squares slope of log(key) against log(m)."""
    pts = [(math.log(r["m"]), math.log(r[key])) for r in rows
           if isinstance(r.get(key), float) and r[key] > 0]
    if len(pts) < 2:
        return math.nan
    mx = sum(p[0] for p in pts) / len(pts)
    my = sum(p[1] for p in pts) / len(pts)
    sxx = sum((p[0] - mx) ** 2 for p in pts)
    return sum((p[0] - mx) * (p[1] - my) for p in pts) / sxx


def markdown(rows: list[dict], devices: list[int], ms: list[int]) -> str:
    out = []
    for method, what in (("alm", "GN iteration"), ("lm", "iteration")):
        sel = [r for r in rows if r["method"] == method]
        if not sel:
            continue
        out.append(f"### {method}: time per {what} [s] / peak RSS [MB] (per device = total / "
                   f"devices)\n")
        out.append("| m | " + " | ".join(f"{d} device{'s' if d > 1 else ''}" for d in devices)
                   + " |")
        out.append("|---:|" + "---:|" * len(devices))
        for m in ms:
            cells = []
            for d in devices:
                r = next((x for x in sel if x["devices"] == d and x["m"] == m), None)
                if r is None:
                    cells.append("-")
                elif "time_per_iter_s" not in r:
                    cells.append(r["status"])
                else:
                    cells.append(f"{r['time_per_iter_s']:.3g} s / {r['peak_rss_mb']:.0f} MB "
                                 f"({r['peak_rss_per_device_mb']:.0f})")
            if any(c != "-" for c in cells):
                out.append(f"| {m:.0e} | " + " | ".join(cells) + " |")
        out.append("| log-log slope vs m (time, memory) | " + " | ".join(
            f"{slope([r for r in sel if r['devices'] == d], 'time_per_iter_s'):.2f}, "
            f"{slope([r for r in sel if r['devices'] == d], 'peak_rss_mb'):.2f}"
            for d in devices) + " |")
        out.append("")
    return "\n".join(out)


def write(rows: list[dict], a, t0: float) -> str:
    """scaling_devices.csv and scaling_devices.md in a.out (rewritten after every cell)."""
    a.out.mkdir(parents=True, exist_ok=True)
    keys = ["method", "devices", "m", "P", "iters_timed", "time_per_iter_s", "peak_rss_mb",
            "peak_rss_per_device_mb", "baseline_rss_mb", "wall_s", "status", "linear_solver"]
    with open(a.out / "scaling_devices.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    text = markdown(rows, a.devices, a.m)
    (a.out / "scaling_devices.md").write_text(
        f"# Scaling over devices: sin2, tanh {ARCH}\n\n"
        f"Each cell is one fresh process with XLA_FLAGS="
        f"--xla_force_host_platform_device_count=<devices> (CPU host devices sharing the same "
        f"cores); wall time so far {time.perf_counter() - t0:.0f} s.\n\n" + text + "\n")
    return text


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--m", type=int, nargs="+", default=[1000, 10000, 100000])
    ap.add_argument("--devices", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--methods", nargs="+", default=["alm", "lm"], choices=["alm", "lm"])
    ap.add_argument("--lm-max-m", type=int, default=10000)
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds per measurement")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent)
    ap.add_argument("--child", nargs=3, metavar=("METHOD", "DEVICES", "M"), help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        print("RESULT " + json.dumps(child(a.child[0], int(a.child[1]), int(a.child[2]))),
              flush=True)
        return
    rows = []
    t0 = time.perf_counter()
    text = ""
    for method in a.methods:
        for m in a.m:
            if method == "lm" and m > a.lm_max_m:
                continue
            for d in a.devices:
                r = measure(method, d, m, a.timeout)
                rows.append(r)
                print(json.dumps(r), flush=True)
                text = write(rows, a, t0)
    print(text)


if __name__ == "__main__":
    main()
