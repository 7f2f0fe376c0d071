"""Per-layer values stay one stacked tensor until the writer splits them by name.

A quantity's per-layer values are one ``[L]`` tensor on the training thread
(:class:`cockpit._layer_rows.LayerRows`); the record written must hold them by
parameter name, with the same numbers as a dict of one tensor per layer.
"""

from __future__ import annotations

import pytest
import torch

from cockpit import _flat_buffers
from cockpit._layer_rows import LayerRows, stacked
from cockpit._record import TensorRecord
from cockpit.engines._sample_request import (
    GroupLayout,
    LayerStats,
    field_views,
    stacked_field,
)
from cockpit.logs.schema import PER_LAYER, TOTAL


def test_a_record_writes_layer_rows_by_name_as_a_dict_of_scalars_would():
    names = ["0.weight", "0.bias", "2.weight"]
    for dtype in (torch.float32, torch.float64):
        values = torch.tensor([0.1, 2.5e-3, 7.0, 3.25], dtype=dtype)
        rows = {TOTAL: values[-1], PER_LAYER: LayerRows(names, values[:-1])}
        plain = {
            TOTAL: values[-1],
            PER_LAYER: dict(zip(names, values[:-1].unbind(0), strict=True)),
        }
        written = TensorRecord(3, 0.0, {"q": rows}).materialize()
        expected = TensorRecord(3, 0.0, {"q": plain}).materialize()
        assert written == expected
        assert list(written["values"]["q"][PER_LAYER]) == names


def test_layer_rows_read_as_a_mapping_and_stack_without_a_copy():
    rows = torch.arange(6.0).reshape(3, 2)
    layers = LayerRows(["a", "b", "c"], rows)
    assert list(layers) == ["a", "b", "c"] and len(layers) == 3
    assert torch.equal(layers["b"], rows[1])
    assert stacked(layers, ["a", "b", "c"]) is rows
    assert torch.equal(stacked(layers, ["c", "a"]), rows[[2, 0]])


def test_layer_rows_refuse_a_row_count_other_than_the_names():
    with pytest.raises(ValueError, match="one row per name: got 2 names and 3 rows"):
        LayerRows(["a", "b"], torch.zeros(3))


#: (group, row) of each of the five layers of :func:`_grouped_layers`.
_MEMBERS = [(0, 0), (1, 0), (0, 1), (1, 1), (0, 2)]


def _grouped_layers() -> dict[str, LayerStats]:
    """Five layers in two groups, interleaved as weights and biases are."""
    gen = torch.Generator().manual_seed(0)
    groups = [
        {"sq_norms": torch.rand(3, 4, generator=gen), "grad": torch.rand(3, 6)},
        {"sq_norms": torch.rand(2, 4, generator=gen), "grad": torch.rand(2, 2)},
    ]
    return {
        f"layer{i}": LayerStats(
            grad=groups[g]["grad"][j],
            sq_norms=groups[g]["sq_norms"][j],
            dots=torch.zeros(4),
            group=groups[g],
            index=j,
        )
        for i, (g, j) in enumerate(_MEMBERS)
    }


def test_stacked_field_orders_the_groups_rows_as_the_layers():
    layers = _grouped_layers()
    layout = GroupLayout.of(layers)
    assert layout is not None and layout.order == (0, 3, 1, 4, 2)
    assert layout.slots == {f"layer{i}": s for i, s in enumerate(_MEMBERS)}
    expected = torch.stack([layer.sq_norms for layer in layers.values()])
    assert torch.equal(stacked_field(layers, "sq_norms", layout), expected)
    # A field no group holds is stacked layer by layer.
    dots = stacked_field(layers, "dots", layout)
    assert torch.equal(dots, torch.zeros(5, 4))
    views = field_views(layers, "sq_norms", layout)
    assert list(views) == list(layers)
    assert torch.equal(views.rows(), expected)  # type: ignore[attr-defined]
    assert [torch.equal(v, layers[k].sq_norms) for k, v in views.items()] == [True] * 5
    grads = field_views(layers, "grad", layout)  # rows of two lengths: per stack
    reference = torch.stack(torch._foreach_norm(list(grads.values())))
    assert torch.equal(_flat_buffers.norm_rows(grads), reference)


def test_a_layer_reduced_alone_leaves_no_layout_and_stacks_per_layer():
    layers = _grouped_layers()
    layers["alone"] = LayerStats(
        grad=torch.ones(6), sq_norms=torch.full((4,), 2.0), dots=torch.zeros(4)
    )
    assert GroupLayout.of(layers) is None
    expected = torch.stack([layer.sq_norms for layer in layers.values()])
    assert torch.equal(stacked_field(layers, "sq_norms", None), expected)
    views = field_views(layers, "sq_norms", None)
    assert all(views[k] is layer.sq_norms for k, layer in layers.items())
