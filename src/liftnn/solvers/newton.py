"""Newton's method with the exact Hessian ("newton") and with Hessian-vector products only
("newton-cg").

Seed 003 ("Second order", "Pseudo-code for implementing Newton's method", "On the Hessian H"):
the quadratic model E(w) ~ E + g^T dw + 1/2 dw^T H dw is minimised by dw = -H^{-1} g; this is a
descent direction only when H is positive definite, and near saddle points the regularised
Hessian H + alpha I is used instead.

"newton" (Nocedal & Wright Algorithm 3.3, "Cholesky with added multiple of the identity"):
H = jax.hessian(f)(x).  Try the Cholesky factorisation of H; if it fails (H not positive
definite), try H + alpha I with alpha = shift0 * max_i |H_ii| (shift0 = 1e-3; alpha = shift0 when
the diagonal is zero), then alpha <- shift_factor * alpha (10) until Cholesky succeeds.  Solve
(H + alpha I) d = -g with the factor, then take a line search step along d (Armijo backtracking
from a = 1 by default).  The shift used is recorded per iteration as ``shift``.

"newton-cg" (Nocedal & Wright Algorithm 7.1, line-search Newton-CG): H is never formed; the
Newton system H d = -g is solved approximately by conjugate gradients using products
H v = d/de grad f(x + e v) (one forward-over-reverse jax.jvp of jax.grad, seed 003: "all we need
is the product of H with an arbitrary vector").  The inner CG stops when
||H z + g|| <= min(0.5, sqrt(||g||)) ||g|| (superlinear forcing sequence), after cg_max_iter
products (default 20 n), or at negative curvature (p^T H p <= 0): then it returns the current
iterate z, or -g if that happens in the first inner iteration.  The inner loop is one jitted
jax.lax.while_loop; nhev counts the Hessian-vector products.

Options (besides the common ones): line_search = "armijo" | "wolfe", mu = 1e-4 (sufficient
decrease), eta = 0.9 (curvature, for "wolfe"), shrink = 0.5 (Armijo backtracking factor),
max_ls = 50; newton: shift0 = 1e-3, shift_factor = 10; newton-cg: cg_max_iter = None (20 n).
History entries: newton "shift" (the alpha used, 0 when H itself was positive definite; Result
"shifted_iterations"); newton-cg "cg_iters" (Hessian-vector products of the inner solve) and
"negative_curvature" (the inner solve stopped at p^T H p <= 0; Result
"negative_curvature_exits").
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg as sla

from liftnn._validate import choice, integer, number
from liftnn.solvers import result as R
from liftnn.solvers.driver import Iterate, Step, cached_by_function
from liftnn.solvers.linesearch import (
    armijo,
    check_armijo_parameters,
    check_wolfe_parameters,
    strong_wolfe,
)

_LS = {"line_search": "armijo", "mu": 1e-4, "eta": 0.9, "shrink": 0.5, "max_ls": 50}
NEWTON_DEFAULTS = {**_LS, "shift0": 1e-3, "shift_factor": 10.0}
NEWTON_CG_DEFAULTS = {**_LS, "cg_max_iter": None}


def validate_line_search(o: dict) -> dict:
    """Check line_search, mu, eta, shrink, max_ls in place (shared with Gauss-Newton)."""
    choice(o, "line_search", ("armijo", "wolfe"))
    o["mu"], o["eta"] = check_wolfe_parameters(o["mu"], o["eta"])
    o["mu"], o["shrink"] = check_armijo_parameters(o["mu"], o["shrink"])
    integer(o, "max_ls", 1)
    return o


def validate(method: str, o: dict) -> dict:
    """Check the Newton options in place (LiftnnError naming a bad one)."""
    validate_line_search(o)
    if method == "newton":
        number(o, "shift0", 0.0, lo_open=True)
        number(o, "shift_factor", 1.0, lo_open=True)
    else:
        integer(o, "cg_max_iter", 1, allow_none=True)
    return o


def line_search_step(ev, it: Iterate, d: np.ndarray, o: dict, info: dict) -> Step:
    """Search along the descent direction d from a = 1 (Armijo backtracking or strong Wolfe per
    o["line_search"]) and return the driver's Step (used by newton, newton-cg and gn; for gn,
    ev is a ResidualEvaluator and f is the cost 1/2 ||r||^2)."""
    slope = float(it.g @ d)
    if o["line_search"] == "wolfe":
        ls = strong_wolfe(ev.fg, it.x, d, it.f, it.g, step0=1.0, mu=o["mu"], eta=o["eta"],
                          max_evals=o["max_ls"])
    else:
        ls = armijo(ev.f, it.x, d, it.f, slope, step0=1.0, mu=o["mu"], shrink=o["shrink"],
                    max_evals=o["max_ls"])
    if ls.unbounded:
        return Step(None, ls.step, R.DIVERGED, f"the loss became -inf ({ls.message})", info)
    if not ls.success:
        return Step(None, ls.step, R.LINE_SEARCH_FAILED, f"line search failed: {ls.message}",
                    info)
    return Step(ev.accepted(ls), ls.step, info=info)


def shifted_cholesky(H: np.ndarray, shift0: float = 1e-3, factor: float = 10.0,
                     max_tries: int = 80) -> tuple[np.ndarray, float]:
    """Lower Cholesky factor of H + alpha I with the smallest alpha in {0, a0, a0 * factor, ...},
    a0 = shift0 * max|diag H| (shift0 when the diagonal is 0); seed 003's regularised Hessian,
    Nocedal & Wright Algorithm 3.3.  H: (n, n) symmetric.  Returns (L, alpha)."""
    H = 0.5 * (H + H.T)
    try:
        return np.linalg.cholesky(H), 0.0
    except np.linalg.LinAlgError:
        pass
    scale = float(np.max(np.abs(np.diag(H))))
    alpha = shift0 * scale if scale > 0 else shift0
    eye = np.eye(H.shape[0])
    for _ in range(max_tries):
        try:
            return np.linalg.cholesky(H + alpha * eye), alpha
        except np.linalg.LinAlgError:
            alpha *= factor
    raise np.linalg.LinAlgError(f"H + alpha I not positive definite up to alpha = {alpha:g}")


def make_newton(ev, o: dict):
    """(init, step, summary) of Newton with exact Hessian and shifted Cholesky (module doc)."""

    def init(it: Iterate) -> int:
        return 0  # number of iterations whose Hessian needed a shift

    def step(n_shifted: int, it: Iterate):
        H = ev.hess(it.x)
        if not np.all(np.isfinite(H)):
            return n_shifted, Step(None, 0.0, R.DIVERGED, "the Hessian is not finite")
        try:
            L, alpha = shifted_cholesky(H, o["shift0"], o["shift_factor"])
        except np.linalg.LinAlgError as exc:
            return n_shifted, Step(None, 0.0, R.DIVERGED, str(exc))
        d = -sla.cho_solve((L, True), it.g)
        info = {"shift": alpha}
        if not float(it.g @ d) < 0.0:
            return n_shifted, Step(None, 0.0, R.STALLED,
                                   "the Newton direction is not a descent direction (g^T d = "
                                   f"{float(it.g @ d):.3g}): the gradient is at rounding level",
                                   info)
        return n_shifted + (alpha > 0), line_search_step(ev, it, d, o, info)

    return init, step, lambda n_shifted: {"shifted_iterations": n_shifted}


class _NewtonCG(NamedTuple):
    direction: object  # jitted (x, g, tol, maxiter) -> (d, n_hvp, negative_curvature)


@cached_by_function
def newton_cg_direction(fun_scalar) -> _NewtonCG:
    """Compile the truncated-CG inner solve of N&W Algorithm 7.1 for the scalar function."""
    grad = jax.grad(fun_scalar)

    def hvp(x, v):
        return jax.jvp(grad, (x,), (v,))[1]

    @jax.jit
    def direction(x, g, tol, maxiter):
        z0 = jnp.zeros_like(g)
        r0 = g
        p0 = -g
        rr0 = g @ g

        def cond(c):
            _z, _r, _p, _rr, j, done, _neg = c
            return jnp.logical_and(~done, j < maxiter)

        def body(c):
            z, r, p, rr, j, _done, neg = c
            Hp = hvp(x, p)
            pHp = p @ Hp
            neg_now = pHp <= 0.0
            alpha = rr / jnp.where(neg_now, 1.0, pHp)
            z_new = z + alpha * p
            r_new = r + alpha * Hp
            rr_new = r_new @ r_new
            conv = jnp.sqrt(rr_new) <= tol
            p_new = -r_new + (rr_new / rr) * p
            # negative curvature: keep z (or -g if it is still 0), stop
            z_out = jnp.where(neg_now, jnp.where(j == 0, -g, z), z_new)
            return (z_out, jnp.where(neg_now, r, r_new), jnp.where(neg_now, p, p_new),
                    jnp.where(neg_now, rr, rr_new), j + 1, neg_now | conv, neg | neg_now)

        init = (z0, r0, p0, rr0, jnp.asarray(0), rr0 == 0.0, jnp.asarray(False))
        z, _r, _p, _rr, j, _done, neg = jax.lax.while_loop(cond, body, init)
        z = jnp.where(jnp.all(z == 0.0), -g, z)
        return z, j, neg

    return _NewtonCG(direction)


def make_newton_cg(ev, o: dict):
    """(init, step, summary) of line-search Newton-CG (module docstring)."""
    inner = newton_cg_direction(ev.fns.scalar).direction
    n = ev.n
    maxiter = o["cg_max_iter"] or 20 * n

    def init(it: Iterate) -> int:
        return 0  # number of inner solves ended by negative curvature

    def step(n_neg: int, it: Iterate):
        gnorm = float(np.linalg.norm(it.g))
        tol = min(0.5, math.sqrt(gnorm)) * gnorm
        d, j, neg = inner(it.x, it.g, tol, maxiter)
        d = np.asarray(d, dtype=np.float64)
        ev.nhev += int(j)
        info = {"cg_iters": int(j), "negative_curvature": bool(neg)}
        if not np.all(np.isfinite(d)):
            return n_neg, Step(None, 0.0, R.DIVERGED, "the Newton-CG direction is not finite",
                               info)
        if not float(it.g @ d) < 0.0:
            return n_neg, Step(None, 0.0, R.STALLED,
                               "the Newton-CG direction is not a descent direction: the gradient "
                               "is at rounding level", info)
        return n_neg + bool(neg), line_search_step(ev, it, d, o, info)

    return init, step, lambda n_neg: {"negative_curvature_exits": n_neg}
