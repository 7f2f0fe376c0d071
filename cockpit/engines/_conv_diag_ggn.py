"""``Conv2d`` weights' GGN diagonal from BackPACK's factor and strided input patches.

BackPACK's ``DiagGGNExact``/``DiagGGNMC`` backpropagate a symmetric factor ``S`` of
the loss Hessian (``[V, N, p, H_out, W_out]``: ``V = C`` classes for the exact GGN,
``V`` Monte-Carlo samples otherwise) and, at a convolution's weight, return

    diag(G) = sum_{v, n} (S_vn^T A_n)^2        ([p, d], element-wise square)

with ``A_n = unfold(x_n)^T`` (``[T, d]``, ``d = C_in k^2``). BackPACK forms all
``V N p d`` products at once with ``F.unfold`` and ``einsum``. Here
(:class:`PatchDiagGGNConv2d`) the same sum is formed a chunk of samples at a time:
the patches as one strided copy (:func:`~cockpit.engines._conv_factors.unfold_patches`,
as the per-sample gradients' factor route), the ``V`` factors of a sample stacked into
one ``[V p, T] @ [T, d]`` product, squared in place and summed. Same arithmetic
(``V N T p d`` multiply-adds), same value up to the order of float sums; no
``[V, N, p, d]`` tensor and no ``F.unfold``.

Ungrouped ``Conv2d`` with zero padding take this route; other convolutions keep
BackPACK's.
"""

from __future__ import annotations

import torch
from backpack.extensions.secondorder.diag_ggn.conv2d import DiagGGNConv2d
from torch import Tensor, nn

from cockpit.engines._conv_factors import chunk_samples, pad_input, unfold_patches

__all__ = ["PatchDiagGGNConv2d", "patch_route", "weight_diagonal"]


def patch_route(module: nn.Conv2d) -> bool:
    """Whether the weight's diagonal takes the patch route: ungrouped, zero padding.

    BackPACK's own route pads with zeros whatever the ``padding_mode``; other modes
    keep it, so that no value changes.
    """
    return module.groups == 1 and module.padding_mode == "zeros"


@torch.no_grad()
def weight_diagonal(module: nn.Conv2d, factor: Tensor) -> Tensor:
    """``sum_{v, n} (S_vn^T A_n)^2`` in the weight's shape ``[p, C_in, k_h, k_w]``.

    Args:
        module: The convolution (its stored ``input0``, ``[N, C_in, H, W]``).
        factor: ``S``, ``[V, N, p, H_out, W_out]``, BackPACK's backpropagated factor.

    """
    weight = module.weight
    v, n, p = factor.shape[:3]
    t = factor[0, 0, 0].numel()
    d = weight[0].numel()
    # [N, V p, T]: a sample's V factors become the rows of one product.
    stacked = factor.reshape(v, n, p, t).transpose(0, 1).reshape(n, v * p, t)
    x = pad_input(module.input0, module._reversed_padding_repeated_twice)
    chunk = chunk_samples(stacked.device, n, d * max(t, v * p))
    buffer = stacked.new_empty((chunk, v * p, d))
    diagonal = stacked.new_zeros(p * d)
    for first in range(0, n, chunk):
        rows = slice(first, first + chunk)
        patches = unfold_patches(
            x[rows], weight.shape[2:], module.dilation, module.stride, t
        )
        products = buffer[: patches.shape[0]]
        torch.bmm(stacked[rows], patches.transpose(1, 2), out=products)
        diagonal += products.square_().view(-1, p * d).sum(0)
    return diagonal.view_as(weight)


class PatchDiagGGNConv2d(DiagGGNConv2d):
    """BackPACK's ``Conv2d`` module extension of the GGN diagonals, patch route.

    Biases, the backpropagation to the input, and weights off the patch route
    (:func:`patch_route`) are BackPACK's.
    """

    def weight(self, ext, module, grad_inp, grad_out, backproped) -> Tensor:
        if not patch_route(module):
            return super().weight(ext, module, grad_inp, grad_out, backproped)
        return weight_diagonal(module, backproped)
