"""`weight_decay="bayes"`: Bayesian regularisation (the evidence framework) for the Gauss-Newton
family (gn, lm, alm, lifted-gn); docs/bayes.md has the derivation and the measurements.

MacKay's model (Neural Computation 4, 1992) with a Gaussian prior on the P weights and Gaussian
noise on the N = m * d_out target entries: with E_D = 1/2 sum e^2 (e = f_theta(X) - Y) and
E_W = 1/2 ||theta||^2 the posterior is exp(-M) with M = beta E_D + alpha E_W.  Its minimiser is
liftnn's objective mse + mu_w/2 ||theta||^2 with

    mu_w = 2 alpha / (beta N)                                   (only r = alpha / beta matters)

At a minimiser, with J = d f_theta(X) / d theta (N x P) and lambda_i the eigenvalues of J^T J,
the Gauss-Newton (Laplace) Hessian of M is A = beta J^T J + alpha I and

    gamma = sum_i beta lambda_i / (beta lambda_i + alpha) = sum_i lambda_i / (lambda_i + r)
    alpha <- gamma / (2 E_W),    beta <- (N - gamma) / (2 E_D)
    ln p(Y | alpha, beta) = -beta E_D - alpha E_W - 1/2 ln det A + P/2 ln alpha + N/2 ln beta
                            - N/2 ln(2 pi)

gamma (`effective_params`) counts the well-determined weights.  The eigenvalues come from the
smaller Gram matrix, J^T J (P x P) or J J^T (N x N): they share the non-zero spectrum, so nothing
larger than min(N, P)^2 is formed.  At a feasible lifted point the exactly condensed reduced
system of alm / lifted-gn is this single-shooting Gauss-Newton matrix (docs/lifted.md), so one
re-estimation serves every method.

The layer (`fit`): start from the r_0 at which gamma = min(N, P)/2 on the initial network's
Jacobian (trainbr's gamma_0 = P gives a negative beta when P > N, and a start from the initial
errors regularised sin^2 to the zero function), train with mu_w = 2 r / N, re-estimate r on the trained network, and
train again warm-started from it, until r and gamma settle (relative changes below `tol`) or
`max_cycles` trainings; per initialisation.  The Result reports alpha, beta, effective_params,
log_evidence, weight_decay (the final mu_w) and bayes_path (one row per cycle).

`Posterior` is the Laplace posterior of a fit: predictive variance 1/beta + g(x)^T A^{-1} g(x),
g(x) = d f_theta(x) / d theta, through the same smaller Gram (Woodbury when P > N).
"""

from __future__ import annotations

import concurrent.futures
import functools
import math
import os
import threading
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from liftnn import padding, xla_options
from liftnn._validate import check_choice
from liftnn.blas_threads import limit_blas
from liftnn.errors import LiftnnError
from liftnn.models.mlp import MLP
from liftnn.problem import TrainingProblem, host_flat, loss_of, predict, to_device
from liftnn.solvers.ggn import ggn_factor_fn
from liftnn.solvers.lm_compiled import mlp_jacobian
from liftnn.solvers.result import INTERRUPTED

#: the methods whose curvature is the Gauss-Newton matrix the evidence framework uses
METHODS = ("gn", "lm", "alm", "lifted-gn")
#: options of the layer itself (taken out of the method's options by liftnn.train)
DEFAULTS = {"bayes_max_cycles": 12, "bayes_tol": 0.02, "bayes_start": "auto",
            "bayes_refine": "auto"}
#: "auto" (the default): least squares the strong start, and the weak one with more weights
#: than targets or where the strong start's network is a constant (`second_start`;
#: docs/bayes.md "Which start"); the cross-entropy both, since the strong start alone
#: classified iris better (0.917 vs 0.889) but spirals far worse (0.761 vs 0.990),
#: docs/bayes.md "Classification"
STARTS = ("auto", "both", "weak", "strong")
#: who trains the cycles after the first: "lm" (Levenberg-Marquardt from the previous cycle's
#: weights), "same" (the method itself) or "auto" (`refiner`)
REFINES = ("auto", "lm", "same")
#: the lifted methods whose later cycles lm trains under bayes_refine="auto" (least squares)
LIFTED = ("alm", "lifted-gn")
#: "auto" refines with lm only while P <= REFINE_MAX_RATIO * N: measured (docs/bayes.md "Later
#: cycles by lm"), lm's refinement was faster at an equal or lower test MSE on diabetes (P/N =
#: 1.4) and friedman1 (1.2), while on sin^2 n=40 (P/N = 8: the later lifted trainings found
#: better networks) and Santa Fe (6.6: lm's N x N Gram of a 3937-weight Jacobian costs more than
#: alm's steps) the method itself did better; every ratio between 1.4 and 6.6 makes these choices
REFINE_MAX_RATIO = 3.0
#: lm's iteration limit in a refining cycle: measured on sin^2 ReLU n=40 and friedman1 (10 seeds
#: each), 400 gave the same kept networks as 100 (docs/bayes.md "Later cycles by lm")
REFINE_MAX_ITER = 100


class Evidence(NamedTuple):
    """The evidence quantities of one trained network (MacKay's half-sum conventions)."""

    alpha: float
    beta: float
    gamma: float  # effective number of parameters
    log_evidence: float
    ratio: float  # the re-estimated r = alpha / beta for the next training


def check(method: str, loss: str, options: dict) -> dict:
    """Refuse what the layer cannot do before any work; returns the layer's own options (taken
    out of `options`, in place)."""
    if method not in METHODS:
        raise LiftnnError(f"weight_decay='bayes' (Bayesian regularisation) needs a Gauss-Newton "
                          f"method: one of {', '.join(METHODS)}; got {method!r}")
    if loss not in ("mse", "sse", "cross_entropy"):
        raise LiftnnError(f"weight_decay='bayes' is implemented for the least-squares losses "
                          f"(mse, sse) and the softmax cross-entropy; got loss={loss!r}")
    own = {k: options.pop(k, v) for k, v in DEFAULTS.items()}
    check_choice("bayes_start", own["bayes_start"], STARTS)
    check_choice("bayes_refine", own["bayes_refine"], REFINES)
    if own["bayes_refine"] == "lm" and loss == "cross_entropy" and method in LIFTED:
        raise LiftnnError("bayes_refine='lm' refines least-squares fits only; with "
                          "loss='cross_entropy' give bayes_refine='same' (or 'auto')")
    if isinstance(own["bayes_max_cycles"], bool) or not isinstance(
            own["bayes_max_cycles"], (int, np.integer)) or own["bayes_max_cycles"] < 1:
        raise LiftnnError(f"bayes_max_cycles must be an integer >= 1; got "
                          f"{own['bayes_max_cycles']!r}")
    if not (isinstance(own["bayes_tol"], (int, float)) and 0 < own["bayes_tol"] < 1):
        raise LiftnnError(f"bayes_tol must be a number in (0, 1); got {own['bayes_tol']!r}")
    return own


@functools.lru_cache(maxsize=32)
def _jacobian_fn(model):
    """jit of (theta, X) -> J = d f_theta(X).ravel() / d theta, (N, P) with N = m * d_out: for an
    MLP by backpropagation written out for all samples (lm_compiled's, measured on diabetes
    10-16-1 with 368 rows: 0.5 ms a call against 3.5 ms, and a quicker compile, than jax.jacfwd),
    for other models by jax.jacfwd."""
    unravel = ravel_pytree(model.init(0))[1]
    if isinstance(model, MLP):
        backprop = mlp_jacobian(model, unravel, 1.0)
        d_out = model.sizes[-1]

        def jac(theta, X):
            return backprop(theta, X, jnp.zeros((X.shape[0], d_out), X.dtype))
    else:
        def jac(theta, X):
            return jax.jacfwd(lambda t: model.apply(unravel(t), X).reshape(-1))(theta)

    return xla_options.jit(jac)


def jacobian(model, params, X) -> np.ndarray:
    """The single-shooting output Jacobian J (N x P) at params on X: (m, d_in); X's rows padded
    to liftnn.padding's bucket and the padded rows of J dropped (one program per padded size)."""
    X = np.asarray(X, dtype=np.float64)
    m, size = X.shape[0], padding.size_for(X.shape[0])
    J = np.asarray(_jacobian_fn(model)(host_flat(params), to_device(padding.pad_rows(X, size))))
    return J[: m * (J.shape[0] // size)]


def gram_eigh(J: np.ndarray):
    """Eigen-decomposition of the smaller Gram matrix of J (N x P): (lambda, V, side) with side
    "params" (J^T J = V diag(lambda) V^T, P x P) or "samples" (J J^T, N x N); lambda >= 0."""
    N, P = J.shape
    side = "params" if P <= N else "samples"
    lam, V = np.linalg.eigh(J.T @ J if side == "params" else J @ J.T)
    return np.clip(lam, 0.0, None), V, side


def effective_params(lam: np.ndarray, ratio: float) -> float:
    """gamma = sum_i lambda_i / (lambda_i + r) (eigenvalues of J^T J; zero ones add nothing)."""
    return float(np.sum(lam / (lam + ratio)))


def evidence(lam: np.ndarray, sse: float, ssw: float, N: int, P: int, ratio: float) -> Evidence:
    """Re-estimate at a network trained with r = alpha / beta (module docstring).

    lam: eigenvalues of the smaller Gram matrix; sse = sum e^2; ssw = ||theta||^2."""
    gamma = min(effective_params(lam, ratio), N - 0.5)
    sse, ssw = max(sse, 1e-300), max(ssw, 1e-300)
    alpha, beta = gamma / ssw, (N - gamma) / sse
    n = lam.size  # min(N, P) eigenvalues; the other P - n of J^T J are zero
    logdet = float(np.sum(np.log(beta * lam + alpha))) + (P - n) * math.log(alpha)
    log_ev = (-0.5 * beta * sse - 0.5 * alpha * ssw - 0.5 * logdet + 0.5 * P * math.log(alpha)
              + 0.5 * N * math.log(beta) - 0.5 * N * math.log(2 * math.pi))
    return Evidence(float(alpha), float(beta), float(gamma), float(log_ev), float(alpha / beta))


def strong_start(sse: float, ssw: float, N: int, P: int) -> float:
    """r_0 from gamma_0 = min(P, N/2) and the initial network's errors and weights (MacKay's
    re-estimation applied at the start): a strong prior, the smooth end of the path."""
    g = min(P, N / 2.0)
    return g * max(sse, 1e-12) / ((N - g) * max(ssw, 1e-12))


def weak_start(lam: np.ndarray, N: int, P: int) -> float:
    """r_0 with gamma(r_0) = min(N, P) / 2 at the initial network's Jacobian (eigenvalues lam
    of the smaller Gram matrix): half the weights well determined by the prior at the start,
    whatever the scales of the data and the weights (gamma(r) falls from rank to 0 as r grows;
    solved by bisection on log r)."""
    target = min(N, P) / 2.0
    lam = lam[lam > 0]
    if lam.size == 0 or effective_params(lam, 0.0) <= target:
        return float(np.median(lam)) if lam.size else 1.0
    lo, hi = math.log(lam.min()) - 30.0, math.log(lam.max()) + 30.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if effective_params(lam, math.exp(mid)) > target else (lo, mid)
    return math.exp(0.5 * (lo + hi))


def weight_decay(ratio: float, N: int, loss: str, m: int | None = None) -> float:
    """liftnn's mu_w for r = alpha / beta: 2 r / N for "mse" (a mean), r for "sse" (half sum);
    for "cross_entropy" (a mean over the m samples, no beta) alpha / m."""
    if loss == "cross_entropy":
        return ratio / m
    return 2.0 * ratio / N if loss == "mse" else ratio


def _sums(model, params, X, Y, loss: str = "mse"):
    """(E, ||theta||^2): E = sum e^2 for least squares, the summed cross-entropy for
    "cross_entropy" (the evidence's data terms)."""
    if loss == "cross_entropy":
        data = loss_of(model, "cross_entropy", params, X, Y) * int(np.shape(Y)[0])
    else:
        data = float(np.sum((predict(model, params, X) - np.asarray(Y)) ** 2))
    theta = host_flat(params)
    return data, float(theta @ theta)


# ---- classification: MacKay (1992), "The evidence framework applied to classification networks"


def ggn_jacobian(model, params, X, Y) -> np.ndarray:
    """A factor F (m O x P) of the generalised Gauss-Newton matrix of the *summed* softmax
    cross-entropy, F^T F = J^T H J with J = d logits / d theta and H_i = diag(p_i) - p_i p_i^T
    the loss Hessian of sample i (liftnn.solvers.ggn.ggn_factor_fn's data rows, which are those
    of the mean, times sqrt(m)); Y one-hot (m, O)."""
    problem = TrainingProblem(model, X, Y, loss="cross_entropy")
    rows = ggn_factor_fn(problem, weight_decay_rows=False)(problem.flatten(params))
    return math.sqrt(problem.m) * np.asarray(rows)


def evidence_ce(lam: np.ndarray, ce_sum: float, ssw: float, P: int, ratio: float) -> Evidence:
    """The classification evidence at a network trained with alpha = ratio: the data term is
    the summed cross-entropy (no noise level, beta = 1; the Evidence's beta is nan), A =
    J^T H J + alpha I with eigenvalues lam + alpha, and

        gamma = sum lam / (lam + alpha),   alpha <- gamma / ||theta||^2,
        ln p(D | alpha) = -E_D - alpha E_W - 1/2 ln det A + P/2 ln alpha."""
    gamma = min(effective_params(lam, ratio), P - 0.5)
    ssw = max(ssw, 1e-300)
    alpha = max(gamma, 1e-12) / ssw
    n = lam.size
    logdet = float(np.sum(np.log(lam + alpha))) + (P - n) * math.log(alpha)
    log_ev = -ce_sum - 0.5 * alpha * ssw - 0.5 * logdet + 0.5 * P * math.log(alpha)
    return Evidence(float(alpha), math.nan, float(gamma), float(log_ev), float(alpha))


def _evidence_at(model, params, X, Y, loss, N, P, ratio) -> Evidence:
    """Re-estimation at a trained network, least squares (`evidence`) or classification
    (`evidence_ce`)."""
    if loss == "cross_entropy":
        lam = gram_eigh(ggn_jacobian(model, params, X, Y))[0]
        return evidence_ce(lam, *_sums(model, params, X, Y, loss), P, ratio)
    return evidence(gram_eigh(jacobian(model, params, X))[0], *_sums(model, params, X, Y), N,
                    P, ratio)


def _starts(start, model, X, Y, loss, p0s, N, P) -> list:
    """r_0 per initialisation for the weak or the strong start (least squares: see weak_start
    and strong_start; classification: gamma_0 = rank / 2 by the same bisection on J^T H J, or
    the strong alpha_0 = min(P, N/2) / ||theta_0||^2)."""
    if start == "weak":
        if loss == "cross_entropy":
            return [weak_start(gram_eigh(ggn_jacobian(model, p, X, Y))[0], N, P) for p in p0s]
        return [weak_start(gram_eigh(jacobian(model, p, X))[0], N, P) for p in p0s]
    if loss == "cross_entropy":
        return [min(P, N / 2.0) / max(_sums(model, p, X, Y, loss)[1], 1e-12) for p in p0s]
    return [strong_start(*_sums(model, p, X, Y), N, P) for p in p0s]


def refiner(method: str, loss: str, own: dict, N: int, P: int) -> str | None:
    """The method that trains the cycles after the first, or None (the method itself), for P
    weights and N target entries.

    "auto": lm for the lifted methods (alm, lifted-gn) on least squares while P <=
    REFINE_MAX_RATIO * N, else the method itself; "lm" always lm (least squares), "same" never.
    The first training from the initial weights is where the lifted method earns its keep (it
    finds the basin); a later cycle only moves the weight decay and starts from the previous
    cycle's network, a local re-fit that Levenberg-Marquardt does in a fraction of the lifted
    iterations where the data determine most weights (REFINE_MAX_RATIO)."""
    choice = own.get("bayes_refine", "auto")
    if choice == "same" or method not in LIFTED or loss == "cross_entropy":
        return None
    if choice == "auto" and P > REFINE_MAX_RATIO * N:
        return None
    return "lm"


def fit(train_cycle, model, X, Y, loss: str, p0s: list, own: dict, refine_cycle=None):
    """The evidence cycles for K initialisations (module docstring), from the weak start, the
    strong start or both (`bayes_start`); "auto": for least squares the strong start and the
    weak one where `second_start` asks for it (`_run_starts`), for the cross-entropy both.
    Where both starts ran, each initialisation keeps the run with the higher `rank`
    (bayes_start_used says which) and carries the other start's Result as
    bayes_other_start.

    train_cycle(mus, params_list) -> list[Result]: trains every initialisation with its own
    weight decay mus[k] from params_list[k] (liftnn.train supplies it); refine_cycle, the same
    for the cycles after the first (None: train_cycle for every cycle; `refiner`).  Returns, per
    initialisation, the Result of the kept candidate with the evidence fields added (status
    interrupted for all when a training was interrupted)."""
    X, Y = np.asarray(X), np.asarray(Y)
    N, P = int(Y.size), int(sum(np.size(a) for a in jax.tree_util.tree_leaves(p0s[0])))

    def run(start, stop, ks=None):
        picked = list(p0s) if ks is None else [p0s[k] for k in ks]
        r0 = _starts(start, model, X, Y, loss, picked, N, P)
        return _cycles(train_cycle, model, X, Y, loss, picked, own, r0, N, P, stop, refine_cycle)

    start = own["bayes_start"]
    if start == "auto" and loss != "cross_entropy":
        starts = ("strong", "weak")

        def needed(first):  # the initialisations the weak start is still needed for
            return [k for k, r in enumerate(first)
                    if second_start(r, int(Y.shape[1]), P, N)]
    else:
        starts = ("weak", "strong") if start in ("both", "auto") else (start,)

        def needed(first):  # every one
            return list(range(len(first)))
    runs, stopped = _run_starts(starts, run, needed, loss)

    def interrupted():
        return stopped or any(_interrupted(rs.values()) for rs in runs.values())

    out = []
    for k in range(len(p0s)):
        tried = [s for s in runs if k in runs[s]]
        best = max(tried, key=lambda s: rank(runs[s][k]["effective_params"],
                                             runs[s][k]["log_evidence"]))
        res = runs[best][k]
        res["bayes_start_used"] = best
        res["bayes_log_evidence_by_start"] = {s: runs[s][k]["log_evidence"] for s in tried}
        other = [s for s in tried if s != best]
        if other:  # the runner-up, for checks the evidence cannot make (liftnn.loo.other_start)
            res["bayes_other_start"] = runs[other[0]][k]
            res["bayes_other_start"]["bayes_start_used"] = other[0]
        if interrupted():
            res.update(status=INTERRUPTED, success=False)
            if "interrupted" not in res.get("message", ""):
                res["message"] = (f"{res.get('message', '')}; interrupted during Bayesian "
                                  f"regularisation (the other start): the best network so far")
        out.append(res)
    return out


def second_start(result: dict, d_out: int, n_params: int, n_targets: int) -> bool:
    """Whether bayes_start="auto" (least squares) needs the weak start besides the strong one:
    with more weights than targets (n_params > n_targets) always, since there the weak start's
    network won where the strong start's was good as well (Santa Fe 80-48-1: median free-run MSE
    0.110 with both starts against 0.161 from the strong start alone); with more targets than
    weights only where the strong start's network is a constant (fewer than d_out + 1
    well-determined weights, nothing beyond the output biases).  There the data determine the
    weights, and on the eleven regression tables of docs/bayes.md "Which start" the weak start
    (half of them under the prior at the start) was kept once, at a lower test R²."""
    if n_params > n_targets:
        return True
    return not result["effective_params"] >= d_out + 1


#: LIFTNN_BAYES_THREADS: "off" (or 1) trains the two starts one after the other, "on" (or 2)
#: side by side in two threads; unset: side by side for least squares when the process may use
#: two or more cores (`parallel_starts`)
THREADS_ENV = "LIFTNN_BAYES_THREADS"


def parallel_starts(loss: str = "mse") -> bool:
    """Whether the weak and the strong start train side by side (THREADS_ENV); unset: for least
    squares where the process may use two or more cores, never for the cross-entropy.  Two
    lifted cross-entropy trainings side by side contend pathologically on the CPU: measured
    2026-12-07 (2-core), two alm trainings of digits 64-16-10 (P = 1210, the cg reduced solve)
    in two threads had not finished after 200 s, each taking 7 s alone (also with
    OPENBLAS_NUM_THREADS=1 and XLA's Eigen threads off; least-squares cg on diabetes: 21.9 s
    one after the other, 16.5 s side by side), so weight_decay="bayes" on digits took over
    10 min per seed against 178 s one after the other; on spirals and iris side by side
    gained nothing (21.0 / 6.6 s against 24.3 / 6.4 s for three seeds)."""
    v = os.environ.get(THREADS_ENV, "").strip().lower()
    if v in ("off", "0", "1", "no", "false"):
        return False
    if v in ("on", "2", "yes", "true"):
        return True
    if loss == "cross_entropy":
        return False
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        cores = os.cpu_count() or 1
    return cores >= 2


def _interrupted(results) -> bool:
    """Whether a trainer returned status interrupted for any of these Results."""
    return any(r.get("status") == INTERRUPTED for r in results)


def _run_starts(starts, run, needed, loss: str = "mse"):
    """({start: {k: Result}}, whether the call was interrupted while waiting).

    needed(first_results) -> the initialisations the second start is needed for (all for
    bayes_start="both"; `second_start`'s for "auto"); the second start's Results are kept for
    those only.  One after the other, the second start trains only those.  Side by side
    (two starts and parallel_starts()), the second trains every initialisation in a worker
    thread while the first trains here: XLA releases the GIL while it runs (measured: two
    10-seed alm trainings on diabetes 4.55 s one after the other, 3.07 s side by side on two
    cores, identical results), and where it is needed for none, `stop` ends it after its current
    training and its Results are dropped.  Ctrl-C reaches this (the main) thread only: the first
    start's trainer turns it into interrupted Results, or it arrives while waiting for the
    worker; either way `stop` is set, the worker ends after its current training (no further
    cycle), and the call counts as interrupted.  One after the other, an interrupted start skips
    the next."""
    if len(starts) < 2 or not parallel_starts(loss):
        runs = {}
        for start in starts:
            if any(_interrupted(rs.values()) for rs in runs.values()):
                break  # Ctrl-C / SIGTERM: no second start
            if not runs:
                first = run(start, None)
                runs[start] = dict(enumerate(first))
                continue
            ks = needed(first)
            if ks:
                runs[start] = dict(zip(ks, run(start, None, ks)))
        return runs, False
    stop = threading.Event()
    stopped = False
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="liftnn-bayes")
    try:
        second = pool.submit(run, starts[1], stop)
        try:
            first = run(starts[0], stop)
        except BaseException:  # an uncaught Ctrl-C or an error: let the worker end, then raise
            stop.set()
            raise
        ks = needed(first)
        if _interrupted(first) or not ks:  # not ks: the second start is dropped
            stop.set()
        while True:
            try:
                other = second.result(timeout=0.25)
                break
            except concurrent.futures.TimeoutError:
                continue
            except KeyboardInterrupt:
                stop.set()
                stopped = True
    finally:
        pool.shutdown(wait=True)
    runs = {starts[0]: dict(enumerate(first))}
    if ks:
        runs[starts[1]] = {k: other[k] for k in ks}
    return runs, stopped or (stop.is_set() and bool(ks))


#: a network with fewer effective parameters than this predicts (nearly) a constant
DEGENERATE_GAMMA = 1.0


def rank(gamma: float, log_evidence: float) -> tuple:
    """The order in which candidate networks are preferred: non-degenerate ones (gamma >=
    DEGENERATE_GAMMA) first, then by log evidence.  At a collapsed network (all weights near 0)
    the Laplace approximation fails: the h! 2^h symmetric modes coincide and the posterior is far
    from Gaussian, and its evidence was measured to beat good fits (sin^2 n=20: -20.0 for the
    constant against -21.2 for test MSE 0.0045), so it is kept only when every candidate is
    degenerate."""
    return (gamma >= DEGENERATE_GAMMA, log_evidence)


#: evidence cycles in a row without a better candidate that end an initialisation's cycles: the
#: fixed-point iteration is not an ascent of the evidence and, measured on diabetes and sin^2,
#: walks away from its best network to a worse fixed point (diabetes: log evidence -390 at gamma
#: 27 in the first training, -532 at gamma 150 where it settled four trainings later)
CYCLE_PATIENCE = 2


def _cycles(train_cycle, model, X, Y, loss, p0s, own, ratio, N, P, stop=None, refine_cycle=None):
    """Train, re-estimate r, train again until settled (fit's loop, from the ratios given; the
    cycles after the first by refine_cycle when given); `stop` (a threading.Event or None), when
    set, ends the cycles before the next training.

    Every cycle's network is a candidate model; each initialisation returns the one with the
    highest log evidence (often not the last: the fixed-point iteration of alpha and beta does
    not climb the evidence monotonically), with the whole path in bayes_path."""
    K = len(p0s)
    ratio = list(ratio)
    gamma = [math.nan] * K
    settled = [False] * K
    path: list[list] = [[] for _ in range(K)]
    params = list(p0s)
    best: list = [None] * K  # (Evidence, Result, weight decay used, cycle)
    falls = [0] * K  # trainings in a row without a better candidate
    interrupted = False
    for cycle in range(int(own["bayes_max_cycles"])):
        todo = [k for k in range(K) if not settled[k] and falls[k] < CYCLE_PATIENCE]
        if not todo or interrupted:
            break
        if cycle and stop is not None and stop.is_set():  # the other start was interrupted
            interrupted = True  # (_run_starts); after one training, so there is a candidate
            break
        mus = [weight_decay(ratio[k], N, loss, int(Y.shape[0])) for k in todo]
        trainer = train_cycle if cycle == 0 or refine_cycle is None else refine_cycle
        for k, mu, res in zip(todo, mus, trainer(mus, [params[k] for k in todo])):
            ev = _evidence_at(model, res["params"], X, Y, loss, N, P, ratio[k])
            path[k].append({"cycle": cycle + 1, "weight_decay": mu, "gamma": ev.gamma,
                            "alpha": ev.alpha, "beta": ev.beta, "log_evidence": ev.log_evidence,
                            "nit": int(res.get("nit", 0)), "status": res.get("status"),
                            "trainer": res.get("bayes_trainer", "")})
            tol = own["bayes_tol"]
            settled[k] = (abs(math.log(ev.ratio / ratio[k])) < tol
                          and abs(ev.gamma - gamma[k]) < tol * max(ev.gamma, 1.0))
            if best[k] is None or rank(ev.gamma, ev.log_evidence) > rank(best[k][0].gamma,
                                                                         best[k][0].log_evidence):
                best[k], falls[k] = (ev, res, mu, cycle + 1), 0
            else:
                falls[k] += 1  # see CYCLE_PATIENCE
            gamma[k], params[k], ratio[k] = ev.gamma, res["params"], ev.ratio
            interrupted |= res.get("status") == INTERRUPTED
    results = []
    for k in range(K):
        ev, res, mu, at = best[k]
        res.update(alpha=ev.alpha, beta=ev.beta, effective_params=ev.gamma,
                   log_evidence=ev.log_evidence, weight_decay=mu, bayes_path=path[k],
                   bayes_cycles=len(path[k]), bayes_settled=settled[k], n_params=P, n_targets=N,
                   bayes_cycle=at, bayes_refined=at > 1 and refine_cycle is not None)
        if interrupted:  # the training caught Ctrl-C / SIGTERM: the whole call was interrupted
            res.update(status=INTERRUPTED, success=False)
            res["message"] = (f"{res.get('message', '')}; interrupted during Bayesian "
                              f"regularisation cycle {len(path[k])}: the best network so far")
        elif not settled[k] and falls[k] >= CYCLE_PATIENCE:
            res["message"] = (f"{res.get('message', '')}; Bayesian regularisation: the log "
                              f"evidence fell in {CYCLE_PATIENCE} trainings in a row after the "
                              f"best network (training {at} of {len(path[k])}), which is kept")
        elif not settled[k]:
            note = (f"Bayesian regularisation: alpha, beta, gamma had not settled after "
                    f"{len(path[k])} trainings (bayes_max_cycles)")
            res["message"] = f"{res.get('message', '')}; {note}"
        results.append(res)
    return results


class Posterior(NamedTuple):
    """The Laplace (Gauss-Newton) posterior of a Bayesian-regularised network.

    Predictive variance of output o at x: 1/beta + c0 ||g||^2 + sign ||B g||^2 with
    g = d f_o(x) / d theta (P,): for P <= N, c0 = 0, sign = +1, B = diag((beta lambda + alpha)
    ^-1/2) V^T; for P > N (Woodbury), c0 = 1/alpha, sign = -1,
    B = diag((alpha (alpha/beta + lambda))^-1/2) U^T J."""

    model: object
    params: list
    alpha: float
    beta: float
    c0: float
    sign: float
    B: np.ndarray

    @classmethod
    def from_fit(cls, model, params, X, alpha: float, beta: float) -> Posterior:
        return cls.from_jacobian(model, params, jacobian(model, params, X), alpha, beta)

    @classmethod
    def from_jacobian(cls, model, params, J: np.ndarray, alpha: float, beta: float) -> Posterior:
        """The posterior from the training Jacobian J (N x P) at params (from_fit computes it;
        liftnn.baseline has the linear model's in closed form)."""
        with limit_blas():
            lam, V, side = gram_eigh(J)
        if side == "params":
            B = (V / np.sqrt(beta * lam + alpha)).T
            return cls(model, params, alpha, beta, 0.0, 1.0, B)
        B = (V / np.sqrt(alpha * (alpha / beta + lam))).T @ J
        return cls(model, params, alpha, beta, 1.0 / alpha, -1.0, B)

    def predict(self, X):
        """(mean (m, d_out), std (m, d_out)) at X: (m, d_in); std includes the noise 1/beta."""
        X = np.asarray(X, dtype=np.float64)
        m = X.shape[0]
        G = jacobian(self.model, self.params, X)  # (m*O, P)
        mean = predict(self.model, self.params, X)
        with limit_blas():
            GB = G @ self.B.T
        var_w = self.c0 * np.sum(G**2, axis=1) + self.sign * np.sum(GB**2, axis=1)
        var = 1.0 / self.beta + np.clip(var_w, 0.0, None)
        return mean, np.sqrt(var).reshape(m, -1)
