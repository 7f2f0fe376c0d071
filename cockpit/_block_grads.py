"""The ``track()`` block's own gradient of each parameter, ``g_l`` of the mean loss.

The statistics need this block's gradient, not ``.grad``: ``.grad`` may hold
earlier micro-batches' gradients, DDP's average over ranks, or what clipping inside
the block made of it. Two routes, chosen as the block opens:

- **read** (the usual step): every ``.grad`` is empty when the block opens, no DDP
  average is watched and no parameter has a hook that runs after its gradient is
  accumulated. Then ``.grad`` at the end of the block's backward pass *is* the
  block's gradient, and one autograd callback, queued as the pass reaches the loss
  module's output, reads it before ``backward()`` returns (before clipping). No
  hook per parameter is registered, called or removed.
- **arrive**: otherwise, a tensor hook on each parameter keeps its gradient as it
  arrives. A read block switches to it as a backward pass reaches the loss if that
  pass is the second (the first was read already, so the passes add up) or if
  ``.grad`` was set inside the block before it (a trainer zeroing the gradients
  with ``set_to_none=False`` after the block opened).

A backward pass that never reaches the loss output is seen only as gradients in
``.grad``: a block in which no pass reaches it is refused, but a separate backward
pass of another loss beside the loss's own is not detected, and the statistics then
describe the loss's gradient (with it or without the other's part, by route), not
``.grad``. Add such terms to the loss before ``backward()``.

Either way the kept gradient is ``grad.reshape(-1) * (1 or 1/N) / c``, with ``c``
the gradient that reached the loss output in that pass (the user's loss scale):
the scaled product is the copy the block keeps, so what changes ``.grad`` in place
later does not reach it.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor, nn
from torch.autograd import Variable
from torch.utils.hooks import RemovableHandle

from cockpit import _flat_buffers
from cockpit._ddp_average import DDPAverage
from cockpit._loss_capture import LossCapture
from cockpit.exceptions import UsageError

__all__ = ["BlockGradients"]

_BEFORE_THE_LOSS = (
    "A gradient reached a parameter inside the track() block before the backward "
    "pass reached the loss computed with the Cockpit's loss_fn. Start the block's "
    "backward pass at that loss (an extra term added to it is fine; a separate "
    "backward pass of another loss is not)."
)


class BlockGradients:
    """Context manager keeping the block's scaled flat gradients (module docstring).

    Args:
        params: Parameter name -> parameter (the tracked ones).
        losses: The block's loss capture: it calls :meth:`at_loss` as each backward
            pass reaches the loss output, and holds ``c`` and N.
        mean: The loss averages over samples.
        average: DDP's average, armed as gradients arrive (arrive route only).

    Attributes:
        loss_scales: ``c`` of each backward pass, in order.

    """

    def __init__(
        self,
        params: dict[str, nn.Parameter],
        losses: LossCapture,
        mean: bool,
        average: DDPAverage | None = None,
    ) -> None:
        self.params = params
        self.losses = losses
        self.mean = mean
        self.average = average
        self.loss_scales: list[Tensor] = []
        self._kept: dict[str, Tensor] = {}
        self._handles: list[RemovableHandle] = []
        self._passes = 0
        self._scale_of: Tensor | None = None
        self._scale: Tensor | None = None
        self._read = False

    def __enter__(self) -> BlockGradients:
        self._read = self.average is None and not _touched(self.params)
        if not self._read:
            self._hook_all()
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def at_loss(self) -> None:
        """A backward pass reached the loss output (``c`` is known): read or hook."""
        self._passes += 1
        if not self._read:
            return
        # A second pass adds to the gradients read from the first; ``.grad`` set
        # inside the block before this pass (``zero_grad(set_to_none=False)``)
        # would add to this one's: from here on, keep them as they arrive.
        if self._passes > 1 or _touched(self.params):
            self._read = False
            # Gradients added to from here on are no longer views of the buffers.
            self._kept = dict(self._kept)
            self._hook_all()
        else:
            Variable._execution_engine.queue_callback(self._read_all)

    def gradients(self) -> dict[str, Tensor]:
        """Parameter name -> flat ``g_l`` ``[D_l]``; zeros where no gradient came.

        Raises:
            UsageError: If gradients reached the parameters in this block but no
                backward pass went through the loss.

        """
        if self._passes == 0 and _touched(self.params):
            raise UsageError(_BEFORE_THE_LOSS)
        kept = self._kept
        whole = isinstance(kept, _flat_buffers.FlatViews)
        if whole and len(kept) == len(self.params):  # read: views in their order
            return kept
        return {
            name: kept[name]
            if name in kept
            else torch.zeros(p.numel(), device=p.device, dtype=p.dtype)
            for name, p in self.params.items()
        }

    def _hook_all(self) -> None:
        self._handles += [
            p.register_hook(functools.partial(self._keep, name))
            for name, p in self.params.items()
        ]

    def _read_all(self) -> None:
        """At the end of the first backward pass: ``.grad`` is the block's gradient."""
        grads = {name: p.grad for name, p in self.params.items()}
        reached = {name: grad for name, grad in grads.items() if grad is not None}
        if not reached:  # a pass that reached no parameter (autograd.grad)
            return
        # One product per flat buffer (the same products as one multiplication per
        # parameter; torch._foreach_mul dispatches once per tensor on a CPU).
        # The copy under no_grad, not a detach per gradient, leaves the graphs of
        # create_graph passes behind.
        with torch.no_grad():
            flat = [grad.reshape(-1) for grad in reached.values()]
            groups = _flat_buffers.buckets(flat)
            copies = _flat_buffers.concatenate(flat, groups)
        scale = self._grad_scale()
        buffers = [b.mul_(scale) for b in copies]
        sizes = _flat_buffers.sizes(flat)
        self._kept = _flat_buffers.FlatViews.of(list(reached), buffers, groups, sizes)

    def _keep(self, name: str, grad: Tensor) -> None:
        """A gradient arriving at a parameter, scaled before DDP averages ``.grad``."""
        if self.average is not None:
            self.average.arm()
        scaled = _flat(grad) * self._grad_scale()
        kept = self._kept.get(name)
        self._kept[name] = scaled if kept is None else kept + scaled

    def _grad_scale(self) -> Tensor:
        """``(1 or 1/N) / c``: from a gradient of the user's loss to ``g`` of the mean.

        Computed once per backward pass (``c``, the loss scale, is read at the loss
        module's output, which the backward pass reaches before any parameter).
        """
        c = self.losses.output_grad
        if c is None:
            raise UsageError(_BEFORE_THE_LOSS)
        if c is not self._scale_of:
            n = self.losses.batch_size()
            self._scale_of, self._scale = c, (1.0 if self.mean else 1.0 / n) / c
            self.loss_scales.append(c)
        assert self._scale is not None
        return self._scale


def _touched(params: dict[str, nn.Parameter]) -> bool:
    """A parameter has a gradient, or a hook run after its gradient is accumulated.

    A list, not a generator: one Python call, not one per parameter.
    """
    return any(
        [
            p.grad is not None or bool(getattr(p, "_post_accumulate_grad_hooks", None))
            for p in params.values()
        ]
    )


def _flat(grad: Tensor) -> Tensor:
    """``[D_l]`` of a gradient, detached (``create_graph`` passes give graphs)."""
    if grad.requires_grad:
        grad = grad.detach()
    return grad.reshape(-1)
