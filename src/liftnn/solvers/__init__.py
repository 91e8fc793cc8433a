"""Optimisers: the first-order methods (through optax) and the classical toolbox of the seed
lectures (CG, BFGS / L-BFGS, Newton / Newton-CG, Gauss-Newton, Levenberg-Marquardt) behind the
front doors `minimize` and `least_squares` (liftnn.solvers.api)."""

from liftnn.solvers.api import least_squares, minimize

__all__ = ["least_squares", "minimize"]
