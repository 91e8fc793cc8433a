"""What the command modules share: the stderr console and the parsing of list-valued options."""

from __future__ import annotations

import json

from rich.console import Console

from liftnn.errors import LiftnnError

console = Console(stderr=True)


def parse_options(pairs: list[str]) -> dict:
    """--opt key=value pairs -> dict (values parsed as JSON where possible)."""
    out = {}
    for p in pairs or []:
        if "=" not in p:
            raise LiftnnError(f"--opt expects key=value; got {p!r}")
        k, v = p.split("=", 1)
        try:
            out[k.strip()] = json.loads(v)
        except json.JSONDecodeError:
            out[k.strip()] = v
    return out


def split_names(names: str | None) -> list[str] | None:
    """"a, b,c" -> ["a", "b", "c"] (None stays None)."""
    if names is None:
        return None
    return [m.strip() for m in names.split(",") if m.strip()]
