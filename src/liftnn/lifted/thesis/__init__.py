"""The lifted residual in the thesis's notation and ordering (Table 3.1), its analytic sparse
Jacobian in the natural and banded orderings, and the spy plots (figs. 3.2 / 3.3).

These serve inspection (`liftnn inspect`, the bench report's figures), not training: the trainer
(method="alm") works on the per-sample form in liftnn.lifted.gauss_newton.  See docs/lifted.md.

- liftnn.lifted.thesis.residual: ThesisLayout (where each block of u and r lives), ThesisResidual
  (r(u) with the thesis's penalty rho), simulate_states, feasible_start;
- liftnn.lifted.thesis.jacobian: jacobian (BlockJacobian), jacobian_shape, bandwidths,
  autodiff_jacobian, max_abs_error, spy.
"""
