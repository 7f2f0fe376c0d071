"""Element-wise signal-to-noise statistics: GSNR and the early-stopping criterion."""

from __future__ import annotations

from torch import Tensor


def gsnr(grad: Tensor, sum_sq: Tensor, n: int, eps: float = 1e-5) -> Tensor:
    """Element-wise gradient signal-to-noise ratio (Liu et al. 2020).

    ``g_j^2 / (M_j - g_j^2 + eps)`` (``mean_gsnr`` is its mean over a layer's or the
    network's elements) with ``M_j = (1/N) sum_n g_{n,j}^2``.

    Args:
        grad: ``[D]``, mini-batch gradient ``g``.
        sum_sq: ``[D]``, ``sum_n g_{n,j}^2``.
        n: Batch size N.
        eps: Added to the (biased, 1/N) variance.

    Returns:
        ``[D]``.

    """
    # The same operations in the same order as the formula, in place on the two
    # fresh [D] tensors: three fewer temporaries of the network's size per step.
    squared = grad.square()
    variance = (sum_sq / n).sub_(squared).clamp_(min=0)
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
