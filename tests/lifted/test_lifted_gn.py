"""method="lifted-gn": the condensed step equals a dense KKT solve of the linearised
equality-constrained least-squares problem; the method reaches lm's minimiser from a nearby start;
it returns the best simulated iterate with an honest status; bad options fail before work."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _points import random_point
from jax.flatten_util import ravel_pytree

import liftnn as ln
from liftnn.errors import LiftnnError
from liftnn.lifted import gauss_newton as gnm
from liftnn.lifted import lifted_gn
from liftnn.models.activations import get_activation
from liftnn.problem import TrainingProblem

CASES = [  # the fast set: every mode, every activation, with and without bias
    ("1-4-3-1", "tanh", 7, True, "dual"),
    ("2-3-3-2", "sigmoid", 20, True, "primal"),
    ("3-5-2", "softplus", 4, False, "dual"),
    ("1-4-3-1", "tanh", 40, True, "cg"),  # cg serves over-determined (m O >= P) systems
]
SLOW_CASES = [
    ("1-4-3-1", "tanh", 7, True, "primal"),
    ("2-3-3-2", "sigmoid", 5, True, "dual"),
    ("2-3-3-2", "softplus", 20, True, "primal"),
    ("2-4-4-1", "sigmoid", 30, False, "primal"),
    ("3-5-2", "tanh", 4, False, "dual"),
]




def _check_step(arch, act, n, bias, mode, mu_w, damping):
    model, p, X, Y, acts, Z, _lam = random_point(arch, act, n, bias)
    out = get_activation("identity")
    c = (2.0 / (n * model.d_out)) ** 0.5
    prob = lifted_gn.constrained_problem(X, Y, acts, out, c, mu_w)
    step = jax.jit(lambda p, Z: lifted_gn.lifted_step(prob, p, Z, damping, mode))
    dp, dZ = step(p, Z)
    ref_p, ref_Z = jax.jit(lambda p, Z: lifted_gn.dense_kkt_step(prob, p, Z, damping))(p, Z)
    got = np.asarray(ravel_pytree((dp, dZ))[0])
    ref = np.asarray(ravel_pytree((ref_p, ref_Z))[0])
    tol = 1e-8 if mode != "cg" else 1e-7  # cg stops at a relative residual of 1e-10
    assert np.max(np.abs(got - ref)) <= tol * max(1.0, np.max(np.abs(ref)))


@pytest.mark.parametrize("arch,act,n,bias,mode", CASES)
@pytest.mark.parametrize("mu_w,damping", [(0.0, 1e-6), (0.05, 1e-3)])
def test_condensed_step_equals_dense_kkt_solve(arch, act, n, bias, mode, mu_w, damping):
    _check_step(arch, act, n, bias, mode, mu_w, damping)


@pytest.mark.slow
@pytest.mark.parametrize("arch,act,n,bias,mode", SLOW_CASES)
@pytest.mark.parametrize("mu_w,damping", [(0.0, 1e-6), (0.05, 1e-3)])
def test_condensed_step_equals_dense_kkt_solve_more_shapes(arch, act, n, bias, mode, mu_w, damping):
    _check_step(arch, act, n, bias, mode, mu_w, damping)


def test_states_step_satisfies_the_linearised_constraints():
    """H + J_H d = 0 for the forward sweep's d_Z, with J_H from autodiff."""
    _, p, X, Y, acts, Z, _lam = random_point("2-4-3-1", "tanh", 6, True)
    out = get_activation("identity")
    rng = np.random.default_rng(3)
    dp = jax.tree_util.tree_map(lambda a: jnp.asarray(rng.standard_normal(a.shape)), p)
    lin = lifted_gn.linearise(lifted_gn.constrained_problem(X, Y, acts, out, 1.0, 0.0), p, Z)
    dZ = lifted_gn.states_step(lin, dp)

    def H(pp, zz):
        return jnp.concatenate([h.ravel() for h in gnm.terms(pp, zz, X, Y, acts, out, 1.0).H])

    _, lin = jax.jvp(H, (p, Z), (dp, dZ))
    np.testing.assert_allclose(np.asarray(H(p, Z) + lin), 0.0, atol=1e-12)


@pytest.fixture(scope="module")
def teacher_problem():
    """1-3-1 tanh, noisy targets from a teacher, weight decay: a strict local minimiser."""
    model = ln.MLP("1-3-1", activation="tanh")
    teacher = model.init(7)
    X = np.linspace(-2.0, 2.0, 25)[:, None]
    Y = np.asarray(model.apply(teacher, X)) + 0.05 * np.random.default_rng(0).standard_normal((25, 1))
    return model, teacher, TrainingProblem(model, X, Y, weight_decay=1e-3)


def test_reaches_the_same_minimiser_as_lm_from_a_nearby_start(teacher_problem):
    _, teacher, prob = teacher_problem
    rng = np.random.default_rng(1)
    start = [(W + 0.05 * rng.standard_normal(W.shape), b + 0.05 * rng.standard_normal(b.shape))
             for W, b in teacher]
    from liftnn.solvers import network

    ref = network.fit(prob, start, method="lm", gtol=1e-12, max_iter=500)
    res = lifted_gn.fit(prob, start, gtol=1e-10, htol=1e-10)
    assert res.status == "converged", res.message
    np.testing.assert_allclose(res.x, ref.x, atol=1e-6)
    assert abs(res.fun - ref.fun) <= 1e-10
    assert res.nit <= ref.nit + 5


def test_history_and_best_simulated_iterate(teacher_problem):
    model, _, prob = teacher_problem
    res = lifted_gn.fit(prob, model.init(0), max_iter=40)
    for key in ("loss", "train_mse", "h_inf"):
        assert len(res.history_array(key)) == res.nit + 1
    losses = res.history_array("loss")
    assert res.fun == pytest.approx(np.nanmin(losses), rel=1e-12)
    assert res.fun == pytest.approx(float(prob.objective(res.params)), rel=1e-10)
    assert res.status in ("converged", "stalled", "max_iter")


def test_validation_selects_the_iterate_and_stops_after_val_patience():
    """With validation data the returned network is the iterate with the lowest validation loss
    (recorded in the history) and val_patience iterations without a new lowest one end the run;
    without them the run is the plain one (val_loss NaN in the history)."""
    model = ln.MLP("1-6-1", activation="tanh")
    rng = np.random.default_rng(3)
    X = rng.uniform(-2, 2, (30, 1))
    Y = np.sin(2 * X) + 0.3 * rng.standard_normal((30, 1))  # noisy: fitting it fully overfits
    Xv = rng.uniform(-2, 2, (20, 1))
    Yv = np.sin(2 * Xv) + 0.3 * rng.standard_normal((20, 1))
    prob = TrainingProblem(model, X, Y, X_val=Xv, Y_val=Yv)
    res = lifted_gn.fit(prob, model.init(0), val_patience=3, max_iter=200)
    val = res.history_array("val_loss")
    assert len(val) == res.nit + 1 and np.all(np.isfinite(val))
    best = int(np.argmin(val))
    assert float(prob.val_loss(res.params)) == pytest.approx(val[best], rel=1e-10)
    assert res.val_loss == pytest.approx(val[best], rel=1e-12)
    assert res.fun == pytest.approx(float(prob.objective(res.params)), rel=1e-10)
    assert res.status == "stalled" and "val_patience" in res.message, res.message
    assert res.nit - best == 3
    plain = lifted_gn.fit(TrainingProblem(model, X, Y), model.init(0), max_iter=200)
    assert np.all(np.isnan(plain.history_array("val_loss")))
    assert plain.fun == pytest.approx(np.nanmin(plain.history_array("loss")), rel=1e-12)


def test_vectorised_runs_equal_single_runs(teacher_problem):
    model, _, prob = teacher_problem
    many = lifted_gn.fit_many(prob, [model.init(0), model.init(1)], max_iter=30)
    for s, r in zip((0, 1), many):
        one = lifted_gn.fit(prob, model.init(s), max_iter=30)
        assert one.nit == r.nit
        np.testing.assert_allclose(one.x, r.x, rtol=1e-9, atol=1e-12)


@pytest.mark.slow
@pytest.mark.parametrize("relu_mode", ["complementarity", "softplus", "gd"])
def test_relu_modes_reduce_the_simulated_loss(relu_mode):
    model = ln.MLP("1-8-8-1", activation="relu")
    data = ln.datasets.load("sin2", n=20)
    r = ln.train(model, data, method="lifted-gn", seed=0, relu_mode=relu_mode, max_iter=60)
    assert r.fun < 0.5 * r.history[0]["loss"]
    assert r.train_mse == pytest.approx(r.fun, rel=1e-10)  # the simulated (exact ReLU) network


def test_stalls_honestly_when_no_step_helps(teacher_problem):
    """mu_max = mu0: the first rejected step ends the run as "stalled" with the best iterate."""
    model, _, prob = teacher_problem
    r = lifted_gn.fit(prob, model.init(0), mu0=1e-3, mu_max=1e-3, max_iter=500)
    assert r.status in ("stalled", "converged")
    if r.status == "stalled":
        assert "mu_max" in r.message
    assert np.all(np.isfinite(r.x))


@pytest.mark.parametrize("opts,needle", [
    ({"frobnicate": 1}, "unknown option"),
    ({"mu_dec": 2.0}, "mu_dec"),
    ({"mu_inc": 0.5}, "mu_inc"),
    ({"mu0": 0.0}, "mu0"),
    ({"mu_max": 1e-6}, "mu_max"),
    ({"max_iter": 0}, "max_iter"),
    ({"patience": 1.5}, "patience"),
    ({"val_patience": 0}, "val_patience"),
    ({"relu_mode": "magic"}, "ReLU mode"),
    ({"merit": "filter"}, "merit function"),
    ({"linear_solver": "lu"}, "linear solver"),
    ({"callback": 3}, "callback"),
])
def test_bad_options_fail_before_work(opts, needle):
    model = ln.MLP("1-4-1")
    data = ln.datasets.load("sin2", n=10)
    with pytest.raises(LiftnnError, match=needle):
        ln.train(model, data, method="lifted-gn", **opts)


def test_bad_loss_and_model_fail_before_work():
    X = np.linspace(0, 1, 5)[:, None]
    prob = TrainingProblem(ln.MLP("1-4-2"), X, np.zeros((5, 2)), loss="cross_entropy")
    with pytest.raises(LiftnnError, match="least-squares"):
        lifted_gn.fit(prob, prob.model.init(0))
    with pytest.raises(LiftnnError, match="hidden layer"):
        lifted_gn.fit(TrainingProblem(ln.MLP("1-1"), X, np.sin(X)), ln.MLP("1-1").init(0))


@pytest.mark.parametrize("devices", [2, True, "all"])
def test_sharding_requests_fail_before_work(devices):
    """lifted-gn does not shard the samples: anything but devices=None or 1 is a LiftnnError."""
    model = ln.MLP("1-4-1")
    data = ln.datasets.load("sin2", n=10)
    with pytest.raises(LiftnnError, match="one device"):
        ln.train(model, data, method="lifted-gn", devices=devices)
