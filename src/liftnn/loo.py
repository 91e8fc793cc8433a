"""Leave-one-out errors of Bayesian-regularised least-squares fits: the linear baseline's exactly,
a network's through its Gauss-Newton linearisation with exact refits where that fails
(docs/bayes.md "The leave-one-out check").

A fit that minimises 1/2 sum e^2 + r/2 ||theta||^2 (r = alpha / beta) with output Jacobian J
(N x P, N = m O target entries) at its minimiser has, linearised there, the hat matrix

    H = J (J^T J + r I)^-1 J^T,        loo residual of entry i:  e_i / (1 - h_ii)

(PRESS).  For the linear model (J = the design [X, 1], the same at any weights) this is the exact
leave-one-out residual of the ridge fit.  For a network it is first order in the removed sample
(Hansen & Larsen, "Linear unlearning for cross-validation", Adv. Comput. Math. 5, 1996) and it
fails where h_ii nears 1: a sample the network fits by itself (a hidden unit given to an isolated
input) gets 1 / (1 - h_ii)^2 of up to 10^5, far above the error a refit without it really makes.
So `network` retrains, from the fitted weights and with the same r, without each of the samples
of highest leverage above REFIT_LEVERAGE (at most MAX_REFITS, by liftnn's lm) and uses their true
held-out residuals.  Measured on Engel's and Grunfeld's tables (docs/bayes.md): the linearised
residual of a sample at leverage 0.98-0.997 was 2.7-12 times the one its refit gave.

`confirms_network(model, result, X, Y, linear)`: whether the network's leave-one-out mean squared
error is at most the linear model's, the check liftnn.sklearn.LiftnnRegressor adds to the
evidence's choice; refits are made only when the linearised estimate alone would reject the
network (they can only be needed to overturn it).  `overrules_linear(...)`: whether the
network's leave-one-out errors are significantly smaller than the linear model's (a one-sided
paired t-test at OVERRULE_LEVEL), the check that keeps a network the evidence rejected.
`other_start(model, result, X, Y)`: the same test between the two evidence starts of
liftnn.bayes, where the other start's network is determined by the data well enough
(effective parameters / targets <= START_MAX_LEVERAGE) for its linearised errors to hold."""

from __future__ import annotations

import warnings
from typing import NamedTuple

import numpy as np

from liftnn import baseline, bayes
from liftnn.blas_threads import limit_blas
from liftnn.errors import LiftnnError
from liftnn.problem import TrainingProblem, predict
from liftnn.solvers import lm_compiled

#: samples whose largest entry leverage exceeds this are refitted without themselves
REFIT_LEVERAGE = 0.5
#: at most this many refits (the samples of highest leverage first)
MAX_REFITS = 20
#: lm iterations of a refit (it starts at the fitted network, one sample away from its
#: minimiser); the refining cycles' limit, so that a refit runs their compiled program
REFIT_MAX_ITER = bayes.REFINE_MAX_ITER


class Loo(NamedTuple):
    """A leave-one-out estimate: mse = mean of residuals^2 over every target entry."""

    mse: float
    residuals: np.ndarray  # (m, O) held-out residuals f_{-i}(x_i) - y_i
    leverage: np.ndarray  # (m, O) the hat matrix's diagonal
    refitted: tuple  # sample indices whose residuals come from a refit


def leverages(J: np.ndarray, ratio: float) -> np.ndarray:
    """diag(J (J^T J + r I)^-1 J^T), (N,), through the smaller Gram matrix (bayes.gram_eigh)."""
    if not ratio > 0:
        raise LiftnnError(f"leave-one-out leverages need a weight decay ratio r > 0; got {ratio}")
    with limit_blas():
        lam, V, side = bayes.gram_eigh(J)
        if side == "params":  # h = rows of (J V)^2 / (lam + r)
            return np.sum((J @ V) ** 2 / (lam + ratio), axis=1)
        return np.sum(V**2 * (lam / (lam + ratio)), axis=1)  # J J^T = V lam V^T


def _estimate(E: np.ndarray, h: np.ndarray, refits: dict | None = None) -> Loo:
    """The Loo of residuals E (m, O) and leverages h (m, O), with refitted rows {i: residuals}."""
    R = E / np.clip(1.0 - h, 1e-12, None)
    for i, r in (refits or {}).items():
        R[i] = r
    return Loo(float(np.mean(R**2)), R, h, tuple(sorted(refits or ())))


def linear(X, Y, fit) -> Loo:
    """The exact leave-one-out residuals of a liftnn.baseline.LinearFit (ridge on [X, 1] with r =
    fit.ratio)."""
    X, Y = np.asarray(X, dtype=np.float64), np.asarray(Y, dtype=np.float64).reshape(len(X), -1)
    W, b = fit.params[0]
    E = X @ np.asarray(W).T + np.asarray(b) - Y
    h = leverages(baseline.jacobian(X), fit.ratio)  # the design [X, 1]
    return _estimate(E, np.repeat(h[:, None], Y.shape[1], axis=1))


def ratio_of(result, n_targets: int) -> float:
    """r = alpha / beta of the objective a Bayesian-regularised "mse" Result was trained with
    (liftnn's mu_w = 2 r / N, bayes.weight_decay)."""
    return float(result["weight_decay"]) * n_targets / 2.0


def network(model, params, X, Y, ratio: float, refit: bool = True,
            refits: dict | None = None) -> Loo:
    """The leave-one-out residuals of a network trained on (X, Y) with 1/2 sum e^2 + r/2
    ||theta||^2: linearised (module docstring), and with refit=True the samples of highest
    leverage above REFIT_LEVERAGE (at most MAX_REFITS) retrained without themselves; refits, a
    dict {sample: held-out residual} shared between calls on the same fit (earlier refits are
    reused, new ones added)."""
    X, Y = np.asarray(X, dtype=np.float64), np.asarray(Y, dtype=np.float64).reshape(len(X), -1)
    E, h = _linearised(model, params, X, Y, ratio)
    return (_with_refits(model, params, X, Y, ratio, E, h, known=refits) if refit
            else _estimate(E, h))


def _linearised(model, params, X, Y, ratio):
    """(training residuals E, leverages h), each (m, O)."""
    E = predict(model, params, X) - Y
    return E, leverages(bayes.jacobian(model, params, X), ratio).reshape(Y.shape)


def _with_refits(model, params, X, Y, ratio, E, h, target: float | None = None,
                 decided=None, known: dict | None = None) -> Loo:
    """_estimate(E, h) with the samples of highest leverage above REFIT_LEVERAGE refitted (at
    most MAX_REFITS, highest first).  With a target MSE the refits stop once the comparison with
    it is decided: the estimate is at most the target, or stays above it even if every sample
    still to refit had a held-out residual of 0.  decided(est, rest) -> bool, when given, is the
    general form (rest: the samples still to refit).  known: a dict of refits already made
    ({sample: residual}, None for a refit that failed), used instead of refitting and extended
    with the new ones."""
    if target is not None:
        def decided(est, rest):
            floor = est.mse - float(np.sum(est.residuals[rest] ** 2)) / E.size
            return est.mse <= target or floor > target

    worst = np.max(h, axis=1)
    todo = [int(i) for i in np.argsort(-worst)[:MAX_REFITS] if worst[i] > REFIT_LEVERAGE]
    refits, est = {}, _estimate(E, h)
    if decided is not None and decided(est, todo):
        return est
    for k, i in enumerate(todo):
        if known is not None and i in known:
            r = known[i]
        else:
            r = _held_out_residual(model, params, X, Y, i, ratio)
            if known is not None:
                known[i] = r
        if r is not None:
            refits[i] = r
        est = _estimate(E, h, refits)
        if decided is not None and decided(est, todo[k + 1:]):
            break
    return est


def _held_out_residual(model, params, X, Y, i: int, ratio: float):
    """f_{-i}(x_i) - y_i, f_{-i} trained by lm without sample i from params with the same r
    (None when that training does not end at a finite network).  The compiled lm of
    liftnn.bayes's refining cycles (one lane, REFIT_MAX_ITER = bayes.REFINE_MAX_ITER
    iterations): m - 1 rows pad to the training's bucket, so the refit reuses that program
    instead of running lm's Python loop (measured 4.9 s for one refit on 1,600 rows)."""
    keep = np.arange(len(X)) != i
    mu = bayes.weight_decay(ratio, int(keep.sum()) * Y.shape[1], "mse")
    problem = TrainingProblem(model, X[keep], Y[keep], loss="mse", weight_decay=mu)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res, = lm_compiled.fit_many(problem, [params], weight_decays=[mu], pad_to=1,
                                    max_iter=REFIT_MAX_ITER)
    r = predict(model, res["params"], X)[i] - Y[i]  # X's size: its program is compiled
    return r if np.all(np.isfinite(r)) else None


def _compared(model, result, X, Y, linear_fit):
    """(X, Y as float arrays (m, O), the linear model's Loo, the network's r, its linearised
    residuals E and leverages h): what both comparisons with the linear model start from."""
    X, Y = np.asarray(X, dtype=np.float64), np.asarray(Y, dtype=np.float64).reshape(len(X), -1)
    ratio = ratio_of(result, Y.size)
    return (X, Y, linear(X, Y, linear_fit), ratio,
            *_linearised(model, result["params"], X, Y, ratio))


def confirms_network(model, result, X, Y, linear_fit, refits: dict | None = None
                     ) -> tuple[bool, dict]:
    """(whether the network of `result` (Bayesian-regularised, "mse") has a leave-one-out MSE
    at most the linear model's, {"network": its MSE, "linear": the linear model's, "refitted":
    the samples refitted}).  The linearised estimate decides when it already prefers the
    network; otherwise the high-leverage samples are refitted first (refits: as `network`'s)."""
    X, Y, lin, ratio, E, h = _compared(model, result, X, Y, linear_fit)
    net = _with_refits(model, result["params"], X, Y, ratio, E, h, target=lin.mse, known=refits)
    return net.mse <= lin.mse, {"network": net.mse, "linear": lin.mse,
                                "refitted": list(net.refitted)}


#: the level of the one-sided paired t-test by which the leave-one-out errors overrule the
#: evidence's choice of the linear model (`overrules_linear`); measured on nineteen data sets
#: (docs/bayes.md "When the evidence picks the linear model"): 0.05 kept a worse network on one
#: diabetes fold (p 0.039, test R^2 -0.015), 0.01 kept none while it kept the networks of sin^2
#: n = 20 (five draws of five: test R^2 0.07 -> 0.99) and n = 30 with noise 0.3 (four
#: of five: -0.12 -> 0.72)
OVERRULE_LEVEL = 0.01


def p_value(lin: Loo, net: Loo) -> float:
    """The one-sided paired t-test's p-value for "the network's leave-one-out squared errors are
    smaller than the linear model's" (per sample, the mean over its outputs); where the
    differences are all equal (or there is one sample), 0 if that difference favours the
    network, else 1."""
    from scipy import stats

    d = np.mean(lin.residuals**2, axis=1) - np.mean(net.residuals**2, axis=1)
    if d.size < 2 or np.all(d == d[0]):
        return 0.0 if d.size and d[0] > 0 else 1.0
    return float(stats.ttest_1samp(d, 0.0, alternative="greater").pvalue)


def overrules_linear(model, result, X, Y, linear_fit, level: float = OVERRULE_LEVEL,
                     refits: dict | None = None) -> tuple[bool, dict]:
    """(whether the network of `result` has significantly smaller leave-one-out errors than the
    linear model, one-sided paired t-test at `level` (p_value), {"network", "linear": the MSEs,
    "refitted", "p_value"}).  LiftnnRegressor asks this where the evidence chose the linear
    model: on small samples a network's Laplace evidence can fall below the linear model's while
    it predicts far better (sin^2 n = 20: evidence -24.3 against -20.2, test MSE 0.0055 against
    0.42).  The refits (as in `network`) stop once the test is decided: significant, or not
    significant even with every sample still to refit at a held-out residual of 0."""
    X, Y, lin, ratio, E, h = _compared(model, result, X, Y, linear_fit)

    def decided(est, rest):
        if p_value(lin, est) < level:
            return True
        best = est.residuals.copy()
        best[rest] = 0.0
        return p_value(lin, est._replace(residuals=best)) >= level

    net = _with_refits(model, result["params"], X, Y, ratio, E, h, decided=decided, known=refits)
    p = p_value(lin, net)
    return p < level, {"network": net.mse, "linear": lin.mse, "refitted": list(net.refitted),
                       "p_value": p}


def stacking_weight(net: Loo, lin: Loo) -> float:
    """The network's weight w in [0, 1] in the combined prediction w f_network + (1 - w)
    f_linear that minimises the mean squared leave-one-out error of the two fits' held-out
    residuals: Breiman's stacked regression ("Stacked regressions", Machine Learning 24, 1996)
    for two models, with the weights nonnegative and summing to one.  In closed form
    w = sum e_l (e_l - e_n) / sum (e_l - e_n)^2, clipped to [0, 1] (1 where the residuals
    coincide)."""
    e_n, e_l = np.ravel(net.residuals), np.ravel(lin.residuals)
    if e_n.shape != e_l.shape:
        raise LiftnnError(f"stacking_weight needs residuals of one shape; got "
                          f"{np.shape(net.residuals)} and {np.shape(lin.residuals)}")
    d = e_l - e_n
    dd = float(d @ d)
    if not dd > 0:
        return 1.0
    return float(np.clip(float(e_l @ d) / dd, 0.0, 1.0))


#: the largest mean leverage gamma / N (effective parameters per target entry) at which the
#: other evidence start's network may overrule the evidence's choice by its leave-one-out
#: errors (`other_start`).  The linearised residual is first order in the removed sample, and
#: where the network spends many effective parameters per sample it flatters it: on diabetes
#: (the weak start's gamma / N = 0.47) a network with leave-one-out MSE 0.354 had test MSE 0.963.
#: Measured on nineteen tables (docs/bayes.md "When the evidence over-regularises"): every fold
#: where the test switched starts had gamma / N <= 0.11; any bound from 0.11 to 0.42 made the
#: same choices
START_MAX_LEVERAGE = 0.2


def other_start(model, result, X, Y, level: float = OVERRULE_LEVEL) -> tuple[bool, dict]:
    """(whether the other evidence start's network, result["bayes_other_start"], predicts
    held-out samples significantly better than the kept one, {"kept", "other": leave-one-out
    MSEs, "p_value", "leverage": the other's gamma / N}; (False, {}) where there is no other
    start or its mean leverage exceeds START_MAX_LEVERAGE).

    The evidence of one weight decay for every weight can prefer a network regularised far too
    strongly: on 1,600 rows of the RAND health insurance data (statsmodels' randhie) it kept
    the strong start's near-linear network (gamma 10) in every fold by 150 nats over the weak
    start's (gamma 135), whose test MSE was lower by 0.07 (R^2 0.14 against 0.06).  The
    leave-one-out errors see it (0.82 against 0.90); the test is the one-sided paired t-test of
    `p_value` at `level`."""
    other = result.get("bayes_other_start")
    X, Y = np.asarray(X, dtype=np.float64), np.asarray(Y, dtype=np.float64).reshape(len(X), -1)
    if other is None or not other["effective_params"] <= START_MAX_LEVERAGE * Y.size:
        return False, {}
    kept = network(model, result["params"], X, Y, ratio_of(result, Y.size))
    alt = network(model, other["params"], X, Y, ratio_of(other, Y.size))
    p = p_value(kept, alt)
    return p < level, {"kept": kept.mse, "other": alt.mse, "p_value": p,
                       "leverage": float(other["effective_params"]) / Y.size}
