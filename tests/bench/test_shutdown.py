"""SIGINT / SIGTERM to a running `liftnn bench --jobs 2`: the workers stop within seconds, every
finished row is kept, results.csv stays readable and a rerun into the same --out completes the
suite with no duplicate row (liftnn.bench.executors; the CLI's signal handlers in liftnn.cli).

The bench runs as a real subprocess (`python -m liftnn.cli`) on a tiny suite whose units take a
second or two each, so a signal lands while workers are busy and rows are already written.
Children are found by a /proc scan by parent pid (psutil when installed).
"""

from __future__ import annotations

import csv
import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(
    os.name != "posix" or not (Path("/proc").is_dir() or importlib.util.find_spec("psutil")),
    reason="POSIX signals, and /proc or psutil to find the child processes")

SRC = Path(__file__).resolve().parents[2] / "src"

SUITE = """
[suite]
name = "stop"
seeds = 1
success_below = 0.4

[problem]
dataset = "sin2"
kw = { noise = 0.1 }

[model]
init = "glorot_uniform"

[[cells]]
arch = "1-4-1"
activation = "tanh"
n = [8, 9, 10, 11, 12, 13]

[methods]
adam = { max_iter = 1500, patience = 100000 }
"""


def children(pid: int) -> list[int]:
    """Process ids whose parent is `pid` (psutil, else a /proc scan)."""
    try:
        import psutil
    except ImportError:
        out = []
        for d in Path("/proc").iterdir():
            if d.name.isdigit():
                try:
                    stat = (d / "stat").read_text()
                except OSError:
                    continue
                fields = stat.rsplit(")", 1)[1].split()
                if int(fields[1]) == pid and fields[0] != "Z":
                    out.append(int(d.name))
        return out
    try:
        return [c.pid for c in psutil.Process(pid).children()]
    except psutil.NoSuchProcess:
        return []


def alive(pid: int) -> bool:
    """True while process `pid` exists and is not a zombie."""
    if not Path("/proc").is_dir():
        import psutil

        return psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def rows(out: Path) -> list[dict]:
    p = out / "results.csv"
    if not p.exists():
        return []
    with open(p, newline="") as fh:
        return list(csv.DictReader(fh))


def bench(suite: Path, out: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(SRC), *filter(None, [os.environ.get("PYTHONPATH")])]),
        "LIFTNN_COMPILE_CACHE": "off"}
    return subprocess.Popen([sys.executable, "-m", "liftnn.cli", "bench", str(suite), "--jobs",
                             "2", "--out", str(out)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def test_closing_the_pool_early_stops_its_workers_at_once():
    """The executor alone: a consumer that stops after the first result (what the runner does on
    KeyboardInterrupt) leaves no worker running, though the others sleep for a minute."""
    import multiprocessing as mp

    from liftnn.bench import executors

    it = executors.iter_pool(time.sleep, [0.0, 60.0, 60.0, 60.0], jobs=2, fresh=False)
    unit, res = next(it)
    assert unit == 0.0 and res is None
    workers = [p.pid for p in mp.active_children()]
    assert len(workers) == 2
    t0 = time.monotonic()
    it.close()
    assert time.monotonic() - t0 < executors.GRACE_S + 2
    assert not [p for p in mp.active_children() if p.pid in workers]
    assert not [pid for pid in workers if alive(pid)]


@pytest.mark.slow  # two real benches, interrupted and rerun: minutes on a loaded machine
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_stops_workers_keeps_rows_and_rerun_completes(tmp_path, sig):
    suite = tmp_path / "stop.toml"
    suite.write_text(SUITE)
    out = tmp_path / "out"
    proc = bench(suite, out)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and proc.poll() is None and not rows(out):
            time.sleep(0.2)  # wait for the first finished row: workers are up and busy
        assert proc.poll() is None, "the bench finished before it could be interrupted:\n" + \
            proc.stdout.read()
        kids = children(proc.pid)
        assert len(kids) >= 2, kids  # two workers (and the resource tracker)
        before = len(rows(out))
        t0 = time.monotonic()
        proc.send_signal(sig)
        log, _ = proc.communicate(timeout=30)
        stopped = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, log
    assert "interrupted" in log
    time.sleep(1.0)  # the resource tracker exits when its pipe closes
    left = [k for k in kids if alive(k)]
    assert not left, f"child processes {left} survived {sig.name}"
    assert stopped < 15, f"stopping took {stopped:.1f} s"
    kept = rows(out)
    assert len(kept) >= before >= 1  # finished rows are kept, and the file parses
    assert all(r["status"] and r["train_mse"] for r in kept)
    keys = [(r["cell"], r["method"], r["seed"]) for r in kept]
    assert len(set(keys)) == len(keys)

    rerun = bench(suite, out)
    log2, _ = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, log2
    final = rows(out)
    keys = [(r["cell"], r["method"], r["seed"]) for r in final]
    assert len(keys) == 6 and len(set(keys)) == 6, keys  # every run once, none twice
    assert {k for k in keys} >= {(r["cell"], r["method"], r["seed"]) for r in kept}


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_cli_handlers_turn_sigterm_and_an_ignored_sigint_into_keyboardinterrupt(sig):
    """liftnn.cli.install_signal_handlers: SIGTERM raises KeyboardInterrupt, and so does SIGINT
    in a process started with SIGINT ignored (a background job of a script)."""
    code = ("import os, signal\n"
            "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
            "from liftnn.cli import install_signal_handlers\n"
            "install_signal_handlers()\n"
            "try:\n"
            f"    os.kill(os.getpid(), signal.{sig})\n"
            "    import time; time.sleep(5)\n"
            "except KeyboardInterrupt:\n"
            "    print('interrupted')\n")
    res = _python(code)
    assert res.returncode == 0 and res.stdout.strip() == "interrupted", res.stderr


def _python(code: str) -> subprocess.CompletedProcess:
    """Run `code` in a fresh interpreter on this checkout's liftnn (no compile cache)."""
    env = {**os.environ, "PYTHONPATH": str(SRC), "LIFTNN_COMPILE_CACHE": "off"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          timeout=120, check=False)


def test_workers_exit_when_their_parent_is_killed():
    """A parent that dies by SIGKILL (no cleanup at all) leaves no pool worker behind: each
    worker's watchdog sees it re-parented and exits within about a second."""
    code = ("import multiprocessing as mp, os, time\n"
            "from liftnn.bench import executors\n"
            "it = executors.iter_pool(time.sleep, [0.0, 60.0, 60.0], jobs=2, fresh=False)\n"
            "next(it)\n"
            "print(' '.join(str(p.pid) for p in mp.active_children()), flush=True)\n"
            "os.kill(os.getpid(), 9)\n")
    res = _python(code)
    assert res.returncode == -signal.SIGKILL, res.stderr
    workers = [int(t) for t in res.stdout.split()]
    assert len(workers) == 2
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(alive(w) for w in workers):
        time.sleep(0.2)
    assert not [w for w in workers if alive(w)]


def test_workers_with_one_core_each_train_the_bayes_starts_one_after_the_other(monkeypatch):
    from liftnn import bayes
    from liftnn.bench import executors

    assert executors.BAYES_THREADS == bayes.THREADS_ENV
    monkeypatch.delenv(bayes.THREADS_ENV, raising=False)
    with executors._worker_threads(os.cpu_count() or 1) as per:
        assert per == 1 and os.environ[bayes.THREADS_ENV] == "off"
        assert not bayes.parallel_starts()
    assert bayes.THREADS_ENV not in os.environ  # restored
    monkeypatch.setenv(bayes.THREADS_ENV, "on")  # the user's choice is left alone
    with executors._worker_threads(os.cpu_count() or 1):
        assert os.environ[bayes.THREADS_ENV] == "on"
