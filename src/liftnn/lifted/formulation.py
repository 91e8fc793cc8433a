"""Old import path of liftnn.lifted.thesis.residual, kept only until diagnostics/inspect_cmd.py and
bench/report.py import the new names (ThesisLayout, ThesisResidual with `penalty=` for `c=`)."""

from liftnn.lifted.thesis.residual import ThesisLayout as LiftedLayout
from liftnn.lifted.thesis.residual import ThesisResidual, feasible_start, simulate_states

__all__ = ["LiftedLayout", "LiftedProblem", "feasible_start", "simulate_states"]


def LiftedProblem(model, X, Y, c: float = 1.0) -> ThesisResidual:
    """ThesisResidual(model, X, Y, penalty=c)."""
    return ThesisResidual(model, X, Y, penalty=c)
