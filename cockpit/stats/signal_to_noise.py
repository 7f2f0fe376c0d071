"""Element-wise signal-to-noise statistics: GSNR and the early-stopping criterion."""

from __future__ import annotations

import torch
from torch import Tensor


def gsnr(
    grad: Tensor,
    sum_sq: Tensor,
    n: int,
    eps: float = 1e-5,
    out: tuple[Tensor, Tensor] | None = None,
) -> Tensor:
    """Element-wise gradient signal-to-noise ratio (Liu et al. 2020).

    ``g_j^2 / (M_j - g_j^2 + eps)`` (``mean_gsnr`` is its mean over a layer's or the
    network's elements) with ``M_j = (1/N) sum_n g_{n,j}^2``.

    Args:
        grad: ``[D]``, mini-batch gradient ``g``.
        sum_sq: ``[D]``, ``sum_n g_{n,j}^2``.
        n: Batch size N.
        eps: Added to the (biased, 1/N) variance.
        out: Two ``[D]`` buffers to compute in (``g^2`` and the variance), which
            may be ``grad`` and ``sum_sq`` themselves where those may be
            overwritten; ``None``: two new tensors. The same bits either way.

    Returns:
        ``[D]``: ``out[0]`` if given.

    """
    # The same operations in the same order as the formula, in place on the two
    # [D] buffers: three fewer temporaries of the network's size per step.
    if out is None:
        squared, variance = grad.square(), sum_sq / n
    else:
        squared = torch.square(grad, out=out[0])
        variance = torch.div(sum_sq, n, out=out[1])
    variance.sub_(squared).clamp_(min=0)
    return squared.div_(variance.add_(eps))


def early_stopping(grad: Tensor, sum_sq: Tensor, n: int, eps: float = 1e-5) -> Tensor:
    """Evidence-based early-stopping criterion (Mahsereci et al. 2017, eq. 7).

    ``1 - (N/D) sum_j g_j^2 / (Var_n(g_{n,j}) + eps)``, unbiased variance
    ``Var_n(g_{n,j}) = (sum_n g_{n,j}^2 - N g_j^2) / (N - 1)``. Above 0 means stop.

    Args:
        grad: ``[D]``, mini-batch gradient.
        sum_sq: ``[D]``, ``sum_n g_{n,j}^2``.
        n: Batch size N.
        eps: Added to the variance.

    Returns:
        ``[]``.

    """
    variance = ((sum_sq - n * grad**2) / (n - 1)).clamp(min=0)
    d = grad.numel()
    return 1 - n / d * (grad**2 / (variance + eps)).sum()
