"""Exceptions raised for bad input, before any work starts."""

from __future__ import annotations


class LiftnnError(ValueError):
    """Bad input to a liftnn function: the message names the problem."""


class LiftnnWarning(UserWarning):
    """Input liftnn accepts but that is likely a mistake (data far from unit scale, a choice at
    the edge of its grid, ...): the message names it and says what to do."""
