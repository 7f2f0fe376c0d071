"""The batch replay's loop route: how many rows it stacks, and how it stacks them."""

from __future__ import annotations

import pytest
import torch

from cockpit.engines import batch_replay, layer_stats
from cockpit.engines._row_blocks import stacked

RESNET18_WIDTH = 11_181_642  # torchvision resnet18(num_classes=10)'s parameters


def _rows(m: int) -> list[dict[str, torch.Tensor]]:
    """m rows of a ``[2, 3]`` and a ``[2]`` parameter's gradients, distinct values."""
    generator = torch.Generator().manual_seed(0)
    return [
        {
            "w": torch.randn(2, 3, generator=generator),
            "b": torch.randn(2, generator=generator),
        }
        for _ in range(m)
    ]


@pytest.mark.parametrize(("m", "count"), [(7, 3), (6, 3), (2, 5), (4, 1)])
def test_blocks_hold_consecutive_flat_rows_in_order(m, count):
    rows = _rows(m)
    expected = {  # row n of parameter w: w's gradient of sample n, flattened
        name: torch.cat([row[name].reshape(1, -1) for row in rows])
        for name in ("w", "b")
    }
    blocks = list(stacked(iter([dict(row) for row in rows]), count))
    sizes = [count] * (m // count) + [m % count] * (m % count > 0)
    assert [block["w"].shape for block in blocks] == [(c, 6) for c in sizes]
    for name, values in expected.items():
        torch.testing.assert_close(torch.cat([b[name] for b in blocks]), values)


def test_one_row_per_block_is_a_view_and_more_copy_every_block():
    rows = _rows(4)
    for got, row in zip(stacked(iter(rows), 1), rows, strict=True):
        assert got["w"].data_ptr() == row["w"].data_ptr()
    rows = _rows(4)
    pointers = {row["w"].data_ptr() for row in rows}
    last = list(stacked(iter(rows), 3))[-1]  # one row left over: still a copy
    assert last["w"].shape[0] == 1 and last["w"].data_ptr() not in pointers
    assert rows[3] == {}  # the stacked rows were released


def test_rows_are_stacked_on_other_devices_only():
    cpu, gpu = torch.device("cpu"), torch.device("cuda")  # constructing needs no GPU
    assert batch_replay.loop_rows(cpu, 128, RESNET18_WIDTH) == 1
    assert batch_replay.loop_rows(gpu, 128, RESNET18_WIDTH) == 6  # 6 x 11.2 M < 2**26
    assert batch_replay.loop_rows(gpu, 4, RESNET18_WIDTH) == 4
    assert batch_replay.loop_rows(gpu, 128, 2**27) == 1  # a row over the bound
    assert batch_replay.loop_rows(gpu, 128, 2**20) == 64  # 2**26 / 2**20


def test_the_cpu_stacks_when_taken_off_the_unstacked_devices(monkeypatch):
    monkeypatch.setattr(batch_replay, "UNSTACKED_DEVICES", frozenset())
    cpu = torch.device("cpu")
    assert batch_replay.loop_rows(cpu, 128, 2**16) == 16  # CHUNK_ELEMENTS 2**20
    monkeypatch.setattr(
        layer_stats, "CHUNK_ELEMENTS", layer_stats.DEVICE_CHUNK_ELEMENTS
    )
    assert batch_replay.loop_rows(cpu, 128, RESNET18_WIDTH) == 6
