"""The bench harness: suites run end to end, resume without duplicates, record crashes, refuse bad
input before any run, and `liftnn report DIR` rebuilds the report from the files alone.

Fast tests use two tiny in-process methods registered for the test ("fake-gd": a few plain
gradient steps; "fake-crash": raises for seed 1), so they do not depend on the solver modules;
the tests marked with the real methods skip when those are not importable.
"""

from __future__ import annotations

import csv
import dataclasses
import importlib
import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import liftnn as ln
from liftnn.bench import freerun, methods, peers, report, runner, store, suite
from liftnn.bench import stats as bench_stats
from liftnn.cli import app
from liftnn.errors import LiftnnError
from liftnn.methods import Method
from liftnn.solvers.result import Result

FAKE_FITS: dict = {}  # the fake methods' fit, looked up at call time (tests may spy on it)
CALLS = {"n": 0, "interrupt_at": None}


def _np_loss(problem, params) -> float:
    """The tiny networks' MSE in NumPy (tanh hidden layers), so the fake methods compile nothing."""
    Z = np.asarray(problem.X)
    for j, (W, b) in enumerate(params):
        Z = Z @ np.asarray(W).T + (np.asarray(b) if b is not None else 0.0)
        if j < len(params) - 1:
            Z = np.tanh(Z)
    return float(np.mean((Z - np.asarray(problem.Y)) ** 2))


def _fake_fit(problem, params0, *, method, steps=15, lr=0.05, **_):
    """A few accepted random-search steps: a cheap stand-in for a solver, with a history."""
    CALLS["n"] += 1
    if CALLS["interrupt_at"] is not None and CALLS["n"] >= CALLS["interrupt_at"]:
        raise KeyboardInterrupt
    rng = np.random.default_rng(0)
    params = [(np.asarray(W), None if b is None else np.asarray(b)) for W, b in params0]
    loss = _np_loss(problem, params)
    hist = []
    for k in range(int(steps)):
        trial = [(W + lr * rng.standard_normal(W.shape), b) for W, b in params]
        f = _np_loss(problem, trial)
        if f < loss:
            params, loss = trial, f
        hist.append({"iter": k + 1, "loss": loss, "time": 0.001 * (k + 1)})
    return Result(params=params, fun=loss, nit=int(steps), nfev=int(steps), status="max_iter",
                  success=False, message=f"{steps} steps", history=hist)


def _crash_fit(problem, params0, *, method, **_):
    # seed 1's initial weights differ from seed 0's; crash on the second initialisation seen
    if np.array_equal(np.asarray(params0[0][0]), np.asarray(problem.model.init(1)[0][0])):
        raise RuntimeError("boom: this method crashed")
    return _fake_fit(problem, params0, method=method, steps=3)


@pytest.fixture
def fake_methods(monkeypatch):
    # "vectorised" (has fit_many): one unit per cell and method; fake-loop: one unit per seed
    def fit(problem, params0, *, method, **o):
        return (_crash_fit if method == "fake-crash" else _fake_fit)(problem, params0,
                                                                      method=method, **o)

    def fit_many(problem, p0s, *, method, **o):
        return [FAKE_FITS["fit"](problem, p, method=method, **o) for p in p0s]

    def fit_loop(problem, params0, *, method, **o):
        return _fake_fit(problem, params0, method=method)

    FAKE_FITS.update(fit=fit)
    methods = importlib.import_module("liftnn.train").METHODS
    for name in ("fake-gd", "fake-crash"):
        monkeypatch.setitem(methods, name, Method(
            name, lambda pr, p, _n=name, **o: FAKE_FITS["fit"](pr, p, method=_n, **o),
            lambda pr, ps, _n=name, **o: fit_many(pr, ps, method=_n, **o), "fake",
            lambda: ["steps", "lr"]))
    monkeypatch.setitem(methods, "fake-loop", Method(
        "fake-loop", lambda pr, p, **o: fit_loop(pr, p, method="fake-loop", **o), None, "fake",
        lambda: ["steps", "lr"]))
    # a peer whose library is missing: listed, skipped with the reason
    monkeypatch.setitem(peers.PEERS, "fake-missing",
                        dataclasses.replace(peers.PEERS["scipy-lm"], name="fake-missing"))
    real_available = peers.available
    monkeypatch.setattr(peers, "available", lambda name: (
        (False, "its library liftnn_no_such_module_for_tests is not installed")
        if name == "fake-missing" else real_available(name)))
    # the fake methods compile nothing; keep JAX's caches for the evaluation code around them
    monkeypatch.setattr(runner, "CLEAR_CACHES", False)
    CALLS.update(n=0, interrupt_at=None)
    yield
    CALLS.update(n=0, interrupt_at=None)


TINY = """
[suite]
name = "tiny"
seeds = 2
success_below = 0.4
{extra_suite}

[problem]
dataset = "sin2"
kw = {{ noise = 0.1 }}

[model]
init = "glorot_uniform"

[[cells]]
arch = "1-4-1"
activation = "tanh"
n = [8, 12]

[methods]
{methods}

[quick]
suite = {{ seeds = 1 }}
max_cells = 1
"""


def tiny(tmp_path, methods='fake-gd = { steps = 15 }', extra_suite="", name="tiny.toml") -> Path:
    p = tmp_path / name
    p.write_text(TINY.format(methods=methods, extra_suite=extra_suite))
    return p


def rows_of(out: Path) -> list[dict]:
    with open(out / "results.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def keys_of(rows) -> list[tuple]:
    return [(r["cell"], r["method"], int(r["seed"])) for r in rows]


def run(path, out, report=False, **kw):
    s = suite.resolve(path, **{k: kw.pop(k) for k in list(kw) if k in ("seeds", "methods", "quick")})
    return s, runner.run_suite(s, out, jobs=kw.pop("jobs", 1), report=report, **kw)


# --- end to end --------------------------------------------------------------------------------
def test_tiny_suite_end_to_end_and_report_rebuild(tmp_path, fake_methods):
    out = tmp_path / "out"
    s, summary = run(tiny(tmp_path), out, report=True)
    rows = rows_of(out)
    assert summary.written == 4 and len(rows) == 4
    assert sorted(keys_of(rows)) == sorted(
        (c.label, "fake-gd", k) for c in s.cells for k in (0, 1))
    assert list(rows[0])[:16] == store.BASE_COLUMNS
    r = rows[0]
    assert r["suite"] == "tiny" and r["init"] == "glorot_uniform" and r["arch"] == "1-4-1"
    assert r["status"] == "max_iter" and r["iterations"] == "15"
    assert float(r["train_mse"]) > 0 and float(r["time_s"]) > 0
    assert r["success"] == ("true" if float(r["train_mse"]) < 0.4 else "false")
    for f in ("report.md", "report.html", "histories.jsonl", "suite.json", "mse_hist.png",
              "convergence_1.png"):
        assert (out / f).exists(), f
    assert list(out.glob("fits_*.png"))
    html = (out / "report.html").read_text()
    assert "<table>" in html and "<img src='mse_hist.png'" in html
    md = (out / "report.md").read_text()
    assert "| tanh 1-4-1 n=8 | fake-gd |" in md
    meta = json.loads((out / "suite.json").read_text())
    assert meta["suite"] == "tiny" and meta["hash"] == s.config_hash()
    # histories: one record per run, one per cell
    recs = [json.loads(line) for line in (out / "histories.jsonl").read_text().splitlines()]
    assert sum(r["type"] == "run" for r in recs) == 4 and sum(r["type"] == "cell" for r in recs) == 2
    # `liftnn report DIR` rebuilds everything from the files
    for f in ["report.md", "report.html", *[p.name for p in out.glob("*.png")]]:
        (out / f).unlink()
    res = CliRunner().invoke(app, ["report", str(out)])
    assert res.exit_code == 0, res.output
    assert (out / "report.md").exists() and (out / "report.html").exists()
    assert (out / "mse_hist.png").exists() and list(out.glob("fits_*.png"))


def test_same_initial_weights_for_every_method(tmp_path, fake_methods, monkeypatch):
    seen = []
    orig = FAKE_FITS["fit"]

    def spy(problem, params0, *, method, **o):
        seen.append((method, np.asarray(params0[0][0]).copy(), np.asarray(problem.Y).copy()))
        return orig(problem, params0, method=method, steps=2)

    monkeypatch.setitem(FAKE_FITS, "fit", spy)
    p = tiny(tmp_path, methods="fake-gd = {}\nfake-crash = {}")
    run(p, tmp_path / "out", quick=True)
    (m1, w1, y1), (m2, w2, y2) = seen
    assert {m1, m2} == {"fake-gd", "fake-crash"}
    np.testing.assert_array_equal(w1, w2)
    np.testing.assert_array_equal(y1, y2)


def test_units_batch_a_cells_seeds_and_resume_only_the_missing_ones(tmp_path, fake_methods):
    s = suite.resolve(tiny(tmp_path, methods="fake-gd = {}\nfake-loop = {}"), seeds=3)
    units = runner.plan_units(s, set())
    assert sorted((u.method, u.seeds) for u in units) == sorted(
        [("fake-gd", (0, 1, 2))] * 2 + [("fake-loop", (0, 1, 2))] * 2)
    done = {(s.cells[0].label, "fake-gd", 1)}
    assert [u.seeds for u in runner.plan_units(s, done) if u.method == "fake-gd"] == [(0, 2), (0, 1, 2)]
    out = tmp_path / "out"
    runner.run_suite(s, out, jobs=1, report=False)
    rows = rows_of(out)
    assert {(r["method"], r["batch_size"]) for r in rows} == {("fake-gd", "3"), ("fake-loop", "3")}


def test_rerun_skips_finished_runs(tmp_path, fake_methods):
    p, out = tiny(tmp_path), tmp_path / "out"
    run(p, out)
    n_calls = CALLS["n"]
    _, summary = run(p, out)
    assert summary.written == 0 and summary.skipped_done == 4 and CALLS["n"] == n_calls
    assert len(rows_of(out)) == 4
    # more seeds later: only the new ones run
    _, summary = run(p, out, seeds=3)
    rows = rows_of(out)
    assert summary.written == 2 and len(rows) == 6 and len(set(keys_of(rows))) == 6


def test_crashing_method_is_recorded_and_the_suite_goes_on(tmp_path, fake_methods):
    out = tmp_path / "out"
    run(tiny(tmp_path, methods="fake-crash = {}\nfake-gd = {}"), out)
    rows = rows_of(out)
    assert len(rows) == 8 and len(set(keys_of(rows))) == 8
    err = [r for r in rows if r["status"] == "error"]
    assert {(r["method"], r["seed"]) for r in err} == {("fake-crash", "1")}
    assert all("boom: this method crashed" in r["message"] and r["success"] == "false" for r in err)
    ok = [r for r in rows if r["method"] == "fake-crash" and r["seed"] == "0"]
    assert all(r["status"] == "max_iter" for r in ok)  # the batch failed; seed 0 reran alone
    assert all("rerun alone" in r["message"] for r in ok)
    assert all(r["status"] == "max_iter" for r in rows if r["method"] == "fake-gd")
    report.build_report(out)
    assert "Errors (2 runs)" in (out / "report.md").read_text()
    # --retry-errors reruns exactly the error rows (they crash again: still one row per key)
    s = suite.resolve(tiny(tmp_path, methods="fake-crash = {}\nfake-gd = {}"))
    summary = runner.run_suite(s, out, jobs=1, retry_errors=True)
    assert summary.written == 2 and len(set(keys_of(rows_of(out)))) == len(rows_of(out)) == 8


def test_run_suite_reports_through_its_hooks(tmp_path, fake_methods):
    """The caller's hooks see the plan, one start with the runs to do, and advances adding up to
    them (the CLI's progress bar is drawn from exactly these calls)."""
    s = suite.resolve(tiny(tmp_path, methods="fake-gd = {}\nfake-loop = {}"))
    notes, starts, advanced = [], [], []
    hooks = runner.Hooks(note=lambda kind, text: notes.append((kind, text)),
                         start=lambda title, n: starts.append((title, n)),
                         advance=lambda n, text: advanced.append((n, text)))
    runner.run_suite(s, tmp_path / "o", jobs=1, hooks=hooks, report=False)
    total = len(s.cells) * len(s.methods) * len(s.seeds)
    assert total == 8 and starts == [("tiny", total)]
    assert sum(n for n, _ in advanced) == total
    assert {text for _, text in advanced} == {f"tiny: {c.label} / {m}" for c in s.cells
                                             for m in s.methods}
    plan = (f"tiny: 2 cells x 2 methods x 2 seeds = 8 runs; 0 already in "
            f"{tmp_path / 'o' / 'results.csv'}; 8 to run in 4 units (local, jobs=1)")
    assert [text for kind, text in notes if kind == "plan"] == [plan]


def test_interrupted_bench_resumes_with_one_row_per_key(tmp_path, fake_methods):
    p, out = tiny(tmp_path, extra_suite="seed_batch = 1"), tmp_path / "out"
    CALLS["interrupt_at"] = 3  # Ctrl-C during the third run
    with pytest.raises(KeyboardInterrupt) as exc:
        run(p, out)
    assert isinstance(exc.value, runner.BenchInterrupted)
    assert exc.value.summary.written == 2
    assert len(rows_of(out)) == 2
    CALLS["interrupt_at"] = None
    _, summary = run(p, out)
    rows = rows_of(out)
    assert summary.written == 2 and summary.skipped_done == 2
    assert len(rows) == 4 and len(set(keys_of(rows))) == 4
    assert all(r["status"] == "max_iter" for r in rows)


def test_partial_last_line_is_dropped_on_resume(tmp_path, fake_methods):
    p, out = tiny(tmp_path), tmp_path / "out"
    run(p, out, seeds=1)
    with open(out / "results.csv", "a") as fh:
        fh.write("tiny,sin2,tanh 1-4-1 n=8,fake-gd,glorot_uniform,1,8,1-4")  # power cut mid-row
    run(p, out)
    rows = rows_of(out)
    assert len(rows) == 4 and len(set(keys_of(rows))) == 4


def test_method_that_catches_ctrl_c_is_not_recorded(tmp_path, fake_methods, monkeypatch):
    def interrupted(problem, params0, *, method, **o):
        r = _fake_fit(problem, params0, method=method, steps=2)
        r["status"] = "interrupted"
        return r

    monkeypatch.setitem(FAKE_FITS, "fit", interrupted)
    out = tmp_path / "out"
    with pytest.raises(runner.BenchInterrupted):
        run(tiny(tmp_path), out)
    assert not (out / "results.csv").exists() or rows_of(out) == []


# --- bad input: errors before any run ----------------------------------------------------------
def test_unknown_suite_and_method_list_valid_names(tmp_path, fake_methods):
    with pytest.raises(LiftnnError, match="unknown suite 'nope'.*thesis-sin2"):
        suite.resolve("nope")
    with pytest.raises(LiftnnError, match="unknown method 'nope'.*adam.*peers: .*torch-adam"):
        suite.resolve(tiny(tmp_path), methods=["nope"])
    with pytest.raises(LiftnnError, match="does not exist"):
        suite.resolve(tmp_path / "missing.toml")


def test_cli_bad_input_exits_2_before_any_run(tmp_path, fake_methods):
    cli = CliRunner()
    res = cli.invoke(app, ["bench", "nope", "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "unknown suite" in res.output
    res = cli.invoke(app, ["bench", str(tiny(tmp_path)), "--methods", "fake-gd,bogus",
                           "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "unknown method 'bogus'" in res.output
    assert not (tmp_path / "o").exists()
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    res = cli.invoke(app, ["bench", str(tiny(tmp_path)), "--jobs", "1", "--out",
                           str(blocker / "sub")])
    assert res.exit_code == 2 and "not writable" in " ".join(res.output.split())
    res = cli.invoke(app, ["report", str(tmp_path)])
    assert res.exit_code == 2 and "no results.csv" in " ".join(res.output.split())


def test_results_of_another_suite_or_config_refused(tmp_path, fake_methods):
    out = tmp_path / "out"
    run(tiny(tmp_path), out)
    other = tmp_path / "other.toml"
    other.write_text(tiny(tmp_path).read_text().replace('name = "tiny"', 'name = "other"'))
    before = (out / "results.csv").read_text()
    with pytest.raises(LiftnnError, match="holds results of suite 'tiny', not 'other'"):
        run(other, out)
    with pytest.raises(LiftnnError, match="different configuration.*cells"):
        run(tiny(tmp_path), out, quick=True)
    with pytest.raises(LiftnnError, match="other options"):
        run(tiny(tmp_path, methods="fake-gd = { steps = 3 }"), out)
    assert (out / "results.csv").read_text() == before
    # a results.csv without suite.json (e.g. from another tool) is refused too
    (out / "suite.json").unlink()
    with pytest.raises(LiftnnError, match="without suite.json"):
        run(tiny(tmp_path), out)


def test_missing_peer_library_is_skipped_with_reason(tmp_path, fake_methods):
    s = suite.resolve(tiny(tmp_path, methods="fake-gd = {}\nfake-missing = {}"))
    assert list(s.methods) == ["fake-gd"]
    assert "is not installed" in s.skipped["fake-missing"]
    out = tmp_path / "out"
    runner.run_suite(s, out, jobs=1)  # builds the report
    assert "skipped method fake-missing" in (out / "report.md").read_text()
    with pytest.raises(LiftnnError, match="none of the methods can run"):
        suite.resolve(tiny(tmp_path, methods="fake-missing = {}"))


def test_unknown_backend_and_missing_ray(tmp_path, fake_methods, monkeypatch):
    s = suite.resolve(tiny(tmp_path))
    with pytest.raises(LiftnnError, match="unknown backend"):
        runner.run_suite(s, tmp_path / "o", backend="slurm")
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(LiftnnError, match=r"liftnn\[ray\].*`ray` extra"):
        runner.run_suite(s, tmp_path / "o", backend="ray")
    assert not (tmp_path / "o").exists()


def test_lectures_suite_delegates(tmp_path, monkeypatch):
    mod = types.ModuleType("liftnn.bench.lectures")
    called = []
    mod.run_lectures = lambda out_dir, quick=False: called.append((Path(out_dir), quick))
    import liftnn.bench

    monkeypatch.setattr(liftnn.bench, "lectures", mod, raising=False)
    monkeypatch.setitem(sys.modules, "liftnn.bench.lectures", mod)
    runner.run_suite(suite.resolve("seeds-lectures", quick=True), tmp_path / "o")
    assert called == [(tmp_path / "o", True)]
    assert json.loads((tmp_path / "o" / "suite.json").read_text())["kind"] == "lectures"


# --- demo --------------------------------------------------------------------------------------
def test_demo_runs_without_unavailable_methods_and_says_so(tmp_path, fake_methods, monkeypatch):
    from liftnn.cli import bench as commands

    monkeypatch.setattr(commands, "DEMO_METHODS", ("fake-missing", "fake-gd"))
    res = CliRunner().invoke(app, ["demo", "--out", str(tmp_path / "d"), "--seeds", "2",
                                   "--jobs", "1"])
    assert res.exit_code == 0, res.output
    assert "skipped" in res.output and "fake-missing" in res.output
    rows = rows_of(tmp_path / "d")
    assert {r["cell"] for r in rows} == {"relu 1-16-16-1 n=20", "relu 1-16-16-1 n=40",
                                         "relu 1-16-16-1 n=80"}
    assert {r["method"] for r in rows} == {"fake-gd"} and len(rows) == 6
    assert "converged" in res.output and (tmp_path / "d" / "report.html").exists()


# --- pieces ------------------------------------------------------------------------------------
def test_freerun_matches_a_manual_closed_loop():
    lags, steps = 3, 6
    series = np.sin(0.3 * np.arange(40))
    X = np.stack([series[i:i + lags] for i in range(len(series) - lags)])
    data = ln.datasets.Dataset(X, series[lags:, None], X[:0], series[:0, None],
                               {"series": series, "continuation": np.sin(0.3 * np.arange(40, 50)),
                                "lags": lags})
    model = ln.MLP([lags, 5, 1], activation="tanh")
    params = model.init(0)
    assert freerun.window_order(X, series, lags) == "oldest_first"
    assert freerun.window_order(X[:, ::-1], series, lags) == "newest_first"
    mse, pred, truth = freerun.free_run_mse(model, params, data, steps)
    win = list(series[-lags:])
    manual = []
    for _ in range(steps):
        y = float(model.apply(params, np.array([win[-lags:]]))[0, 0])
        manual.append(y)
        win.append(y)
    np.testing.assert_allclose(pred, manual, rtol=1e-12, atol=1e-12)
    assert mse == pytest.approx(np.mean((np.array(manual) - truth) ** 2))
    with pytest.raises(LiftnnError, match="no normalised training series"):
        freerun.free_run_mse(model, params, ln.datasets.load("sin2"), steps)


def test_report_statistics_and_slopes():
    assert bench_stats.fit_slope([1e3, 1e4, 1e5], [1.0, 10.0, 100.0]) == pytest.approx(1.0)
    assert np.isnan(bench_stats.fit_slope([5, 5], [1, 2]))
    rows = [{"cell": "c", "method": m, "seed": s, "status": "ok", "success": s < 2,
             "train_mse": 0.1 * (s + 1), "test_mse": np.nan, "time_s": t, "iterations": 10.0,
             "time_per_iter": t / 10, "init": "glorot_uniform", "n": 8.0}
            for m, t in (("a", 1.0), ("b", 3.0)) for s in range(4)]
    stats, _, _, ref = bench_stats.aggregate(rows, {"reference": "a"})
    b = next(s for s in stats if s["method"] == "b")
    assert (b["converged"], b["runs"], ref) == (2, 4, "a")
    assert b["avg_mse"] == pytest.approx(0.25) and b["best_mse"] == pytest.approx(0.1)
    assert b["time_ratio"] == pytest.approx(3.0)


class _Ref:  # an object reference: hashable by identity, like ray.ObjectRef
    def __init__(self, fn, args):
        self.fn, self.args = fn, args


class _FakeRay:
    """Just enough of Ray's API, run in this process: exercises the harness's Ray glue."""

    def __init__(self):
        self.initialized, self.init_kw, self.shut = False, None, False

    def is_initialized(self):
        return self.initialized

    def init(self, address=None, **kw):
        self.initialized, self.init_kw = True, {"address": address, **kw}

    def shutdown(self):
        self.initialized, self.shut = False, True

    def remote(self, **opts):
        def deco(fn):
            return types.SimpleNamespace(remote=lambda *a: _Ref(fn, a))
        return deco

    def wait(self, refs, num_returns=1):
        return refs[:num_returns], refs[num_returns:]

    def get(self, ref):
        return ref.fn(*ref.args)

    def cancel(self, ref, force=False):
        pass


def test_ray_backend_glue_with_a_stand_in(tmp_path, fake_methods, monkeypatch):
    fake = _FakeRay()
    monkeypatch.setitem(sys.modules, "ray", fake)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    out = tmp_path / "out"
    run(tiny(tmp_path), out, backend="ray", jobs=2)
    rows = rows_of(out)
    assert len(rows) == 4 and len(set(keys_of(rows))) == 4
    assert fake.init_kw["num_cpus"] == 2 and fake.shut  # a local instance, started and stopped


@pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                    reason="ray is not installed (pip install 'liftnn[ray]')")
@pytest.mark.slow
def test_ray_backend_local_instance(tmp_path):
    p = tiny(tmp_path, methods='gd = { max_iter = 20 }')
    run(p, tmp_path / "out", backend="ray", jobs=2)
    rows = rows_of(tmp_path / "out")
    assert len(rows) == 4 and len(set(keys_of(rows))) == 4


def _have(method: str) -> bool:
    return methods.method_available(method)[0] if method in methods.known_methods() else False


@pytest.mark.skipif(not (_have("gd") and _have("adam")), reason="first-order methods not available")
def test_real_first_order_methods_vectorised(tmp_path):
    out = tmp_path / "out"
    run(tiny(tmp_path, methods='gd = { max_iter = 30 }\nadam = { max_iter = 30 }',
             extra_suite='reference = "adam"'), out, report=True, quick=True, seeds=2)
    rows = rows_of(out)
    assert "time / adam" in (out / "report.md").read_text()
    assert len(rows) == 4 and {r["status"] for r in rows} != {"error"}
    for r in rows:
        assert r["batch_size"] == "2"
        assert float(r["time_s"]) == pytest.approx(float(r["batch_time_s"]) / 2)


@pytest.mark.slow
@pytest.mark.skipif(not _have("gd"), reason="gd not available")
def test_spawned_worker_processes(tmp_path):
    out = tmp_path / "out"
    run(tiny(tmp_path, methods='gd = { max_iter = 20 }', extra_suite="seed_batch = 1"), out,
        jobs=2)
    rows = rows_of(out)
    assert len(rows) == 4 and len(set(keys_of(rows))) == 4
    assert all(r["status"] != "error" for r in rows), [r["message"] for r in rows]


def test_work_to_reach_the_reference_loss():
    """Time to reach = time per run - (history after the first entry at or below the reference
    run's final loss) / runs in the batch; work = that / one forward + backward pass."""

    rows = [
        {"cell": "c", "method": "adam", "seed": 0, "status": "max_iter", "loss": 0.5, "batch_size": 2, "time_s": 2.5},
        {"cell": "c", "method": "adam", "seed": 1, "status": "max_iter", "loss": 0.2, "batch_size": 2, "time_s": 4.5},
        {"cell": "c", "method": "alm", "seed": 0, "status": "converged", "loss": 0.1, "batch_size": 2, "time_s": 2.0},
        {"cell": "c", "method": "alm", "seed": 1, "status": "converged", "loss": 0.3, "batch_size": 2, "time_s": 2.0},
    ]
    h = lambda pts: {"history": [{"loss": f, "time": t} for t, f in pts]}
    runs = {("c", "alm", 0): h([(0.0, 1.0), (1.0, 0.6), (2.0, 0.4), (3.0, 0.1)]),
            ("c", "alm", 1): h([(0.0, 1.0), (3.0, 0.3)])}
    cells = {"c": {"fwd_bwd_s": 0.01}}
    w = {x["method"]: x for x in bench_stats.work_stats(rows, runs, cells, ["c"], ["adam", "alm"], "adam")}
    assert w["alm"]["reached"] == "1/2"  # seed 1 stopped at 0.3 > adam's 0.2
    assert w["alm"]["median_time"] == pytest.approx(2.0 - (3.0 - 2.0) / 2)  # reached 0.5 at t = 2
    assert w["alm"]["work"] == pytest.approx(150.0)
    assert w["adam"]["reached"] == "2/2" and w["adam"]["median_time"] == pytest.approx(3.5)


def test_work_of_a_history_without_a_clock_is_read_by_iteration():
    """lifted-gn's compiled loop records no per-iteration time: the time to reach is the run's
    time scaled by the share of its iterations done when it reached the target."""
    rows = [
        {"cell": "c", "method": "adam", "seed": 0, "status": "max_iter", "loss": 0.5, "batch_size": 1, "time_s": 1.0},
        {"cell": "c", "method": "lifted-gn", "seed": 0, "status": "converged", "loss": 0.1, "batch_size": 4, "time_s": 8.0},
    ]
    hist = [{"iter": j, "loss": f} for j, f in enumerate([1.0, 0.9, 0.7, 0.45, 0.3, 0.2, 0.15, 0.12, 0.1])]
    runs = {("c", "lifted-gn", 0): {"history": hist}}
    w = {x["method"]: x for x in bench_stats.work_stats(rows, runs, {"c": {"fwd_bwd_s": 0.5}}, ["c"],
                                                        ["adam", "lifted-gn"], "adam")}
    assert w["lifted-gn"]["reached"] == "1/1"
    assert w["lifted-gn"]["median_time"] == pytest.approx(8.0 * 3 / 8)  # loss 0.45 <= 0.5 at iteration 3 of 8
    assert w["lifted-gn"]["work"] == pytest.approx(6.0)


def test_forward_backward_timing_is_positive():
    import liftnn as ln
    from liftnn.bench.measure import fwd_bwd_seconds

    ds = ln.datasets.load("sin2", n=20, seed=0)
    t = fwd_bwd_seconds(ln.MLP([1, 4, 1]), ds, reps=2, calls=3)
    assert 0.0 < t < 1.0


# --- issue 22: the lock file, and peers' setups checked when the suite is read -----------------
def test_lock_file_is_removed_after_a_run_and_after_a_refused_open(tmp_path, fake_methods):
    out = tmp_path / "out"
    run(tiny(tmp_path), out)
    assert not (out / store.LOCK_NAME).exists()
    other = tmp_path / "other.toml"
    other.write_text(tiny(tmp_path).read_text().replace('name = "tiny"', 'name = "other"'))
    with pytest.raises(LiftnnError, match="holds results of suite 'tiny'"):
        run(other, out)  # refused inside store.open, after the lock was taken
    assert not (out / store.LOCK_NAME).exists()


def test_lock_file_is_removed_when_a_run_fails(tmp_path, fake_methods, monkeypatch):
    out = tmp_path / "out"

    def boom(*a, **k):
        raise RuntimeError("executor broke")

    monkeypatch.setattr(runner, "_run", boom)
    with pytest.raises(RuntimeError, match="executor broke"):
        run(tiny(tmp_path), out)
    assert not (out / store.LOCK_NAME).exists()


def test_a_held_lock_still_refuses_a_second_bench(tmp_path, fake_methods):
    s = suite.resolve(tiny(tmp_path))
    first = store.ResultStore(tmp_path / "out", s)
    first.open()
    try:
        with pytest.raises(LiftnnError, match="another liftnn bench"):
            store.ResultStore(tmp_path / "out", s).open()
        assert (tmp_path / "out" / store.LOCK_NAME).exists()
    finally:
        first.close()
    assert not (tmp_path / "out" / store.LOCK_NAME).exists()


def test_sklearn_peer_with_weight_decay_is_refused_when_the_suite_is_read(tmp_path):
    path = tiny(tmp_path, methods='"sklearn-lbfgs" = {}')
    path.write_text(path.read_text().replace('init = "glorot_uniform"',
                                             'init = "glorot_uniform"\nweight_decay = 1e-3'))
    with pytest.raises(LiftnnError, match=r"'sklearn-lbfgs' cannot run cell .*weight_decay=0"):
        suite.resolve(path, check_availability=False)
    ok = tiny(tmp_path, methods='"sklearn-lbfgs" = {}', name="ok.toml")
    assert "sklearn-lbfgs" in suite.resolve(ok, check_availability=False).methods
