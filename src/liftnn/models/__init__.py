"""Models: MLPs, general feedforward graphs, activations, initialisers, losses."""

from liftnn.models.activations import ACTIVATIONS, Activation, get_activation
from liftnn.models.initializers import INITIALIZERS, get_initializer
from liftnn.models.losses import LOSSES, get_loss
from liftnn.models.backprop import backprop, input_gradient, optimize_inputs, value_and_backprop
from liftnn.models.graph import FeedforwardGraph, Moeller2Net
from liftnn.models.io import load_model, save_model
from liftnn.models.mlp import MLP, parse_arch

__all__ = [
    "ACTIVATIONS",
    "INITIALIZERS",
    "LOSSES",
    "MLP",
    "Activation",
    "FeedforwardGraph",
    "Moeller2Net",
    "backprop",
    "input_gradient",
    "load_model",
    "optimize_inputs",
    "save_model",
    "value_and_backprop",
    "get_activation",
    "get_initializer",
    "get_loss",
    "parse_arch",
]
