"""DDP's own average of the ranks' gradients, read the moment its backward pass ends.

After a backward pass that DDP synchronized, every rank's ``.grad`` holds
``(1/W) sum_r G_r``, the average over the W ranks of each rank's gradient of the
user's loss. When every piece of the step (every micro-batch of every rank) has the
same number of samples ``n`` and the same loss scale ``c``, that average is, up to
the host factor ``(1 or 1/n) / (c A)`` for A micro-batches per rank, the whole step's
mean gradient ``g``: the tracker takes it (SAME) instead of all-reducing its own
copy of the ``D`` gradient entries again (:mod:`cockpit._pieces`). When every piece
also ran in full precision (:func:`full_precision`) it stands in for the per-sample
engine's mean as well, so neither ``D``-sized mean is sent.

``.grad`` is read in an autograd final callback queued behind DDP's own (which
copies the reduced buckets into ``.grad``), so what user code does to ``.grad``
after ``backward()`` returns inside the ``track()`` block (clipping) does not reach
the statistics. Only DDP's built-in average is trusted: a communication hook (fp16
compression, PowerSGD), DDP's mixed precision, its Python reducer or a delayed
all-reduce change what ``.grad`` holds, and then the tracker sums its own copies.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn
from torch.autograd import Variable
from torch.utils.hooks import RemovableHandle

from cockpit.engines.layer_stats import LayerStats

__all__ = ["FULL_PRECISION", "DDPAverage", "full_precision", "plain_average"]

#: Parameter dtypes in which DDP's average may stand in for the engine's mean.
FULL_PRECISION = frozenset({torch.float32, torch.float64})


def plain_average(ddp: nn.parallel.DistributedDataParallel) -> bool:
    """DDP reduces ``.grad`` with its built-in average and nothing else.

    Reads private attributes of ``DistributedDataParallel``; one this torch lacks
    counts as "not plain", so the tracker falls back to its own exact sum.
    """
    changed = (
        getattr(ddp, "_comm_hooks", True),
        getattr(ddp, "mixed_precision", True) is not None,
        getattr(ddp, "_use_python_reducer", True),
        getattr(ddp, "_delay_all_reduce_all_params", True),
    )
    if any(changed):
        return False
    return "comm_hook" not in ddp._get_ddp_logging_data()  # built-in hooks


def full_precision(autocast: bool, layers: Iterable[LayerStats]) -> bool:
    """DDP's average may stand in for the per-sample engine's mean ``sample_grads``.

    Both are ``g = (1/N) sum_n g_n`` ``[D]``, summed in different orders (autograd
    and DDP's buckets; the engine's ``[N, D_l]`` rows or factors). Without autocast,
    in float32 or float64, each differs from the exact mean by the dtype's rounding,
    so the substitution adds an error of the order the single-process value already
    has: ``Var = mean ||g_n||^2 - ||g||^2`` amplifies either rounding by the same
    ``||g||^2 / Var``. With a forward pass under autocast, a layer's inputs or output
    gradients narrower than its parameter (``LayerStats.rounding``) or 16-bit
    parameters the two differ by ``1e-3`` relative or more, which the variance
    formulas would amplify past the single-process rounding: then the engine's mean
    is summed.

    Args:
        autocast: A forward pass of the block ran under autocast.
        layers: The block's per-sample statistics.

    """
    return not autocast and all(
        stats.rounding == 0 and stats.grad.dtype in FULL_PRECISION for stats in layers
    )


class DDPAverage:
    """Captures DDP's averaged ``.grad`` at the end of a synchronized backward pass.

    Args:
        ddp: The user's DDP model (its forward decides whether DDP synchronizes).
        params: Parameter name -> parameter (the tracked model's).

    Attributes:
        synced: The last forward pass inside the block prepared DDP's reduction.
        autocast: A forward pass inside the block ran under autocast, so ``.grad``
            carries the narrower dtype's rounding (``1e-3`` relative in float16).
        grads: Parameter name -> flat ``(1/W) sum_r G_r`` ``[D_l]``, once a
            synchronized backward pass has ended; else ``None``.

    """

    def __init__(
        self, ddp: nn.parallel.DistributedDataParallel, params: dict[str, nn.Parameter]
    ):
        self.ddp = ddp
        self.params = params
        self.synced = False
        self.autocast = False
        self.grads: dict[str, Tensor] | None = None
        self._armed = False
        self._device = next(iter(params.values())).device.type

    def attach(self) -> RemovableHandle:
        """Watch the DDP model's forward passes; remove the handle on block exit."""
        return self.ddp.register_forward_pre_hook(self._forward)

    def _forward(self, module: nn.Module, args: tuple) -> None:
        self.synced = (
            torch.is_grad_enabled()
            and module.require_backward_grad_sync
            and plain_average(self.ddp)
        )
        self.autocast |= torch.is_autocast_enabled(self._device)

    def arm(self) -> None:
        """Called as a backward pass reaches a parameter: read ``.grad`` at its end."""
        if self.synced and not self._armed:
            self._armed = True
            Variable._execution_engine.queue_callback(self._behind_ddp)

    def _behind_ddp(self) -> None:
        # Runs among the backward pass's final callbacks, which DDP's reducer joined
        # while the pass ran; queued now, the read runs after all of them.
        Variable._execution_engine.queue_callback(self._read)

    def _read(self) -> None:
        self._armed = False
        self.grads = {
            name: p.grad.detach().reshape(-1).clone()
            if p.grad is not None
            else p.new_zeros(p.numel())
            for name, p in self.params.items()
        }
