"""Scratch buffers reused from step to step for element-wise passes on a CPU.

On a CPU a fresh tensor of millions of elements costs more than the arithmetic in
it: its pages are mapped and zeroed by the kernel on first touch, every step again
once the allocator has returned them. ``mean_gsnr`` on ResNet-18 (11 M parameters,
in chunks of :data:`~cockpit._flat_buffers.BUCKET_ELEMENTS`) spent most of its time
in the operations that allocated (``benchmarks/results/scratch/``). A buffer kept
here is touched once and written in place at every later step.

Buffers are per thread (the training thread finalizes; nothing here is shared with
the writer), slot, device and dtype, grown to the largest size asked and never
shrunk. :func:`reusable` hands them out on a CPU only and up to ``BUCKET_ELEMENTS``
numbers, so the memory held is at most that per slot: two slots of float32 are 32
MB. :func:`release` drops them.
"""

from __future__ import annotations

import threading

import torch
from torch import Tensor

from cockpit._flat_buffers import bucket_bound

__all__ = ["release", "reusable", "scratch"]

_local = threading.local()


def scratch(slot: int, numel: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """``[numel]`` of buffer ``slot`` on ``device`` in ``dtype``; garbage values.

    Valid until the next call for the same slot, device and dtype on this thread:
    read a result out (a reduction) before asking again.
    """
    buffers = _buffers()
    key = (slot, device, dtype)
    buffer = buffers.get(key)
    if buffer is None or buffer.numel() < numel:
        buffer = buffers[key] = torch.empty(numel, device=device, dtype=dtype)
    return buffer[:numel]


def reusable(
    slot: int, numel: int, device: torch.device, dtype: torch.dtype
) -> Tensor | None:
    """:func:`scratch` on a CPU for at most ``BUCKET_ELEMENTS``, else ``None``.

    Off a CPU the caching allocator reuses memory already; above the bound a kept
    buffer would hold a whole large layer for the rest of the run.
    """
    bound = bucket_bound(device)
    if bound is None or numel > bound:
        return None
    return scratch(slot, numel, device, dtype)


def release() -> None:
    """Drop this thread's buffers (a closed Cockpit's; the next step makes new)."""
    _buffers().clear()


def _buffers() -> dict[tuple[int, torch.device, torch.dtype], Tensor]:
    if not hasattr(_local, "buffers"):
        _local.buffers = {}
    return _local.buffers
