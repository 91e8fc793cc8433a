"""liftnn: neural-network training as nonlinear optimal control.

Backpropagation is single shooting; liftnn's centrepiece is multiple shooting (the lifted
formulation): hidden states become variables, layer equations become constraints, and an augmented
Lagrangian method with Gauss-Newton steps trains the network.  Float64 is switched on at import.
"""

from __future__ import annotations

import jax

jax.config.update("jax_enable_x64", True)

from liftnn import datasets  # noqa: E402
from liftnn.errors import LiftnnError  # noqa: E402
from liftnn.models import MLP  # noqa: E402
from liftnn.models.backprop import backprop, input_gradient, optimize_inputs  # noqa: E402
from liftnn.models.graph import FeedforwardGraph, Moeller2Net  # noqa: E402
from liftnn.models.io import load_model, save_model  # noqa: E402
from liftnn.problem import TrainingProblem  # noqa: E402
from liftnn.solvers.api import least_squares, minimize  # noqa: E402
from liftnn.train import METHODS, train  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "MLP",
    "METHODS",
    "LiftnnError",
    "TrainingProblem",
    "FeedforwardGraph",
    "Moeller2Net",
    "backprop",
    "datasets",
    "input_gradient",
    "least_squares",
    "load_model",
    "minimize",
    "optimize_inputs",
    "save_model",
    "train",
]
