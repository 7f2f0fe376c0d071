"""KFAC's ``Conv2d`` input factor from strided input patches, one symmetric product.

BackPACK's ``KFAC``/``KFLR`` give a convolution weight the input factor

    A = (1 / N) sum_n X_n X_n^T        ([d, d], d = C_in k_h k_w)

with ``X_n = unfold(x_n)`` (``[d, T]``, the input patches at the ``T`` output
positions), formed with ``F.unfold`` and ``einsum("bik,bjk->ij")``. Here
(:class:`PatchKFACConv2d`) the patches of the whole batch are one strided copy in the
order ``[d, N T]`` (:func:`patch_matrix`) and ``A = P P^T / N`` is formed block by
block (:func:`symmetric_product`): only the blocks on and below the diagonal are
multiplied, the others are their transposes. Same value up to the order of float
sums, fewer multiply-adds and no ``F.unfold`` (timed by ``benchmarks/conv_kfac.py``).

Ungrouped ``Conv2d`` with zero padding take this route (as the GGN diagonal's patch
route, :func:`~cockpit.engines._conv_diag_ggn.patch_route`); other convolutions keep
BackPACK's.
"""

from __future__ import annotations

import torch
from backpack.extensions.secondorder.hbp.conv2d import HBPConv2d
from torch import Tensor, nn

from cockpit.engines._conv_diag_ggn import patch_route
from cockpit.engines._conv_factors import pad_input, patch_view

__all__ = ["BLOCK_ROWS", "PatchKFACConv2d", "patch_matrix", "symmetric_product"]

#: Rows of one block of :func:`symmetric_product`: below about 200 rows a block's
#: product runs slower per multiply-add than the saving is worth (measured on 3c3d).
BLOCK_ROWS = 256


def patch_matrix(module: nn.Conv2d, x: Tensor) -> Tensor:
    """``[d, N T]``: every input patch of the batch as a column, one copy.

    Row ``(c, i, j)`` holds input channel ``c`` at kernel offset ``(i, j)``; column
    ``(n, t)`` is sample ``n`` at output position ``t``: the same entries as
    ``F.unfold(x)`` (``[N, d, T]``) with the batch moved next to the positions.

    Args:
        module: The convolution (its kernel size, stride, dilation, padding).
        x: Its input ``[N, C_in, H, W]``.

    """
    padded = pad_input(x, module._reversed_padding_repeated_twice)
    patches = patch_view(padded, module.kernel_size, module.dilation, module.stride)
    # [C_in, k_h, k_w, N, H_out, W_out]: the batch next to the positions.
    patches = patches.permute(1, 2, 3, 0, 4, 5)
    return patches.reshape(module.weight[0].numel(), -1)


def symmetric_product(matrix: Tensor, block_rows: int = BLOCK_ROWS) -> Tensor:
    """``matrix @ matrix.T`` (``[d, K] -> [d, d]``), the lower blocks multiplied.

    With ``b`` blocks of rows, ``b (b + 1) / 2`` of the ``b^2`` block products are
    formed: about ``(b + 1) / (2 b)`` of the multiply-adds.
    """
    rows = matrix.shape[0]
    blocks = -(-rows // block_rows)
    edges = [round(i * rows / blocks) for i in range(blocks + 1)]
    product = matrix.new_empty(rows, rows)
    for i in range(blocks):
        lower = slice(edges[i], edges[i + 1])
        for j in range(i + 1):
            upper = slice(edges[j], edges[j + 1])
            block = matrix[lower] @ matrix[upper].T
            product[lower, upper] = block
            if i != j:
                product[upper, lower] = block.T
    return product


class PatchKFACConv2d(HBPConv2d):
    """BackPACK's ``Conv2d`` module extension of ``KFAC``/``KFLR``, patch route.

    The output factor, biases, the backpropagation, and weights off the patch route
    are BackPACK's.
    """

    def _factors_from_input(self, ext, module: nn.Conv2d) -> list[Tensor]:
        if not patch_route(module):
            return super()._factors_from_input(ext, module)
        with torch.no_grad():
            patches = patch_matrix(module, module.input0)
            return [symmetric_product(patches) / module.input0.shape[0]]
