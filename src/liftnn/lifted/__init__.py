"""The lifted (multiple-shooting) trainer, method="alm", in layers (docs/lifted.md):

alm (outer loop) -> schemes (multiplier / penalty updates), stopping (stop rules) ->
inner (Gauss-Newton solve of L_beta) -> gauss_newton (per-sample elimination) -> linsolve
(reduced weight solves).  thesis/ holds the thesis-notation Jacobian and spy plots.
"""
