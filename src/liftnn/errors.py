"""Exceptions raised for bad input, before any work starts."""

from __future__ import annotations


class LiftnnError(ValueError):
    """Bad input to a liftnn function: the message names the problem."""
