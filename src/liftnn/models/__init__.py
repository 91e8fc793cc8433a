"""Models: MLPs, general feedforward graphs, activations, initialisers, losses."""

from liftnn.models.activations import ACTIVATIONS, Activation, get_activation
from liftnn.models.initializers import INITIALIZERS, get_initializer
from liftnn.models.losses import LOSSES, get_loss
from liftnn.models.mlp import MLP, parse_arch

__all__ = [
    "ACTIVATIONS",
    "INITIALIZERS",
    "LOSSES",
    "MLP",
    "Activation",
    "get_activation",
    "get_initializer",
    "get_loss",
    "parse_arch",
]
