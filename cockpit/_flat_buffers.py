"""Many small tensors as one flat buffer per device and dtype, and views back.

On a CPU a ``torch._foreach_*`` call still dispatches one operation per tensor, so
an element-wise operation on every parameter (a copy, a difference, a scaling) costs
one dispatch per parameter tensor. Concatenated into one buffer per device and
dtype (one for most models; a large model's in buckets of at most
:data:`BUCKET_ELEMENTS`), it is one operation per buffer; the per-parameter
tensors are then views into the buffers (:func:`split`). Element-wise results are
the same bits either way. Reductions per tensor (norms, means) run once per run of
equal, equally spaced segments of a buffer (:func:`segment_norms`), a row each,
which are the same bits as one reduction per tensor too.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Mapping, Sequence

import torch
from torch import Tensor

from cockpit._stacked_views import StackedViews, on_device, stacked_rows

__all__ = [
    "BUCKET_ELEMENTS",
    "FlatViews",
    "bucket_bound",
    "buckets",
    "chunks",
    "concatenate",
    "copies",
    "listed",
    "norm_rows",
    "numels",
    "segment_means",
    "segment_norms",
    "sizes",
    "split",
]


#: Elements per bucket on a CPU (16 MB in float32), and per chunk of the network's
#: element-wise values where a quantity forms them (``StepStates.elementwise_means``).
#: On a CPU, glibc maps every allocation above 32 MB afresh and unmaps it when freed,
#: so a network-sized temporary of a large model pays its page faults at every step
#: (ResNet-18's 43 MB: 24 ms for one multiplication into a fresh tensor against
#: 5.7 ms into a kept buffer, ``benchmarks/fresh_pages.py``); buffers below that
#: bound reuse the heap's memory.
#: Other devices keep one bucket per device and dtype: their caching allocators reuse
#: blocks of any size, and each bucket is one more kernel launch.
BUCKET_ELEMENTS = 2**22


def bucket_bound(device: torch.device) -> int | None:
    """Elements per bucket or chunk on ``device``: :data:`BUCKET_ELEMENTS` on a CPU."""
    return BUCKET_ELEMENTS if device.type == "cpu" else None


def buckets(tensors: list[Tensor]) -> list[list[int]]:
    """The positions of ``tensors`` by device and dtype, in order of first appearance.

    On a CPU each dtype's positions are cut into consecutive buckets of at most
    :data:`BUCKET_ELEMENTS` elements (a larger tensor alone; :func:`bucket_bound`):
    one bucket for most models.
    """
    found: dict[tuple[torch.device, torch.dtype], list[int]] = {}
    for i, tensor in enumerate(tensors):
        found.setdefault((tensor.device, tensor.dtype), []).append(i)
    sizes = [tensor.numel() for tensor in tensors]
    return [
        group[lo:hi]
        for (device, _), group in found.items()
        for lo, hi in chunks([sizes[i] for i in group], bucket_bound(device))
    ]


def chunks(sizes: list[int], bound: int | None) -> list[tuple[int, int]]:
    """``[(lo, hi)]``: consecutive ``sizes`` of at most ``bound`` in all together.

    One larger than ``bound`` is a chunk of its own; one chunk when all fit or when
    ``bound`` is None.
    """
    found, lo, held = [], 0, 0
    for i, size in enumerate(sizes):
        if bound is not None and i > lo and held + size > bound:
            found.append((lo, i))
            lo, held = i, 0
        held += size
    found.append((lo, len(sizes)))
    return found


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


class FlatViews(dict[str, Tensor]):
    """Parameter name -> view into flat buffers, which it keeps with their layout.

    A plain dict to every reader; :func:`norm_rows` reads the buffers instead of the
    views (flat, or shaped as the tensors they copy: :func:`copies`). Nothing may
    replace a value by another tensor: the buffers would no longer hold it.

    Attributes:
        buffers: One per bucket (:func:`buckets`).
        groups: The positions of :func:`buckets`.
        sizes: ``D_i`` of every view, in the views' order.
        live: For :func:`copies` of tensors that change in place (the
            parameters): their current flat views ``[D_i]`` in the same order,
            made without an operation per tensor where the owner caches them;
            ``None`` if not known.

    """

    buffers: list[Tensor]
    groups: list[list[int]]
    sizes: list[int]
    live: Callable[[], list[Tensor]] | None = None

    @classmethod
    def of(
        cls,
        names: list[str],
        buffers: list[Tensor],
        groups: list[list[int]],
        sizes: list[int],
    ) -> FlatViews:
        """The views ``[D_i]`` of :func:`split`, by name, with their buffers."""
        made = cls(zip(names, split(buffers, groups, sizes), strict=True))
        made.buffers, made.groups, made.sizes = buffers, groups, sizes
        return made


def copies(tensors: dict[str, Tensor]) -> FlatViews:
    """Copies of ``tensors``, each shaped as it is, in one flat buffer per bucket."""
    flat = [tensor.detach().reshape(-1) for tensor in tensors.values()]
    groups = buckets(flat)
    made = FlatViews.of(list(tensors), concatenate(flat, groups), groups, sizes(flat))
    for (name, view), tensor in zip(made.items(), tensors.values(), strict=True):
        made[name] = view.view(tensor.shape)  # the same view, shaped
    return made


def listed(values: Mapping[str, Tensor]) -> list[Tensor]:
    """The values in the mapping's order (:class:`StackedViews`: no call per row)."""
    return (
        values.listed() if isinstance(values, StackedViews) else list(values.values())
    )


def numels(values: Mapping[str, Tensor]) -> list[int]:
    """``D_l`` of every value, in the mapping's order (:class:`StackedViews`: unread)."""
    if isinstance(values, StackedViews):
        return values.numels()
    return sizes(list(values.values()))


def sizes(tensors: list[Tensor]) -> list[int]:
    """``D_i`` of every tensor."""
    return [tensor.numel() for tensor in tensors]


def norm_rows(values: Mapping[str, Tensor]) -> Tensor:
    """``[L]``: the Euclidean norm of each tensor, in the mapping's order.

    From the buffers of :class:`FlatViews` with one buffer: one reduction per run of
    equal-sized, equally spaced segments (:func:`_segment_runs`), the same bits as
    a norm per tensor (each row is reduced alone, in the same order); from the
    stacks of :class:`StackedViews`, one reduction per stack. Otherwise one
    ``torch._foreach_norm`` (a fused kernel on a GPU, one kernel per tensor on a
    CPU).
    """
    if isinstance(values, StackedViews):
        parts = [torch.linalg.vector_norm(stack, dim=1) for stack in values.stacks]
        return stacked_rows(parts, values.order)
    if not isinstance(values, FlatViews) or len(values.buffers) != 1:
        return torch.stack(torch._foreach_norm(list(values.values())))
    return segment_norms(values.buffers[0], values.sizes)


def segment_norms(buffer: Tensor, sizes: list[int]) -> Tensor:
    """``[L]``: the norm of each consecutive segment of ``buffer`` of ``sizes``.

    One reduction per run of equal, equally spaced segments (:func:`_segment_runs`),
    and the segments of no run (one of their size, or unevenly spaced) in one
    ``torch._foreach_norm``: the same bits as a norm per segment (each reduced
    alone, in order), in a few operations however many distinct sizes there are.
    """
    return _by_segment(
        buffer,
        sizes,
        lambda rows: torch.linalg.vector_norm(rows, dim=1),
        torch._foreach_norm,
    )


def segment_means(buffer: Tensor, sizes: list[int]) -> Tensor:
    """``[L]``: the mean of each consecutive segment of ``buffer`` of ``sizes``.

    As :func:`segment_norms`, a reduction per run and per single segment: the same
    bits as a mean per segment.
    """
    return _by_segment(buffer, sizes, lambda rows: rows.mean(1))


def _by_segment(
    buffer: Tensor,
    sizes: list[int],
    reduce: Callable[[Tensor], Tensor],
    reduce_each: Callable[[list[Tensor]], Sequence[Tensor]] | None = None,
) -> Tensor:
    """``[L]``: ``reduce`` (``[G, D] -> [G]``, by row) of each segment, in order.

    ``reduce_each`` (``[D_k]`` each -> a 0-d result each): the segments in runs of
    one, all in one call after the longer runs, where there are two or more.
    """
    buffer = buffer.contiguous()  # itself if it is, as buffers are
    runs, order = _segment_runs(tuple(sizes), reduce_each is not None)
    base = buffer.storage_offset()
    parts, singles = [], []
    # One call for the single segments where there are several.
    each = reduce_each is not None and sum(run[1] == 1 for run in runs) > 1
    for start, count, size, step, first in runs:
        if count == 1 and each:
            singles.append(first)
            continue
        parts.append(reduce(buffer.as_strided((count, size), (step, 1), base + start)))
    if singles:
        assert reduce_each is not None
        pieces = buffer.split(sizes)  # one operation for every segment's view
        parts.append(torch.stack(list(reduce_each([pieces[i] for i in singles]))))
    return stacked_rows(
        parts, None if order is None else on_device(order, buffer.device)
    )


#: ``(start, count, size, step, first)``: ``count`` segments of ``size`` elements at
#: ``start + k * step`` of a buffer, the first of them segment number ``first``.
_Run = tuple[int, int, int, int, int]


@functools.cache
def _segment_runs(
    sizes: tuple[int, ...], singles_last: bool = False
) -> tuple[list[_Run], Tensor | None]:
    """Consecutive segments of ``sizes`` as runs of equal, equally spaced segments.

    Segments of one size are taken in order and a run ends where the spacing
    changes (a 64-layer MLP of equal widths: its hidden weights form one run, its
    hidden biases another). ``singles_last``: the runs of one segment after the
    others. Returns the runs and the positions that put the runs' results back into
    the segments' order (``None``: already in order).
    """
    offsets = [0, *itertools.accumulate(sizes)][:-1]
    by_size: dict[int, list[int]] = {}
    for i, size in enumerate(sizes):
        by_size.setdefault(size, []).append(i)
    runs: list[tuple[_Run, list[int]]] = []
    for size, positions in by_size.items():
        k = 0
        while k < len(positions):
            end = k + 1
            step = size
            if end < len(positions):
                step = offsets[positions[end]] - offsets[positions[k]]
                while (
                    end + 1 < len(positions)
                    and offsets[positions[end + 1]] - offsets[positions[end]] == step
                ):
                    end += 1
                end += 1
            run = (offsets[positions[k]], end - k, size, step, positions[k])
            runs.append((run, positions[k:end]))
            k = end
    if singles_last:  # stable: the longer runs, then the single segments
        runs.sort(key=lambda run: run[0][1] == 1)
    members = [i for _, positions in runs for i in positions]
    if members == sorted(members):
        return [run for run, _ in runs], None
    inverse = torch.empty(len(members), dtype=torch.long)
    inverse[torch.tensor(members)] = torch.arange(len(members))
    return [run for run, _ in runs], inverse
