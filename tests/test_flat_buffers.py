"""Flat buffers per device and dtype stand in for per-tensor element-wise operations.

The step taken, its unit step and the block's scaled gradients are computed on one
concatenated buffer per device and dtype instead of a ``torch._foreach_*`` call
(one dispatch per tensor on a CPU); the results must be the per-tensor results bit
for bit, also when the parameters have several dtypes (several buffers).
"""

from __future__ import annotations

import torch
from torch import nn

from cockpit import _flat_buffers, _stacked_views
from cockpit._optimizer_step import _FlatParams, _Taken
from cockpit.quantities import _chunked


def _mixed_model() -> nn.Module:
    """Parameters in float64 and float32, interleaved (two buffers, not contiguous)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2), nn.Linear(2, 5))
    model[0].double()
    model[2].double()
    return model


def test_split_gives_back_each_tensor_in_its_order_and_dtype():
    gen = torch.Generator().manual_seed(1)
    tensors = [
        torch.randn(5, generator=gen, dtype=torch.float64),
        torch.randn(3, generator=gen),
        torch.randn(1, generator=gen, dtype=torch.float64),
        torch.randn(7, generator=gen),
    ]
    groups = _flat_buffers.buckets(tensors)
    assert groups == [[0, 2], [1, 3]]
    buffers = _flat_buffers.concatenate(tensors, groups)
    assert [b.dtype for b in buffers] == [torch.float64, torch.float32]
    parts = _flat_buffers.split(buffers, groups, [t.numel() for t in tensors])
    for part, tensor in zip(parts, tensors, strict=True):
        assert part.dtype == tensor.dtype
        assert torch.equal(part, tensor)


def test_the_step_taken_equals_the_per_tensor_differences_bit_for_bit():
    model = _mixed_model()
    params = dict(model.named_parameters())
    flat = _FlatParams(params)
    before = {n: p.detach().clone() for n, p in params.items()}
    snapshot = flat.concatenated()
    assert len(snapshot) == 2
    with torch.no_grad():
        for i, p in enumerate(params.values()):
            p.add_(torch.randn_like(p) * 0.1 * (i + 1))
    after = flat.concatenated()
    for now, then in zip(after, snapshot, strict=True):
        now.sub_(then)
    taken = _Taken(after, flat)
    assert list(taken.delta) == list(params)
    expected = {n: (p.detach() - before[n]).reshape(-1) for n, p in params.items()}
    for name, delta in taken.delta.items():
        assert delta.dtype == params[name].dtype
        assert torch.equal(delta, expected[name]), name
    divisor = torch.tensor(0.37, dtype=torch.float64)
    unit = taken.divided(divisor)
    per_tensor = torch._foreach_div(list(expected.values()), divisor)
    for (name, value), reference in zip(unit.items(), per_tensor, strict=True):
        assert torch.equal(value, reference), name
    norms = torch.stack(torch._foreach_norm(list(expected.values())))
    assert torch.equal(taken.norm_rows, norms)
    assert torch.equal(taken.length, torch.linalg.vector_norm(norms))


def test_cpu_buckets_are_cut_at_the_bound_and_keep_devices_and_dtypes_apart(
    monkeypatch,
):
    monkeypatch.setattr(_flat_buffers, "BUCKET_ELEMENTS", 10)
    f32, f64 = torch.float32, torch.float64
    tensors = [
        torch.zeros(n, dtype=dtype)
        for n, dtype in [(5, f32), (4, f64), (5, f32), (20, f32), (3, f64), (3, f32)]
    ]
    # float32: 5 + 5 fill one bucket, 20 is alone, 3 starts the next; float64 fits.
    assert _flat_buffers.buckets(tensors) == [[0, 2], [3], [5], [1, 4]]
    assert _flat_buffers.chunks([], 10) == [(0, 0)]
    # Off a CPU (here the meta device) a device and dtype stay one bucket.
    elsewhere = [torch.zeros(n, device="meta") for n in (5, 20, 3)]
    assert _flat_buffers.buckets(elsewhere) == [[0, 1, 2]]
    model = _mixed_model()
    views = _flat_buffers.copies(dict(model.named_parameters()))
    assert len(views.buffers) > 2  # the two dtypes in more buckets than two
    for name, p in model.named_parameters():
        assert torch.equal(views[name], p.detach()), name


def _segments_buffer(sizes: list[int], dtype: torch.dtype) -> torch.Tensor:
    gen = torch.Generator().manual_seed(2)
    return torch.randn(sum(sizes), generator=gen, dtype=dtype)


#: A deep MLP's layout (equal weights and biases interleaved, so their runs are
#: equally spaced), then sizes that break the spacing and a size met once.
SIZES = [12, 3, 12, 3, 12, 3, 12, 3, 20, 12, 3, 5, 7]


def test_segment_norms_and_means_equal_one_reduction_per_segment_bit_for_bit():
    """The runs of equal, equally spaced segments are reduced a row each; the
    results must be those of each segment alone, in the segments' order, not only
    close (a reordered sum would differ in the last bits)."""
    for dtype in (torch.float32, torch.float64):
        buffer = _segments_buffer(SIZES, dtype)
        segments = buffer.split(SIZES)
        norms = _flat_buffers.segment_norms(buffer, SIZES)
        expected = torch.stack([torch.linalg.vector_norm(s) for s in segments])
        assert torch.equal(norms, expected)
        means = _flat_buffers.segment_means(buffer, SIZES)
        assert torch.equal(means, torch.stack([s.mean() for s in segments]))
    # A view into a larger buffer (an offset into its storage) reads its own segments.
    offset = _segments_buffer([4, *SIZES], torch.float64)[4:]
    expected = torch.stack([torch.linalg.vector_norm(s) for s in offset.split(SIZES)])
    assert torch.equal(_flat_buffers.segment_norms(offset, SIZES), expected)


def test_norm_rows_reads_flat_views_and_stacks_as_the_fused_norm_would():
    """FlatViews (one buffer) and StackedViews give the norms of
    torch._foreach_norm over their values; a plain dict is that call."""
    buffer = _segments_buffer(SIZES, torch.float64)
    groups = [list(range(len(SIZES)))]
    names = [f"p{i}" for i in range(len(SIZES))]
    views = _flat_buffers.FlatViews.of(names, [buffer], groups, SIZES)
    reference = torch.stack(torch._foreach_norm(list(views.values())))
    assert torch.equal(_flat_buffers.norm_rows(views), reference)
    assert torch.equal(_flat_buffers.norm_rows(dict(views)), reference)
    gen = torch.Generator().manual_seed(3)
    stacks = [torch.randn(3, 6, generator=gen), torch.randn(2, 4, generator=gen)]
    slots = [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1)]
    order = [3, 0, 4, 1, 2]  # the mapping's values interleave the two stacks' rows
    stacked = _stacked_views.StackedViews(
        {f"q{i}": slots[i] for i in order}, stacks, torch.tensor(order)
    )
    values = list(stacked.values())  # each row selected when read
    assert all(
        torch.equal(v, stacks[k][j])
        for v, (k, j) in zip(values, map(slots.__getitem__, order), strict=True)
    )
    assert all(torch.equal(a, b) for a, b in zip(stacked.listed(), values, strict=True))
    expected = torch.stack(torch._foreach_norm(values))
    assert torch.equal(_flat_buffers.norm_rows(stacked), expected)
    assert _flat_buffers.numels(stacked) == [4, 6, 4, 6, 6]


def test_copies_are_shaped_copies_in_one_buffer():
    model = _mixed_model()
    params = dict(model.named_parameters())
    copied = _flat_buffers.copies(params)
    assert len(copied.buffers) == 2  # float64 and float32
    for name, p in params.items():
        assert copied[name].shape == p.shape
        assert torch.equal(copied[name], p.detach())
    with torch.no_grad():
        next(iter(params.values())).add_(1.0)
    first = next(iter(params))
    assert not torch.equal(copied[first], params[first].detach())  # a copy


def test_moved_norms_per_buffer_come_back_in_the_parameters_order():
    """Several buffers (two dtypes, interleaved): each in the reused scratch buffer,
    the norms in the parameters' order, against one norm per parameter."""
    model = _mixed_model()
    params = dict(model.named_parameters())
    start = _flat_buffers.copies(params)
    assert len(start.buffers) == 2
    with torch.no_grad():
        for p in params.values():
            p.add_(torch.randn_like(p))
    live = [p.detach().reshape(-1) for p in params.values()]
    got = _chunked.moved_segment_norms(start, live)
    expected = [(p.detach() - start[n]).norm() for n, p in params.items()]
    assert [t.dtype for t in expected] == [p.dtype for p in params.values()]
    torch.testing.assert_close(got, torch.stack([e.double() for e in expected]))


def test_stacked_views_of_evenly_spaced_views_are_one_view():
    """Equal weights interleaved with their biases in one buffer: their views stack
    into a strided view of it (no copy); other lists are stacked, the same values."""
    buffer = torch.arange(24.0)
    views = _flat_buffers.split([buffer[:15]], [[0, 1, 2, 3, 4, 5]], [4, 1] * 3)
    weights = views[0::2]  # at offsets 0, 5, 10
    stacked = _stacked_views.stacked_views(weights)
    assert torch.equal(stacked, torch.stack(weights))
    assert stacked.untyped_storage().data_ptr() == buffer.untyped_storage().data_ptr()
    assert stacked.stride() == (5, 1)
    uneven = [views[0], views[2], buffer[20:24]]  # offsets 0, 5, 20: a stack
    assert torch.equal(_stacked_views.stacked_views(uneven), torch.stack(uneven))
    assert _stacked_views.stacked_views(uneven).is_contiguous()
    copies = [w.clone() for w in weights]  # three storages: a stack
    joined = _stacked_views.stacked_views(copies)
    assert torch.equal(joined, stacked)
    assert joined.untyped_storage().data_ptr() != buffer.untyped_storage().data_ptr()
    assert _stacked_views.stacked_views(weights[:1]).shape == (1, 4)
