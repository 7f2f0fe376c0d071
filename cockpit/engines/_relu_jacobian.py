"""ReLU Jacobians as one fused kernel, not a materialized derivative and an einsum.

``y = relu(x)`` has the diagonal Jacobian ``J = diag(1[x > 0])``, so a factor
``M [V, N, *x.shape[1:]]`` backpropagates as

    (J^T M)[v, n, i] = M[v, n, i] if x[n, i] > 0 else 0.

BackPACK's ``ReLUDerivatives`` form ``df = (x > 0).to(x.dtype)`` (two passes over
``x`` and a new tensor of its size) and multiply it in with ``einsum``, a third pass
and a fourth allocation: on 3c3d's ``business`` step 32 ms of CPU time per step for
five ReLUs (``benchmarks/results/bizconv/``). :class:`FusedReLUDerivatives` makes
the same product in one pass with autograd's own ReLU backward kernel,
``threshold_backward(M, x, 0)``, which broadcasts ``x`` over the ``V`` columns:
14 ms.

The mask comes from the stored input, as BackPACK's: where the ReLU runs in place,
``module.input0`` is its output, and ``relu(x) > 0`` exactly where ``x > 0``, so the
mask is the same. Values are BackPACK's for finite ``x`` and ``M``; they differ only
where BackPACK's product is not finite: a ``NaN`` input passes ``M`` (BackPACK
zeroes it), an infinite ``M`` behind a closed gate gives 0 (BackPACK ``NaN``).
"""

from __future__ import annotations

import torch
from backpack.core.derivatives.relu import ReLUDerivatives
from backpack.utils.subsampling import subsample
from torch import Tensor

__all__ = ["FusedReLUDerivatives"]


class FusedReLUDerivatives(ReLUDerivatives):
    """BackPACK's ``ReLU`` derivatives, the transposed Jacobian in one kernel."""

    def _jac_t_mat_prod(self, module, g_inp, g_out, mat, subsampling=None) -> Tensor:
        """``M`` where the input is positive, else 0: ``[V, N, *x.shape[1:]]``.

        BackPACK's signature; the gradients ``g_inp``, ``g_out`` are not read.
        """
        input0 = subsample(module.input0, subsampling=subsampling)
        return torch.ops.aten.threshold_backward(mat, input0, 0)
