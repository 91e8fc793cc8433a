"""Outer schemes of the lifted ALM: the multiplier, penalty and inner-tolerance updates.

Pure functions on a `PenaltyState` whose fields are arrays of shape (K,), one entry per seed
(docs/lifted.md, "Outer schemes"):

- "evens" (Evens et al. 2021): beta_0 = beta0_factor f(z_0) (or a given beta0), eps_0 = 1e-1;
  after outer iteration k with constraint violation ||h||_inf:
  lambda <- lambda + beta h;  beta is kept if ||h||_inf <= gamma ||h_prev||_inf, else
  beta <- max(xi beta, beta_0 (k+1)^alpha);  eps <- max(eps_min, eps / 2).
- "ialm" (thesis / Sahin et al. 2019): beta_k = beta0^k (beta_1 = beta0), eps_k = 1 / beta_k;
  lambda <- lambda + sigma_k beta_k h with
  sigma_k = min(||h_1|| log^2 2 / (||h_k|| k log^2(k+1)), 1), h_1 the violation after the first
  outer iteration.

`update` proposes the next state and the multiplier coefficient (lambda += coef * h);
`accept` keeps the proposal only for the seeds that took the step.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

SCHEMES = ("evens", "ialm")


class PenaltyState(NamedTuple):
    """Per-seed (K,) arrays: penalty beta, its start beta0, inner tolerance eps, the last
    accepted ||h||_inf (h_prev, inf at the start) and, for ialm, ||h||_inf after the first
    outer iteration (h_first, NaN until known)."""

    beta: np.ndarray
    beta0: np.ndarray
    eps: np.ndarray
    h_prev: np.ndarray
    h_first: np.ndarray


class EvensSettings(NamedTuple):
    gamma: float = 0.5
    xi: float = 2.0
    alpha: float = 2.0
    eps_min: float = 1e-2


EVENS = EvensSettings()  # the published constants


def evens_init(f0, beta0=None, beta0_factor=1e-3, eps0=1e-1) -> PenaltyState:
    """beta_0 = beta0 if given, else beta0_factor * f(z_0) (f0: (K,) start losses); eps_0 = eps0."""
    f0 = np.asarray(f0, float)
    K = f0.shape[0]
    b0 = np.full(K, beta0) if beta0 is not None else beta0_factor * np.maximum(f0, 1e-12)
    return PenaltyState(b0.copy(), b0, np.full(K, eps0), np.full(K, np.inf), np.full(K, np.nan))


def ialm_init(K: int, beta0=None) -> PenaltyState:
    """beta_1 = beta0 (default 10, must exceed 1), eps_1 = 1 / beta_1."""
    b0 = np.full(K, 10.0 if beta0 is None else beta0)
    return PenaltyState(b0.copy(), b0, 1.0 / b0, np.full(K, np.inf), np.full(K, np.nan))


def init(scheme: str, f0, *, beta0=None, beta0_factor=1e-3, eps0=1e-1) -> PenaltyState:
    """The start state of `scheme` for K seeds with start losses f0 (K,)."""
    if scheme == "evens":
        return evens_init(f0, beta0, beta0_factor, eps0)
    return ialm_init(len(f0), beta0)


def evens_update(s: PenaltyState, h_inf, k: int, es: EvensSettings = EVENS):
    """(multiplier coefficient beta, proposed state) after outer iteration k."""
    grow = ~(h_inf <= es.gamma * s.h_prev)
    beta = np.where(grow, np.maximum(es.xi * s.beta, s.beta0 * (k + 1) ** es.alpha), s.beta)
    eps = np.maximum(es.eps_min, 0.5 * s.eps)
    return s.beta, s._replace(beta=beta, eps=eps, h_prev=h_inf)


def ialm_update(s: PenaltyState, h_inf, k: int):
    """(multiplier coefficient sigma_k beta_k, proposed state) after outer iteration k."""
    h_first = np.where(np.isnan(s.h_first), np.maximum(h_inf, 1e-300), s.h_first)
    sig = np.minimum(h_first * math.log(2) ** 2 /
                     (np.maximum(h_inf, 1e-300) * k * math.log(k + 1) ** 2), 1.0)
    beta = s.beta0 ** (k + 1)
    return sig * s.beta, s._replace(beta=beta, eps=1.0 / beta, h_prev=h_inf, h_first=h_first)


def update(scheme: str, s: PenaltyState, h_inf, k: int, es: EvensSettings = EVENS):
    """Dispatch to evens_update / ialm_update: (multiplier coefficient (K,), proposed state)."""
    h_inf = np.asarray(h_inf, float)
    return evens_update(s, h_inf, k, es) if scheme == "evens" else ialm_update(s, h_inf, k)


def accept(old: PenaltyState, new: PenaltyState, mask) -> PenaltyState:
    """Per seed: `new` where mask (the seed took the step), else `old`; h_first is recorded
    once, whether or not the step was taken."""
    keep = [np.where(mask, a, b) for a, b in zip(new, old)]
    return PenaltyState(*keep)._replace(h_first=new.h_first)
