"""gamma = P - alpha tr((beta J^T J + alpha I)^-1) three ways (primal Cholesky, dual push-through,
Hutchinson with CG), against each other and against the dense eigenvalue sum of liftnn.bayes."""

import pytest

import liftnn as ln
from liftnn import bayes
from liftnn.diagnostics import gn_trace


def _net(n):
    data = ln.datasets.load("sin2", n=n, noise=0.1)
    model = ln.MLP("1-4-4-1", activation="tanh")  # P = 33 weights
    return model, model.init(0), data.x_train


@pytest.mark.parametrize("n", [20, 60])  # N < P and N > P
def test_the_exact_modes_equal_the_eigenvalue_sum(n):
    model, params, X = _net(n)
    alpha, beta = 0.3, 40.0
    lam = bayes.gram_eigh(bayes.jacobian(model, params, X))[0]
    dense = bayes.effective_params(lam, alpha / beta)
    primal = gn_trace.effective_params(model, params, X, alpha, beta, mode="primal")
    dual = gn_trace.effective_params(model, params, X, alpha, beta, mode="dual")
    assert primal.gamma == pytest.approx(dense, rel=1e-10)
    assert dual.gamma == pytest.approx(dense, rel=1e-10)
    assert primal.trace == pytest.approx(dual.trace, rel=1e-10)
    auto = gn_trace.effective_params(model, params, X, alpha, beta)
    assert auto.mode == ("dual" if n < 33 else "primal")


def test_hutchinson_agrees_with_the_exact_trace_within_its_standard_error():
    model, params, X = _net(20)
    alpha, beta = 0.3, 40.0
    exact = gn_trace.effective_params(model, params, X, alpha, beta, mode="dual")
    est = gn_trace.effective_params(model, params, X, alpha, beta, mode="pcg", probes=400)
    assert est.mode == "pcg" and est.probes == 400 and est.std_error > 0
    assert abs(est.gamma - exact.gamma) <= 4 * est.std_error
    assert est.gamma == pytest.approx(exact.gamma, rel=0.05)
    assert est.trace == pytest.approx(exact.trace, rel=0.01)
    # seeded probes: the same call gives the same number
    again = gn_trace.effective_params(model, params, X, alpha, beta, mode="pcg", probes=400)
    assert again.gamma == est.gamma


def test_bad_input_is_named():
    model, params, X = _net(20)
    with pytest.raises(ln.LiftnnError, match="alpha and beta"):
        gn_trace.effective_params(model, params, X, 0.0, 1.0)
    with pytest.raises(ln.LiftnnError, match="trace mode"):
        gn_trace.effective_params(model, params, X, 1.0, 1.0, mode="lu")
    with pytest.raises(ln.LiftnnError, match="probes"):
        gn_trace.effective_params(model, params, X, 1.0, 1.0, mode="pcg", probes=1)
