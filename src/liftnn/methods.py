"""The method table: every name `ln.train(method=...)` accepts -> how to train with it.

One record per method, built once from direct imports (no module paths, no importlib):

- ``fit(problem, params0, **options) -> Result``: train one initialisation;
- ``fit_many(problem, params0_list, **options) -> list[Result]`` or None: several
  initialisations in one vectorised call (what `ln.train(..., seeds=[...])` uses);
- ``family``: "lifted" (alm), "first-order" (through optax) or "classical" (cg ... lm);
- ``options()``: the option names the method accepts (for checking a benchmark suite early).

The methods and their algorithms are described in docs/solvers.md.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

from liftnn.lifted import alm, lifted_gn
from liftnn.solvers import first_order, lm_compiled, network
from liftnn.solvers.api import method_options

FIRST_ORDER = "first-order"
CLASSICAL = "classical"
LIFTED = "lifted"
FAMILIES = (LIFTED, FIRST_ORDER, CLASSICAL)


class Method(NamedTuple):
    """One trainer: name, fit, fit_many (or None), family and the names of its options."""

    name: str
    fit: Callable
    fit_many: Callable | None
    family: str
    options: Callable[[], list[str]]


def _first_order(name: str) -> Method:
    return Method(name, functools.partial(first_order.fit, method=name),
                  functools.partial(first_order.fit_many, method=name), FIRST_ORDER,
                  functools.partial(first_order.valid_options, name))


def _classical(name: str) -> Method:
    # lm, gn: several seeds in one compiled loop (liftnn.solvers.lm_compiled; it falls back to
    # network.fit per seed where it cannot serve the call); one seed keeps the Python path
    many = (functools.partial(lm_compiled.fit_many, method=name) if name in ("lm", "gn")
            else None)
    return Method(name, functools.partial(network.fit, method=name), many, CLASSICAL,
                  lambda: list(method_options(name)))


METHODS: dict[str, Method] = {
    "alm": Method("alm", alm.fit, alm.fit_many, LIFTED, lambda: list(alm.DEFAULTS)),
    "lifted-gn": Method("lifted-gn", lifted_gn.fit, lifted_gn.fit_many, LIFTED,
                        lambda: list(lifted_gn.DEFAULTS)),
    **{m: _first_order(m) for m in first_order.METHODS},
    **{m: _classical(m) for m in network.METHODS},
}
