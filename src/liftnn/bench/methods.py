"""The method names a suite may use, and what can be checked about them before any run.

Two kinds: liftnn's own methods (the keys of liftnn.train.METHODS, run through `ln.train`) and the
peers (the keys of liftnn.bench.peers.PEERS, run through `fit_peer`).  A suite entry may also be a
variant "name@label" (for example "alm@gd"): method `name` with its own options, rows and report
lines.  Nothing here keeps its own list of names; see docs/benchmarks.md ("methods").
"""

from __future__ import annotations

from liftnn import bayes
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


def method_available(name: str) -> tuple[bool, str]:
    """(True, "") if `name` can run here, else (False, why): a peer whose extra is missing.

    liftnn's own methods are always available (liftnn.methods imports them all)."""
    name = base_method(name)
    if name not in peers.PEERS:
        return True, ""
    try:
        ok, reason = peers.available(name)
    except Exception as exc:  # noqa: BLE001 - a broken extra is "not available", with why
        return False, f"{type(exc).__name__}: {exc}"
    return bool(ok), str(reason or "")


#: the losses liftnn's lifted methods (alm, lifted-gn) train: least squares and the softmax
#: cross-entropy (its generalised Gauss-Newton, liftnn.lifted.output; check_lifted_problem refuses
#: the rest before any work; tests/bench/test_classify.py checks that this table says what alm does)
LIFTED_LOSSES = ("mse", "sse", "cross_entropy")


def supports_loss(name: str, loss: str) -> tuple[bool, str]:
    """(True, "") if method or peer `name` trains `loss`, else (False, why).

    Peers publish their losses (PeerSpec.losses); liftnn's first-order and classical methods
    train every loss (gn / lm use a generalised Gauss-Newton for cross_entropy); alm and
    lifted-gn train LIFTED_LOSSES."""
    base = base_method(name)
    if base in peers.PEERS:
        losses = tuple(peers.PEERS[base].losses)
    elif METHODS[base].family == "lifted":
        losses = LIFTED_LOSSES
    else:
        return True, ""
    if loss in losses:
        return True, ""
    return False, f"{base} trains only the loss(es) {', '.join(losses)}, not {loss!r}"


#: options the front door (ln.train) takes for every method
#: ln.train options every liftnn method accepts in a suite (weight_decay: a method's own value,
#: e.g. "bayes", in place of the cell's; the bayes_* options of liftnn.bayes)
FRONT_DOOR_OPTIONS = frozenset({"validation", "validation_seed", "devices", "weight_decay",
                                *bayes.DEFAULTS})


def _allowed_options(name: str) -> set[str]:
    """The option names a method accepts (peers.options, or the method table's options())."""
    if name in peers.PEERS:
        return set(peers.options(name))
    return set(METHODS[name].options()) | FRONT_DOOR_OPTIONS


def check_method_options(name: str, opts: dict, src: str) -> None:
    """Catch unknown options now, before any run, where the method publishes its options."""
    allowed = _allowed_options(base_method(name))
    bad = sorted(set(opts) - allowed)
    if bad:
        raise LiftnnError(f"{src}: unknown option(s) for {base_method(name)}: {', '.join(bad)}; "
                          f"valid: {', '.join(sorted(allowed))}")
