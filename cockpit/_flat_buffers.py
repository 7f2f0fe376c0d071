"""Many small tensors as one flat buffer per device and dtype, and views back.

On a CPU a ``torch._foreach_*`` call still dispatches one operation per tensor, so
an element-wise operation on every parameter (a copy, a difference, a scaling) costs
one dispatch per parameter tensor. Concatenated into one buffer per device and
dtype (one for most models), it is one operation per buffer; the per-parameter
tensors are then views into the buffers (:func:`split`). Element-wise results are
the same bits either way.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["buckets", "concatenate", "split"]


def buckets(tensors: list[Tensor]) -> list[list[int]]:
    """The positions of ``tensors`` by device and dtype, in order of first appearance."""
    found: dict[tuple[torch.device, torch.dtype], list[int]] = {}
    for i, tensor in enumerate(tensors):
        found.setdefault((tensor.device, tensor.dtype), []).append(i)
    return list(found.values())


def concatenate(flat: list[Tensor], groups: list[list[int]]) -> list[Tensor]:
    """``[sum D_i]`` per group of :func:`buckets`: the flat tensors ``[D_i]`` copied."""
    return [torch.cat([flat[i] for i in group]) for group in groups]


def split(
    buffers: list[Tensor], groups: list[list[int]], sizes: list[int]
) -> list[Tensor]:
    """Views ``[D_i]`` into the buffers, in the tensors' order (inverse of concatenate).

    Args:
        buffers: One per group, as :func:`concatenate` made them (or of that layout).
        groups: The positions of :func:`buckets`.
        sizes: ``D_i`` of every tensor.

    """
    parts: list[Tensor] = [buffers[0]] * len(sizes)
    for buffer, group in zip(buffers, groups, strict=True):
        pieces = buffer.split([sizes[i] for i in group])
        for i, piece in zip(group, pieces, strict=True):
            parts[i] = piece
    return parts
