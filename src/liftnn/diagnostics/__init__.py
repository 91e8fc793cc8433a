"""Diagnostics: curvature of the training objective (Hessian products, spectra, condition
numbers, step-size bounds, per-layer gradient norms; seeds 003/004), the effective number of
parameters of the Gauss-Newton matrix three ways (liftnn.diagnostics.gn_trace) and the checks behind
`liftnn inspect` (liftnn.diagnostics.inspect_cmd; the command itself is liftnn.cli.inspect)."""

from liftnn.diagnostics.curvature import (
    EigResult,
    LanczosResult,
    condition_number,
    curvature_report,
    fd_hessian,
    gauss_newton_matrix,
    gnvp,
    hessian,
    hessian_diag,
    hvp,
    hvp_operator,
    is_positive_definite,
    lambda_max,
    lambda_min,
    lanczos,
    layer_gradient_norms,
    pd_shift,
    plot_spectrum,
    power_iteration,
    spectrum,
    step_size_bound,
)

__all__ = [
    "EigResult",
    "LanczosResult",
    "condition_number",
    "curvature_report",
    "fd_hessian",
    "gauss_newton_matrix",
    "gnvp",
    "hessian",
    "hessian_diag",
    "hvp",
    "hvp_operator",
    "is_positive_definite",
    "lambda_max",
    "lambda_min",
    "lanczos",
    "layer_gradient_norms",
    "pd_shift",
    "plot_spectrum",
    "power_iteration",
    "spectrum",
    "step_size_bound",
]
