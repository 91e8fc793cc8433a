"""The method names a suite may use, and what can be checked about them before any run.

Two kinds: liftnn's own methods (the keys of liftnn.train.METHODS, run through `ln.train`) and the
peers (the keys of liftnn.bench.peers.PEERS, run through `fit_peer`).  A suite entry may also be a
variant "name@label" (for example "alm@gd"): method `name` with its own options, rows and report
lines.  Nothing here keeps its own list of names; see docs/benchmarks.md ("methods").
"""

from __future__ import annotations

import importlib

from liftnn.bench import peers
from liftnn.errors import LiftnnError
from liftnn.train import METHODS

LIFTNN = "liftnn"
PEER = "peer"


def base_method(name: str) -> str:
    """The method a suite entry runs: "alm@gd" is a variant of "alm" (its own options, its own
    rows and report lines); a plain name is itself."""
    return name.split("@", 1)[0]


def known_methods() -> dict[str, str]:
    """Every method name a suite may use -> "liftnn" or "peer" (variants: see base_method)."""
    names = {m: LIFTNN for m in METHODS}
    names.update({p: PEER for p in peers.PEERS})
    return names


def is_peer(name: str) -> bool:
    """True when suite entry `name` (a method or a variant of one) is a peer."""
    return base_method(name) in peers.PEERS


def check_known(name: str) -> None:
    """Raise LiftnnError unless `name` is a method, a peer, or a labelled variant of one."""
    known = known_methods()
    if base_method(name) not in known or name.endswith("@"):  # "alm@": a variant needs a label
        libm = [k for k, v in known.items() if v == LIFTNN]
        raise LiftnnError(f"unknown method {name!r}; liftnn methods: {', '.join(sorted(libm))}; "
                          f"peers: {', '.join(sorted(peers.PEERS))}")


def _method_module(name: str):
    """The module a liftnn method's entry in METHODS names (imported; may raise)."""
    return importlib.import_module(METHODS[name])


def method_available(name: str) -> tuple[bool, str]:
    """(True, "") if `name` can run here, else (False, why): a missing module or peer extra."""
    name = base_method(name)
    if name in peers.PEERS:
        try:
            ok, reason = peers.available(name)
        except Exception as exc:  # noqa: BLE001 - a broken extra is "not available", with why
            return False, f"{type(exc).__name__}: {exc}"
        return bool(ok), str(reason or "")
    try:
        _method_module(name)
    except Exception as exc:  # noqa: BLE001
        return False, f"its module {METHODS[name]} cannot be imported ({type(exc).__name__}: {exc})"
    return True, ""


def _allowed_options(name: str) -> set[str] | None:
    """The option names a method accepts where it publishes them (peers.options, a method
    module's valid_options(name) or DEFAULTS table); None when it leaves the check to itself."""
    if name in peers.PEERS:
        return set(peers.options(name))
    try:
        mod = _method_module(name)
    except Exception:  # noqa: BLE001 - availability is reported separately
        return None
    if callable(getattr(mod, "valid_options", None)):
        try:
            return set(mod.valid_options(name)) | {"validation"}
        except Exception:  # noqa: BLE001 - leave the check to the method itself
            return None
    defaults = getattr(mod, "DEFAULTS", None)
    shared = sum(1 for v in METHODS.values() if v == METHODS[name]) > 1
    if isinstance(defaults, dict) and len(defaults) and all(isinstance(k, str) for k in defaults):
        if isinstance(defaults.get(name), dict):
            return set(defaults[name]) | {"validation"}  # per-method {method: {option: value}}
        if not shared:  # one table for several methods: leave the check to the method itself
            return set(defaults) | {"validation"}
    return None


def check_method_options(name: str, opts: dict, src: str) -> None:
    """Catch unknown options now, before any run, where the method publishes its options."""
    allowed = _allowed_options(base_method(name))
    if allowed is None:
        return
    bad = sorted(set(opts) - allowed)
    if bad:
        raise LiftnnError(f"{src}: unknown option(s) for {base_method(name)}: {', '.join(bad)}; "
                          f"valid: {', '.join(sorted(allowed))}")
