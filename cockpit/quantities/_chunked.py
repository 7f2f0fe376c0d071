"""Element-wise passes over a large network's values on a CPU, in reused buffers.

A network of more than :data:`~cockpit._flat_buffers.BUCKET_ELEMENTS` elements is
taken a chunk of consecutive layers (or a flat buffer of ``initial``) at a time, so
that no network-sized temporary is allocated; each chunk is formed in the same two
buffers of :func:`cockpit._scratch.scratch`, kept from step to step, because on a
CPU a fresh tensor of millions of elements costs more than the arithmetic in it
(``benchmarks/results/scratch/``). Used by :class:`~cockpit.quantities._view.StepStates`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping

import torch
from torch import Tensor

from cockpit import _flat_buffers, _scratch, _stacked_views

__all__ = [
    "ElementwiseFn",
    "buffers",
    "chunked_means",
    "layer_means",
    "moved_segment_norms",
    "stacked_means",
]

#: ``fn(first [D], second [D], out) -> [D]`` of :meth:`StepStates.elementwise_means`:
#: computed in ``out`` (two ``[D]`` buffers it may overwrite, possibly its
#: arguments) or, given ``None``, in new tensors.
ElementwiseFn = Callable[[Tensor, Tensor, tuple[Tensor, Tensor] | None], Tensor]


def layer_means(
    fn: ElementwiseFn,
    first: Mapping[str, Tensor],
    second: Mapping[str, Tensor],
    whole: Callable[[], Tensor],
) -> Tensor:
    """``[L + 1]``: each layer's mean of ``fn(first_l, second_l)``, the whole mean last.

    ``fn`` computes in ``out`` (two ``[D]`` buffers it may overwrite, which may be
    its arguments) or, given ``None``, in new tensors; it must not change its
    arguments otherwise. ``whole()``: the means from one pass over the network's
    concatenated values (:meth:`StepStates.elementwise_means`'s own route). The
    route, by the values' layout:

    - Layers held as rows of group stacks (``Linear`` layers reduced together), at
      least two per stack on average: once per stack, no concatenation
      (:func:`stacked_means`); with fewer, the operations per stack cost more than
      the concatenation (the digits MLP: six stacks of one layer).
    - Up to :data:`~cockpit._flat_buffers.BUCKET_ELEMENTS` elements, or off a CPU:
      ``whole()``, on a CPU in reused buffers (:func:`cockpit._scratch.scratch`: a
      fresh tensor of this size costs more than its arithmetic there).
    - Above, on a CPU: chunks of consecutive layers of at most that many
      (:func:`chunked_means`), each copied into the buffers, so that no
      network-sized temporary is allocated.

    The layers' means are the same bits either way; the whole mean is the chunks'
    sums added, over D (equal up to float roundoff).
    """
    if (
        isinstance(first, _stacked_views.StackedViews)
        and 2 * len(first.stacks) <= len(first)  # each stack holds layers
        and first.same_layout(second)
    ):  # no concatenation of the layers
        bound = _flat_buffers.bucket_bound(first.stacks[0].device)
        means = stacked_means(fn, first, second, bound)
        if means is not None:
            return means
    sizes = _flat_buffers.numels(first)
    if sum(sizes) <= _flat_buffers.BUCKET_ELEMENTS:  # no per-layer value read
        return whole()
    a, b = _flat_buffers.listed(first), _flat_buffers.listed(second)
    bound = _flat_buffers.bucket_bound(a[0].device)
    if bound is None:
        return whole()
    return chunked_means(fn, a, b, sizes, bound)


def chunked_means(
    fn: ElementwiseFn, a: list[Tensor], b: list[Tensor], sizes: list[int], bound: int
) -> Tensor:
    """``[L + 1]``: each layer's mean of ``fn(a_l, b_l)``, the whole mean last.

    Chunks of consecutive layers of at most ``bound`` elements
    (:func:`~cockpit._flat_buffers.chunks`): a chunk of one layer is read where it
    is, a longer one copied into the buffers, which ``fn`` then overwrites. The
    layers' means are the bits of one pass over the network; the whole mean is the
    chunks' sums added, over D (equal up to float roundoff).
    """
    means, sums = [], []
    for lo, hi in _flat_buffers.chunks(sizes, bound):
        out = buffers(sum(sizes[lo:hi]), a[lo:hi], b[lo:hi])
        if hi - lo == 1:  # None above the bound: fn allocates
            values = fn(a[lo], b[lo], out)
        else:  # a chunk of several layers is within the bound
            assert out is not None
            torch.cat(a[lo:hi], out=out[0])
            torch.cat(b[lo:hi], out=out[1])
            values = fn(*out, out)
        means.append(_flat_buffers.segment_means(values, sizes[lo:hi]))
        sums.append(values.sum())
    whole = torch.stack(sums).sum().div_(sum(sizes))
    return torch.cat([*means, whole.reshape(1)])


def stacked_means(
    fn: ElementwiseFn,
    a: _stacked_views.StackedViews,
    b: _stacked_views.StackedViews,
    bound: int | None,
) -> Tensor | None:
    """``[L + 1]``: :func:`chunked_means` of layers held as rows of group stacks.

    ``fn`` runs once per pair of stacks (``[G, D]``, in the reused :func:`buffers`
    on a CPU), each row's mean is its layer's, and the rows are put in the
    layers' order: no concatenation of the layers, no row selected. ``None`` if a
    stack holds more than ``bound`` elements (then take the layers in chunks). The
    layers' means are the bits of one pass over the network's values; the whole mean
    is the stacks' sums added, over D (equal up to float roundoff).
    """
    if bound is not None and any(stack.numel() > bound for stack in a.stacks):
        return None
    means, sums, total = [], [], 0
    for x, y in zip(a.stacks, b.stacks, strict=True):
        flat = buffers(x.numel(), [x], [y])
        out = None if flat is None else (flat[0].view(x.shape), flat[1].view(y.shape))
        values = fn(x, y, out)
        means.append(values.mean(1))
        sums.append(values.sum())
        total += values.numel()
    whole = torch.stack(sums).sum().div_(total)
    return torch.cat([_stacked_views.stacked_rows(means, a.order), whole.reshape(1)])


def buffers(
    numel: int, first: list[Tensor], second: list[Tensor]
) -> tuple[Tensor, Tensor] | None:
    """Two reused ``[numel]`` buffers for values of ``first`` and ``second``.

    Each in the dtype their concatenation would have (parameters of several dtypes
    promote, as ``torch.cat`` does); ``None`` where :func:`cockpit._scratch.reusable`
    keeps none (off a CPU, above the bound).
    """
    device = first[0].device
    x = _scratch.reusable(0, numel, device, _promoted(first))
    y = _scratch.reusable(1, numel, device, _promoted(second))
    return None if x is None or y is None else (x, y)


def _promoted(values: list[Tensor]) -> torch.dtype:
    """The dtype ``torch.cat(values)`` has."""
    return functools.reduce(torch.promote_types, (v.dtype for v in values))


def moved_segment_norms(start: _flat_buffers.FlatViews, live: list[Tensor]) -> Tensor:
    """``[L]``: ``||theta_l - theta_{0,l}||``, the current values ``live`` (flat).

    One concatenation, difference and segment norms per flat buffer of ``start``
    (the copies of the initial values); with several buffers each is formed in the
    same reused one, and the norms are put back in the parameters' order.
    """
    several = len(start.buffers) > 1
    parts, positions = [], []
    with torch.no_grad():  # the parameters require grad; no graph is needed
        for buffer, group in zip(start.buffers, start.groups, strict=True):
            out = None
            if several:  # None off a CPU, or for a buffer above the bound
                out = _scratch.reusable(0, buffer.numel(), buffer.device, buffer.dtype)
            moved = torch.cat([live[i] for i in group], out=out).sub_(buffer)
            sizes = [start.sizes[i] for i in group]
            parts.append(_flat_buffers.segment_norms(moved, sizes))
            positions += group
    if positions == list(range(len(positions))):
        return torch.cat(parts) if several else parts[0]
    inverse = sorted(range(len(positions)), key=positions.__getitem__)
    order = _stacked_views.index(tuple(inverse), parts[0].device)
    return _stacked_views.stacked_rows(parts, order)
