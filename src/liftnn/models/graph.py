"""The two graph-shaped models, one module each: liftnn.models.feedforward_graph
(FeedforwardGraph, seed 002) and liftnn.models.moeller (Moeller2Net, seed 001).  This module keeps
the old import path `liftnn.models.graph` working."""

from liftnn.models.feedforward_graph import FeedforwardGraph
from liftnn.models.moeller import Moeller2Net

__all__ = ["FeedforwardGraph", "Moeller2Net"]
