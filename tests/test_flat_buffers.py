"""Flat buffers per device and dtype stand in for per-tensor element-wise operations.

The step taken, its unit step and the block's scaled gradients are computed on one
concatenated buffer per device and dtype instead of a ``torch._foreach_*`` call
(one dispatch per tensor on a CPU); the results must be the per-tensor results bit
for bit, also when the parameters have several dtypes (several buffers).
"""

from __future__ import annotations

import torch
from torch import nn

from cockpit import _flat_buffers
from cockpit._optimizer_step import _FlatParams, _Taken


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
    taken = _Taken.from_buffers(after, flat)
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
    norms = torch._foreach_norm(list(expected.values()))
    squares = torch._foreach_mul(norms, norms)
    assert torch.equal(taken.length, torch.stack(squares).sum().sqrt())
