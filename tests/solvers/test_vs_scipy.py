"""liftnn's classical solvers against scipy.optimize on five small networks, from the same start.

For each network (TrainingProblem from model.init(0)) and each pair
bfgs / BFGS, cg / CG, newton-cg / Newton-CG (scipy given our JAX gradient and Hessian-vector
product) and lm / least_squares(method="lm") (given our JAX Jacobian), both sides run to tight
tolerances; when both reach the same minimiser the final objective values agree, and the test
demands agreement within 1e-6 relative.  The networks carry a little weight decay where the bare
loss has flat directions or several nearby minima (then "the minimiser reached from this start"
is not well defined for either side); the table of final losses and iteration counts is printed
(run pytest with -s to see it) and is part of the report.

Also: seed 004's three-point line fit reaches a = 0.95, b = 1.05 (to 1e-8) by the closed form and
by every method that can converge to 1e-8 with a fixed step, and `ln.train` returns the fitted
network for the classical methods.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import optimize as so

import liftnn as ln
from liftnn.problem import TrainingProblem
from liftnn.solvers import result as R
from liftnn.solvers.driver import residual_functions, scalar_functions
from liftnn.solvers.network import fit


def _softplus_data():
    rng = np.random.default_rng(0)
    X = rng.uniform(-2.0, 2.0, (40, 2))
    Y = np.tanh(X[:, :1]) * X[:, 1:] + 0.05 * rng.standard_normal((40, 1))
    return X, Y


def _networks():
    sin2 = ln.datasets.load("sin2", n=40)
    sine = ln.datasets.load("sine")
    moeller = ln.datasets.load("moeller")
    line = ln.datasets.load("linear3")
    Xs, Ys = _softplus_data()
    return {  # name: (model, X, Y, weight_decay)
        "sin2 1-3-1 tanh": (ln.MLP("1-3-1", activation="tanh"), sin2.x_train, sin2.y_train, 1e-3),
        "sine 1-3-3-1 tanh": (ln.MLP("1-3-3-1", activation="tanh"), sine.x_train, sine.y_train,
                              1e-2),
        "moeller 3-2 sigmoid": (ln.MLP("3-2", output_activation="sigmoid", bias=False),
                                moeller.x_train, moeller.y_train, 1e-2),
        "linear3 1-1 identity": (ln.MLP("1-1"), line.x_train, line.y_train, 0.0),
        "2-4-1 softplus": (ln.MLP("2-4-1", activation="softplus"), Xs, Ys, 1e-2),
    }


PAIRS = [("bfgs", "BFGS"), ("cg", "CG"), ("newton-cg", "Newton-CG"), ("lm", "lm")]


def _scipy(problem, theta0, method):
    """scipy's run from theta0 with our JAX derivatives (the same compiled functions liftnn
    uses); returns (objective, iteration text)."""
    if method == "lm":
        rj = residual_functions(problem.residual, True).rj
        s = so.least_squares(lambda x: np.asarray(rj(x)[0]), theta0,
                             jac=lambda x: np.asarray(rj(x)[1]), method="lm", ftol=1e-15,
                             xtol=1e-15, gtol=1e-15, max_nfev=100000)
        return float(s.cost), f"nfev {s.nfev} / njev {s.njev}"
    fns = scalar_functions(problem.fun, False)

    def fg(x):
        f, g = fns.fg(x)
        return float(f), np.asarray(g)

    opts = ({"xtol": 1e-12} if method == "Newton-CG" else {"gtol": 1e-9}) | {"maxiter": 100000}
    s = so.minimize(fg, theta0, jac=True, method=method, options=opts,
                    hessp=(lambda x, v: np.asarray(fns.hvp(x, v))) if method == "Newton-CG"
                    else None)
    return float(s.fun), f"nit {s.nit}"


@pytest.fixture(scope="module")
def comparison():
    """Every (network, method) pair run on both sides once: a list of table rows."""
    rows = []
    for name, (model, X, Y, wd) in _networks().items():
        problem = TrainingProblem(model, X, Y, weight_decay=wd)
        p0 = model.init(0)
        theta0 = np.asarray(problem.flatten(p0))
        for ours, theirs in PAIRS:
            r = fit(problem, p0, method=ours)
            s_fun, s_iters = _scipy(problem, theta0, theirs)
            ours_iters = (f"nit {r.nit} (nfev {r.nfev} / njev {r.njev})" if ours == "lm"
                          else f"nit {r.nit}")
            rows.append({"network": name, "method": ours, "ours": r.fun, "scipy": s_fun,
                         "rel": abs(r.fun - s_fun) / abs(s_fun), "ours_iters": ours_iters,
                         "scipy_iters": s_iters, "status": r.status, "result": r})
    return rows


def test_print_side_by_side_table(comparison):
    lines = [(f"{'network':22s} {'method':10s} {'liftnn loss':>20s} {'scipy loss':>20s} "
              f"{'rel diff':>9s}  {'liftnn iterations':32s} scipy iterations")]
    for row in comparison:
        lines.append(f"{row['network']:22s} {row['method']:10s} {row['ours']:20.14e} "
                     f"{row['scipy']:20.14e} {row['rel']:9.1e}  {row['ours_iters']:32s} "
                     f"{row['scipy_iters']}")
    print("\n" + "\n".join(lines))
    assert len(comparison) == 5 * len(PAIRS)


@pytest.mark.parametrize("index", range(5 * len(PAIRS)))
def test_final_loss_matches_scipy(comparison, index):
    row = comparison[index]
    assert row["rel"] <= 1e-6, row
    # precision loss in the line search at the minimiser is scipy's status 2; anything else fails
    assert row["status"] in (R.CONVERGED, R.LINE_SEARCH_FAILED), row["result"].message
    r = row["result"]
    assert r.fun == pytest.approx(min(h["loss"] for h in r.history), rel=1e-14)


# ---- seed 004: the three-point line fit -----------------------------------------------------------

X3 = jnp.array([0.0, 1.0, 2.0])
Z3 = jnp.array([1.0, 2.1, 2.9])
A_B = np.array([0.95, 1.05])


def line_loss(w):
    """Seed 004: L(a, b) = sum_i (a x_i + b - z_i)^2 on {(0, 1), (1, 2.1), (2, 2.9)}."""
    return jnp.sum((w[0] * X3 + w[1] - Z3) ** 2)


def line_residual(w):
    return w[0] * X3 + w[1] - Z3


def test_line_fit_closed_form():
    """Setting dL/da = dL/db = 0 gives the normal equations; their solution is (0.95, 1.05)."""
    A = np.stack([np.asarray(X3), np.ones(3)], axis=1)
    w = np.linalg.solve(A.T @ A, A.T @ np.asarray(Z3))
    np.testing.assert_allclose(w, A_B, atol=1e-12)


LINE_FIT = [
    ("cg", {}), ("bfgs", {}), ("lbfgs", {}), ("newton", {}), ("newton-cg", {}),
    ("gd", {"lr": 0.1}), ("momentum", {"lr": 0.05, "beta": 0.95}),  # seed 004: alpha + beta = 1
    ("nesterov", {"lr": 0.05, "beta": 0.9}), ("adam", {"lr": 1e-2}), ("rprop", {"min_step": 1e-14}),
]


@pytest.mark.parametrize("method,opts", LINE_FIT, ids=[m for m, _ in LINE_FIT])
def test_line_fit_every_minimize_method(method, opts):
    first_order = method in ("gd", "momentum", "nesterov", "adam", "rprop")
    extra = {"patience": None, "max_iter": 20000} if first_order else {}
    r = ln.minimize(line_loss, [0.0, 0.0], method=method, gtol=1e-10, **extra, **opts)
    assert r.status == R.CONVERGED, r.message
    np.testing.assert_allclose(r.x, A_B, atol=1e-8)
    assert r.fun == pytest.approx(0.015, rel=1e-10)  # the residual sum of squares at (a, b)


@pytest.mark.parametrize("method", ["gn", "lm"])
def test_line_fit_least_squares(method):
    r = ln.least_squares(line_residual, [0.0, 0.0], method=method, gtol=1e-12)
    assert r.status == R.CONVERGED, r.message
    np.testing.assert_allclose(r.x, A_B, atol=1e-8)


@pytest.mark.parametrize("method", ["bfgs", "lm", "newton", "gn"])
def test_train_front_door_fits_the_line_network(method):
    """ln.train on the linear3 data set with a 1-1 identity network: W = a, b = b."""
    model = ln.MLP("1-1")
    r = ln.train(model, ln.datasets.load("linear3"), method=method, seed=0)
    (W, b), = r.params
    np.testing.assert_allclose([float(W[0, 0]), float(b[0])], A_B, atol=1e-7)
    assert r.status == R.CONVERGED and r.train_mse == pytest.approx(0.005, rel=1e-8)
    assert r.fun == pytest.approx(0.005, rel=1e-8) and r.method == method
    assert r.time_s > 0 and r.history[0]["iter"] == 0


def test_network_fit_watches_validation_loss_and_rejects_bad_input():
    ds = ln.datasets.load("sin2", n=20, n_test=15)
    model = ln.MLP("1-3-1")
    problem = TrainingProblem(model, ds.x_train, ds.y_train, X_val=ds.x_test, Y_val=ds.y_test)
    r = fit(problem, model.init(0), method="lbfgs", val_patience=2, min_delta=1e6)
    assert r.status == R.STALLED and "validation" in r.message and r.nit == 2
    val = [h["val_loss"] for h in r.history]
    assert val[0] == pytest.approx(float(problem.val_loss(model.init(0))), rel=1e-12)
    # gn on cross_entropy runs the generalised Gauss-Newton (tests/solvers/test_ggn.py); real-
    # valued targets are no class labels, and it says so before any iteration
    with pytest.raises(ln.LiftnnError, match="not finite at the initial weights"):
        fit(TrainingProblem(model, ds.x_train, ds.y_train, loss="cross_entropy"), model.init(0),
            method="gn")
    with pytest.raises(ln.LiftnnError, match="params0"):
        fit(problem, ln.MLP("1-4-1").init(0), method="bfgs")
    with pytest.raises(ln.LiftnnError, match="unknown classical method"):
        fit(problem, model.init(0), method="adam")


def test_lm_mu_for_networks_is_trainlms_mu_on_the_unscaled_errors():
    """With loss "mse" r = sqrt(2/N) e; fit scales the damping so that the step equals trainlm's
    d = -(J_e^T J_e + mu I)^{-1} J_e^T e with mu = 1e-3 x 10 per rejected trial."""
    ds = ln.datasets.load("sin2", n=10)
    model = ln.MLP("1-2-1")
    problem = TrainingProblem(model, ds.x_train, ds.y_train)
    p0 = model.init(0)
    theta0 = np.asarray(problem.flatten(p0))

    def e(th):  # trainlm's error vector
        return (model.apply(problem.unflatten(th), problem.X) - problem.Y).reshape(-1)

    Je, e0 = np.asarray(jax.jacfwd(e)(theta0)), np.asarray(e(theta0))
    r = fit(problem, p0, method="lm", max_iter=1)
    mu = 1e-3 * 10.0 ** (r.history[1]["trials"] - 1)  # the mu of the accepted trial
    d = -np.linalg.solve(Je.T @ Je + mu * np.eye(theta0.size), Je.T @ e0)
    np.testing.assert_allclose(r.x, theta0 + d, rtol=1e-8, atol=1e-12)
    assert r.history[1]["mu"] == pytest.approx(0.1 * mu)
