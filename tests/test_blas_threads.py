"""liftnn.blas_threads: the classical solvers run their numpy linear algebra with BLAS capped
(one thread by default) so that it does not fight XLA's thread pool for the cores (issue 22)."""

from __future__ import annotations

import pytest

import liftnn as ln
from liftnn import blas_threads

threadpoolctl = pytest.importorskip("threadpoolctl")


def _blas_threads() -> list[int]:
    return [p["num_threads"] for p in threadpoolctl.threadpool_info() if p["user_api"] == "blas"]


@pytest.mark.parametrize("env, want", [(None, 1), ("3", 3), ("0", None), ("off", None)])
def test_limit_blas_caps_the_blas_pool_inside_the_block(monkeypatch, env, want):
    if env is None:
        monkeypatch.delenv(blas_threads.ENV, raising=False)
    else:
        monkeypatch.setenv(blas_threads.ENV, env)
    outside = _blas_threads()
    assert outside, "numpy's BLAS is not visible to threadpoolctl"
    with blas_threads.limit_blas():
        inside = _blas_threads()
        with blas_threads.limit_blas():  # nested: the outer cap holds
            assert _blas_threads() == inside
    assert _blas_threads() == outside
    assert inside == (outside if want is None else [want] * len(outside))


def test_a_classical_solve_runs_under_the_cap(monkeypatch):
    monkeypatch.delenv(blas_threads.ENV, raising=False)
    seen = []
    data = ln.datasets.load("sin2", n=20, seed=0)
    ln.train(ln.MLP("1-4-1"), data, method="lm", max_iter=2,
             callback=lambda *a, **k: seen.append(_blas_threads()))
    assert seen and all(set(s) == {1} for s in seen)
