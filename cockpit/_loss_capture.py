"""Per-sample losses from the loss module's own call, without changing it."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from cockpit._graph_losses import elementwise_from_graph
from cockpit.engines.loss_factors import (
    batch_normalizer,
    per_sample_losses,
    unreduced,
)
from cockpit.exceptions import UsageError


class LossCapture:
    """Forward hook on the loss module that records the per-sample losses ``l_n``.

    ``l_n`` is the sample's element-wise loss averaged over its non-batch elements for
    a mean-reduced loss and summed for a sum-reduced one, so that the user's loss is
    ``mean_n l_n`` or ``sum_n l_n``; a loss that divides by something else (ignored
    targets) is normalized to match
    (:func:`~cockpit.engines.loss_factors.per_sample_losses`). Cross-entropy's are
    read from the log-probabilities its graph saved
    (:func:`~cockpit._graph_losses.elementwise_from_graph`); other losses are
    recomputed under ``no_grad`` on detached inputs. The user's loss value and graph
    are untouched.

    The gradient that reaches the loss module's output in the backward pass is the
    user's loss scale ``c`` (``loss / accumulation_steps`` gives ``1/K``, a gradient
    scaler its scale, a plain ``loss.backward()`` 1): :attr:`output_grad`, a 0-dim
    tensor on the device, read by the engines to undo it without a host sync.
    :attr:`on_backward`, if set, is called as each backward pass reaches the output,
    once ``output_grad`` holds that pass's ``c``.
    """

    def __init__(self, loss_fn: nn.Module, mean_reduction: bool):
        self._loss_fn = loss_fn
        self._mean = mean_reduction
        self._handle: RemovableHandle | None = None
        self.losses: list[Tensor] = []
        self.target: object = None
        self.input_shape: torch.Size | None = None
        self.backward_reached = False
        self.output_grad: Tensor | None = None
        self.on_backward: Callable[[], None] | None = None

    def __enter__(self) -> LossCapture:
        self.losses = []
        self.backward_reached = False
        self.output_grad = None
        self._handle = self._loss_fn.register_forward_hook(self._hook)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._handle is not None
        self._handle.remove()
        self._handle = None

    def _hook(self, module: nn.Module, args: tuple, output: Tensor) -> None:
        if self.losses:
            # Refuse now: a second forward pass has already overwritten what the
            # layers stored for the first one's backward.
            raise UsageError(
                "loss_fn was called a second time inside one track() block. One block "
                "is one training step with one forward pass and one loss call. For "
                "gradient accumulation over micro-batches, put track() around one "
                "micro-batch per optimizer step (its statistics describe it)."
            )
        if output.requires_grad:
            output.register_hook(self._mark_backward)
        inputs, target = args[0], args[1]
        self.target, self.input_shape = target, inputs.shape
        elementwise = elementwise_from_graph(module, output, target)
        if elementwise is None:
            with torch.no_grad():
                elementwise = unreduced(module, inputs.detach(), target)
        normalizer = batch_normalizer(module, target) if self._mean else None
        self.losses.append(per_sample_losses(elementwise, self._mean, normalizer))

    def batch_size(self) -> int:
        """N of the loss call in the block (once it has happened)."""
        return self.losses[0].shape[0]

    def _mark_backward(self, grad: Tensor) -> None:
        self.backward_reached = True
        self.output_grad = grad.detach()
        if self.on_backward is not None:
            self.on_backward()

    def loss_scale(self) -> Tensor:
        """``c``: the gradient that reached the loss output (after the backward)."""
        assert self.output_grad is not None, "read before the loss's backward"
        return self.output_grad

    def per_sample_losses(self) -> Tensor:
        """``[N]`` losses of the one loss call in the block, after its backward."""
        if not self.losses:
            raise UsageError(
                "No call of loss_fn inside the track() block. Compute the loss inside "
                "the block with the loss module given to Cockpit (it supplies the "
                "per-sample losses)."
            )
        if not self.backward_reached:
            raise UsageError(
                "The track() block ended without a backward pass through the loss: "
                "call loss.backward() inside the block."
            )
        return self.losses[0]
