"""Old import path of liftnn.lifted.thesis.jacobian, kept only until diagnostics/inspect_cmd.py and
bench/report.py import the new module."""

from liftnn.lifted.thesis.jacobian import (  # noqa: F401
    ORDERINGS,
    BlockJacobian,
    autodiff_jacobian,
    banded_bandwidth,
    banded_permutation,
    bandwidth,
    block_labels,
    jacobian,
    jacobian_shape,
    max_abs_error,
    spy,
    structural_nnz,
)
