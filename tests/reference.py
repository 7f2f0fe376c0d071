"""Brute-force references from torch alone: per-sample gradients with ``torch.func``.

Nothing here uses the tracker's code: the per-sample gradients ``g_n`` are formed
explicitly (``vmap(grad(...))`` over samples) and every statistic is computed from
them with the textbook formula of QUANTITIES.md.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap


def per_sample_losses(loss_fn: nn.Module, output: Tensor, target: Tensor) -> Tensor:
    """``[N]`` losses ``l_n`` such that the batch loss is their mean (or sum)."""
    elementwise = type(loss_fn)(reduction="none")(output, target)
    per_sample = elementwise.reshape(output.shape[0], -1)
    return per_sample.mean(1) if loss_fn.reduction == "mean" else per_sample.sum(1)


def per_sample_grads(
    model: nn.Module, loss_fn: nn.Module, x: Tensor, y: Tensor
) -> dict[str, Tensor]:
    """``{name: [N, *shape]}``: gradients of each sample's loss ``l_n``."""
    params = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}

    def sample_loss(params: dict[str, Tensor], xn: Tensor, yn: Tensor) -> Tensor:
        out = functional_call(model, params, (xn.unsqueeze(0),))
        return per_sample_losses(loss_fn, out, yn.unsqueeze(0))[0]

    return vmap(grad(sample_loss), in_dims=(None, 0, 0))(params, x, y)


def flat(per_sample: dict[str, Tensor]) -> Tensor:
    """``[N, D]``: all parameters' per-sample gradients side by side."""
    n = next(iter(per_sample.values())).shape[0]
    return torch.cat([g.reshape(n, -1) for g in per_sample.values()], dim=1)


def layers_and_total(per_sample: dict[str, Tensor]) -> dict[str, Tensor]:
    """``{name: [N, D_l]}`` plus ``"total": [N, D]``."""
    n = next(iter(per_sample.values())).shape[0]
    layers = {name: g.reshape(n, -1) for name, g in per_sample.items()}
    return {**layers, "total": flat(per_sample)}


def norm_test(gn: Tensor) -> Tensor:
    n, g = gn.shape[0], gn.mean(0)
    spread = sum(((gn[i] - g) ** 2).sum() for i in range(n))
    return (spread / (n - 1) / n).sqrt() / g.norm()


def inner_product_test(gn: Tensor) -> Tensor:
    n, g = gn.shape[0], gn.mean(0)
    projections = torch.stack([gn[i] @ g for i in range(n)])
    return (projections.var() / n).sqrt() / (g @ g)


def orthogonality_test(gn: Tensor) -> Tensor:
    n, g = gn.shape[0], gn.mean(0)
    residuals = [gn[i] - (gn[i] @ g) / (g @ g) * g for i in range(n)]
    spread = sum((r**2).sum() for r in residuals)
    return (spread / (n - 1) / n).sqrt() / g.norm()


def mean_gsnr(gn: Tensor, eps: float = 1e-5) -> Tensor:
    g = gn.mean(0)
    variance = (gn**2).mean(0) - g**2
    return (g**2 / (variance + eps)).mean()


def early_stopping(gn: Tensor, eps: float = 1e-5) -> Tensor:
    n, d = gn.shape
    g = gn.mean(0)
    return 1 - n / d * (g**2 / (gn.var(dim=0) + eps)).sum()


def trace_covariance(gn: Tensor) -> Tensor:
    """``tr(S)``, S the unbiased sample covariance of the per-sample gradients."""
    return torch.cov(gn.T).trace() if gn.shape[1] > 1 else gn.var()


def gradient_noise_scale(gn: Tensor) -> Tensor:
    n, g = gn.shape[0], gn.mean(0)
    trace = trace_covariance(gn)
    return trace / (g @ g - trace / n)


def cabs(gn: Tensor, lr: float, loss: Tensor) -> Tensor:
    n, g = gn.shape[0], gn.mean(0)
    return lr * ((gn - g) ** 2).sum() / n / loss


def alpha(tau: float, losses: list[Tensor], slopes: list[Tensor]) -> float:
    """Alpha by the normal equations of the weighted fit, solved with torch.

    Args:
        tau: Step length.
        losses: ``[N]`` per-sample losses at both ends.
        slopes: ``[N]`` per-sample directional derivatives at both ends.
    """
    x = torch.tensor(
        [[1.0, 0, 0], [1.0, tau, tau**2], [0, 1.0, 0], [0, 1.0, 2 * tau]],
        dtype=torch.float64,
    )
    y = torch.stack(
        [losses[0].mean(), losses[1].mean(), slopes[0].mean(), slopes[1].mean()]
    )
    w = torch.diag(
        1
        / torch.stack(
            [losses[0].var(), losses[1].var(), slopes[0].var(), slopes[1].var()]
        )
    )
    c = torch.linalg.solve(x.T @ w @ x, x.T @ w @ y)
    if c[2] <= 0:
        return -1.0
    return float(tau / (-c[1] / (2 * c[2])) - 1)


def batch_coupled_grads(
    model: nn.Module, loss_fn: nn.Module, x: Tensor, y: Tensor
) -> dict[str, Tensor]:
    """``{name: [N, *shape]}``: ``g_n = d l_n / d theta`` through the whole batch.

    One forward pass of the whole batch (BatchNorm in training mode normalizes with
    its statistics), then one ``autograd.grad`` of each ``l_n`` on that graph. Runs
    on a copy of the model, so its running statistics are left alone. Without
    coupling between samples (or for a recurrent model), these are the per-sample
    gradients of a loop over samples.
    """
    model = copy.deepcopy(model)
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    losses = per_sample_losses(loss_fn, model(x), y)
    rows = []
    for n in range(x.shape[0]):
        rows.append(
            torch.autograd.grad(losses[n], list(params.values()), retain_graph=True)
        )
    return {
        name: torch.stack([row[i] for row in rows]) for i, name in enumerate(params)
    }
