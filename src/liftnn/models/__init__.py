"""Models: MLPs, general feedforward graphs, activations, initialisers, losses."""

from liftnn.models.activations import ACTIVATIONS, Activation, get_activation
from liftnn.models.backprop import backprop, input_gradient, optimize_inputs, value_and_backprop
from liftnn.models.feedforward_graph import FeedforwardGraph
from liftnn.models.initializers import INITIALIZERS, get_initializer
from liftnn.models.io import load_model, save_model
from liftnn.models.losses import LOSSES, get_loss
from liftnn.models.mlp import MLP, parse_arch
from liftnn.models.moeller import Moeller2Net

__all__ = [
    "ACTIVATIONS",
    "INITIALIZERS",
    "LOSSES",
    "MLP",
    "Activation",
    "FeedforwardGraph",
    "Moeller2Net",
    "backprop",
    "get_activation",
    "get_initializer",
    "get_loss",
    "input_gradient",
    "load_model",
    "optimize_inputs",
    "parse_arch",
    "save_model",
    "value_and_backprop",
]
