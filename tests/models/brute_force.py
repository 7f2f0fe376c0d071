"""Per-sample gradients by brute force through the whole batch's forward pass.

``g_n = d l_n / d theta``, where ``l_n`` is sample n's loss from one forward pass of
the whole batch and the batch loss is ``mean_n l_n`` (or ``sum_n l_n``). For models
whose samples do not interact this is the usual per-sample gradient; with BatchNorm
in training mode it is the defined one, through the batch statistics. One
``torch.autograd.grad`` per sample, nothing from the tracker.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from tests.models.cases import Batch, Case


def sample_losses(loss_fn: nn.Module, z: Tensor, target: Tensor) -> Tensor:
    """``[N]`` losses ``l_n`` with ``loss_fn(z, target) = mean_n l_n`` (or sum).

    A mean-reduced loss divides by its count of loss elements: all of them, or for
    ``CrossEntropyLoss`` with class indices those whose target is not
    ``ignore_index``. So ``l_n = N * (sum of sample n's elements) / count``.
    """
    elementwise_fn = copy.copy(loss_fn)
    elementwise_fn.reduction = "none"
    elementwise = elementwise_fn(z, target)
    n = z.shape[0]
    per_sample = elementwise.reshape(n, -1).sum(1)
    if loss_fn.reduction == "sum":
        return per_sample
    if isinstance(loss_fn, nn.CrossEntropyLoss) and not target.is_floating_point():
        count = (target != loss_fn.ignore_index).sum()
    else:
        count = elementwise.numel()
    return per_sample * n / count


def whole_batch_grads(
    case: Case, model: nn.Module, loss_fn: nn.Module, batch: Batch
) -> dict[str, Tensor]:
    """``{name: [N, *shape]}``: each sample's gradient through the batch's forward.

    The model's buffers (BatchNorm's running statistics) are restored afterwards, so
    that the tracked step sees the model as it was.
    """
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    params = [p for p in model.parameters() if p.requires_grad]
    buffers = {n: b.clone() for n, b in model.named_buffers()}
    output = batch.forward(model)
    z = output if case.loss_input is None else case.loss_input(output)
    losses = sample_losses(loss_fn, z, batch.target)
    mean = losses.mean() if loss_fn.reduction == "mean" else losses.sum()
    torch.testing.assert_close(mean, loss_fn(z, batch.target), rtol=1e-12, atol=0)
    per_sample = [
        torch.autograd.grad(l_n, params, retain_graph=True, allow_unused=True)
        for l_n in losses
    ]
    with torch.no_grad():
        for name, buffer in model.named_buffers():
            buffer.copy_(buffers[name])
    return {
        name: torch.stack(
            [torch.zeros_like(p) if g[i] is None else g[i] for g in per_sample]
        )
        for i, (name, p) in enumerate(zip(names, params, strict=True))
    }


def alone(batch: Batch, n: int) -> Batch:
    """Sample ``n`` as a batch of its own."""
    return Batch(
        tuple(a[n : n + 1] for a in batch.args),
        {k: v[n : n + 1] for k, v in batch.kwargs.items()},
        batch.target[n : n + 1],
    )
