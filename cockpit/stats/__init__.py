"""Pure formulas: tensors in, tensors out. No state, no hooks, no logging.

Every function here works on *sufficient statistics* of the per-sample gradients
(norms, projections, element-wise second moments) rather than on the ``[N, D]``
per-sample gradients themselves, so the tracker never has to keep those around.
Conventions (see QUANTITIES.md): ``N`` samples, ``g_n`` the gradient of the n-th
sample's loss, ``g = (1/N) sum_n g_n`` the mini-batch gradient.
"""
