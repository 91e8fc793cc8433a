"""The lifted ALM's stopping rules (liftnn.lifted.stopping) on made-up sequences of outer
iterations: each rule fires when docs/lifted.md says it does, and not before."""

import numpy as np

from liftnn.lifted import stopping


def _run(losses, h=None, grad=None, ls_failed=None, settings=None, val=None, f0=1.0):
    """Feed one seed's made-up sequence; returns (k, status, message, watch) at the first stop
    (k = None if none fired) and the list of `better` flags."""
    s = settings or stopping.StopSettings()
    n = len(losses)
    h = [1e-3] * n if h is None else h
    grad = [1.0] * n if grad is None else grad
    ls_failed = [False] * n if ls_failed is None else ls_failed
    w = stopping.start(np.array([f0]), None if val is None else np.array([val[0]]))
    h_prev = np.inf
    better = []
    for k in range(1, n + 1):
        obs = stopping.Observation(
            np.array([losses[k - 1]], float), np.array([grad[k - 1]], float), np.array([h[k - 1]], float),
            np.array([h_prev]), np.array([ls_failed[k - 1]]), np.array([True]),
            np.array([np.isfinite(losses[k - 1])]), None if val is None else np.array([val[k]], float))
        v = stopping.judge(w, obs, k, s)
        w = v.watch
        better.append(bool(v.better[0]))
        h_prev = h[k - 1] if np.isfinite(losses[k - 1]) else h_prev
        if v.status[0]:
            return (k, v.status[0], v.message[0], w), better
    return (None, "", "", w), better


def test_non_finite_loss_is_diverged_and_comes_first():
    (k, status, msg, _), _ = _run([0.5, np.nan], grad=[1.0, 0.0], h=[1e-3, 0.0])
    assert (k, status) == (2, "diverged") and "non-finite" in msg


def test_kkt_needs_both_gradient_and_feasibility():
    s = stopping.StopSettings(stop="kkt", eps_kkt=1e-3)
    (k, status, msg, _), _ = _run([0.9, 0.8, 0.7], grad=[1e-4, 1e-2, 1e-4], h=[1e-2, 1e-4, 1e-4], settings=s)
    assert (k, status) == (3, "converged") and "eps-KKT" in msg


def test_thesis_rule_stops_when_the_loss_stops_falling_by_one_percent():
    s = stopping.StopSettings(stop="thesis", thesis_eps=1e-2)
    # C_2 = 0.5 vs C_1 = 0.9: falls; C_3 = 0.498: (1.01) 0.498 > 0.5 -> stop at k = 3
    (k, status, msg, _), _ = _run([0.9, 0.5, 0.498, 0.1], settings=s)
    assert (k, status) == (3, "converged") and "thesis rule" in msg


def test_thesis_rule_never_fires_at_the_first_iteration():
    s = stopping.StopSettings(stop="thesis")
    (k, _, _, _), _ = _run([2.0, 1.0, 0.5, 0.25], f0=1.0, settings=s)  # k = 1 rose, then fell
    assert k is None


def test_settled_counts_patience_iterations_after_the_first_improvement():
    s = stopping.StopSettings(stop="stall", patience=3, give_up=100)
    # the start (1.0) is not a place to settle: flat losses there do not count
    (k, status, msg, w), _ = _run([1.0, 1.0, 1.0, 1.0, 0.5, 0.499, 0.498, 0.497, 0.1], settings=s)
    assert (k, status) == (8, "converged") and "settled" in msg
    assert w.best_loss[0] == 0.497


def test_settled_needs_near_feasibility():
    s = stopping.StopSettings(stop="stall", patience=2, give_up=100, settle_h=1e-2)
    (k, _, _, _), _ = _run([0.5, 0.5, 0.5, 0.5], h=[1.0] * 4, settings=s)
    assert k is None
    (k, _, _, _), _ = _run([0.5, 0.5, 0.5, 0.5], h=[1e-3] * 4, settings=s)
    assert k == 3


def test_settled_needs_to_stay_near_the_best():
    """An iterate that wandered off to > near_best times the best is not settled."""
    s = stopping.StopSettings(stop="stall", patience=2, give_up=100, near_best=1.5)
    (k, _, _, w), _ = _run([0.5, 0.9, 0.9, 0.9], settings=s)
    assert k is None and w.stall[0] == 0


def test_give_up_counts_iterations_improving_neither_loss_nor_feasibility():
    s = stopping.StopSettings(stop="stall", patience=100, give_up=2, near_best=1.5)
    # after the improvement at k = 1, k = 2 lowers ||h|| (not counted), k = 3 and 4 do not
    (k, status, msg, _), _ = _run([0.5, 0.9, 0.9, 0.9], h=[1e-1, 1e-2, 1e-1, 1e-1], settings=s)
    assert (k, status) == (4, "stalled") and "did not improve" in msg


def test_two_line_search_failures_in_a_row():
    s = stopping.StopSettings(stop="none")
    (k, _, _, _), _ = _run([0.9, 0.8, 0.7, 0.6], ls_failed=[True, False, True, False], settings=s)
    assert k is None
    (k, status, msg, _), _ = _run([0.9, 0.8, 0.7], ls_failed=[False, True, True], settings=s)
    assert (k, status) == (3, "line_search_failed") and "twice" in msg


def test_stop_none_ignores_the_convergence_rules():
    s = stopping.StopSettings(stop="none", patience=1, give_up=1)
    (k, _, _, _), _ = _run([0.5, 0.5, 0.5, 0.5], grad=[0.0] * 4, h=[0.0] * 4, settings=s)
    assert k is None


def test_better_marks_a_new_lowest_training_loss():
    (_, _, _, w), better = _run([0.9, 1.2, 0.8, 0.8], settings=stopping.StopSettings(stop="none"))
    assert better == [True, False, True, False] and w.best_loss[0] == 0.8


def test_with_validation_better_follows_the_validation_loss_and_patience_stops():
    s = stopping.StopSettings(stop="none", val_patience=2)
    # training loss keeps falling; validation loss is best at k = 2, then rises for 2 iterations
    (k, status, msg, w), better = _run([0.9, 0.8, 0.7, 0.6, 0.5], val=[1.0, 0.9, 0.7, 0.8, 0.75, 0.6],
                                       settings=s)
    assert better == [True, True, False, False]
    assert (k, status) == (4, "converged") and "validation" in msg
    assert w.best_val[0] == 0.7


def test_validation_patience_waits_for_the_first_improvement_of_the_training_loss():
    s = stopping.StopSettings(stop="none", val_patience=2)
    # outer iterations 1-3 trade loss for feasibility (training loss above the start f0 = 1,
    # validation loss worse than at the start): no early stop there; the count starts at k = 4
    (k, status, _, w), better = _run([3.0, 2.0, 1.5, 0.8, 0.7, 0.6, 0.6],
                                     val=[1.0, 2.5, 2.0, 1.2, 0.9, 1.1, 1.1, 1.3], settings=s)
    assert better == [False, False, False, True, False, False]
    assert (k, status) == (6, "converged") and w.best_val[0] == 0.9


def test_budget_checks_time_then_max_outer():
    assert stopping.budget(3, 1.0, 10, None) == ""
    assert "max_outer = 10" in stopping.budget(10, 1.0, 10, None)
    assert "time budget" in stopping.budget(10, 5.0, 10, 2.0)
    assert "time budget" in stopping.budget(2, 5.0, 10, 2.0)
