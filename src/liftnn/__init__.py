"""liftnn: neural-network training as nonlinear optimal control.

Backpropagation is single shooting; liftnn's centrepiece is multiple shooting (the lifted
formulation): hidden states become variables, layer equations become constraints, and an augmented
Lagrangian method with Gauss-Newton steps trains the network.  Float64 is switched on at import.
"""

from __future__ import annotations

import jax

jax.config.update("jax_enable_x64", True)

from liftnn import datasets
from liftnn.compile_cache import enable_compile_cache
from liftnn.ensemble import Ensemble, ensemble, select_by_evidence
from liftnn.errors import LiftnnError, LiftnnWarning
from liftnn.models import MLP
from liftnn.models.backprop import backprop, input_gradient, optimize_inputs
from liftnn.models.feedforward_graph import FeedforwardGraph
from liftnn.models.io import load_model, save_model
from liftnn.models.moeller import Moeller2Net
from liftnn.problem import TrainingProblem
from liftnn.solvers.api import least_squares, minimize
from liftnn.train import METHODS, train

__version__ = "0.1.0"

__all__ = [
    "METHODS",
    "MLP",
    "Ensemble",
    "FeedforwardGraph",
    "LiftnnError",
    "LiftnnWarning",
    "Moeller2Net",
    "TrainingProblem",
    "backprop",
    "datasets",
    "enable_compile_cache",
    "ensemble",
    "input_gradient",
    "least_squares",
    "load_model",
    "minimize",
    "optimize_inputs",
    "save_model",
    "select_by_evidence",
    "train",
]
