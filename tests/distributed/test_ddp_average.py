"""DDP's averaged ``.grad`` stands in for the summed gradients only when it is exact.

With every piece of every rank equally large (12 samples: 2 ranks x 2 micro-batches
of 3) and DDP averaging the last block's backward pass, the tracker takes the
gradient from DDP instead of all-reducing its own copies (``.grad``'s and, in
float64 without autocast, the per-sample engine's mean): each rank sends exactly
``2 D`` float64 fewer per tracked step than with unequal shards (13 samples), and the
values still equal a single process on the whole batch (the MAX collective carries
2 more float64, the range of the loss scales). Wrong shortcuts these
would catch: taking ``.grad`` when DDP never averaged it (every block under
``no_sync``, the ranks averaging by hand afterwards), taking it after user code
changed it (clipping inside the block), with loss scales that differ between
ranks (logged non-finite, never a wrong value), or taking it for the engine's mean
after a forward pass under autocast or in a 16-bit dtype. Rank 0 also records every
conversion of a tensor to a host value that the tracker makes on the training
thread: none after the collectives (:data:`EXPECTED_READS` lists the host-only ones).
"""

from __future__ import annotations

import json
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

import cockpit
from cockpit._ddp_average import full_precision
from cockpit._pieces import Piece, _AveragedGrads
from cockpit.engines.layer_stats import LayerStats
from tests.distributed._runs import STEPS, records, train
from tests.distributed.test_split_steps import _assert_matches_whole, _free_port

EQUAL = 12
UNEQUAL = 13
#: The MLP's parameters: 4 x 5 + 5 + 5 x 3 + 3.
D = 43
CLIP = 1e-3
PACKAGE = Path(cockpit.__file__).parent
#: The tracker's reads of tensors on the host that never wait for a device: the
#: header's host integers (a CPU tensor on a gloo group), the seeds drawn from the
#: tracker's CPU generator (Monte-Carlo curvature, in BackPACK's hooks) and the
#: engines' one check at the first step. On this CPU-only machine every tensor is
#: a host tensor, so any other conversion (``int(total)``, ``.tolist()`` of
#: summed counts) would be a synchronization with a GPU.
EXPECTED_READS = {
    "_distributed.py:gather_host",
    "tracker.py:sampling_seed",
    "_backpack_hooks.py:_backpack",
    "moves.py:_verify",
}
_CONVERSIONS = ("item", "tolist", "__int__", "__float__", "__bool__", "__index__")


def _tracker_frame() -> str | None:
    """``file:function`` of the innermost frame of the package on the stack."""
    frame = sys._getframe(2)
    while frame is not None:
        path = Path(frame.f_code.co_filename)
        if PACKAGE in path.parents:
            return f"{path.name}:{frame.f_code.co_name}"
        frame = frame.f_back
    return None


@contextmanager
def host_reads() -> Iterator[dict[str, int]]:
    """Count the tracker's tensor-to-host conversions on this thread, by caller."""
    found: dict[str, int] = {}
    thread = threading.current_thread()
    originals = {name: getattr(torch.Tensor, name) for name in _CONVERSIONS}

    def counting(original):
        def read(self, *args, **kwargs):
            if threading.current_thread() is thread:
                caller = _tracker_frame()
                if caller is not None:
                    found[caller] = found.get(caller, 0) + 1
            return original(self, *args, **kwargs)

        return read

    for name, original in originals.items():
        setattr(torch.Tensor, name, counting(original))
    try:
        yield found
    finally:
        for name, original in originals.items():
            setattr(torch.Tensor, name, original)


def rank_main(rank: int, world: int, port: int, out: str, case: str) -> None:
    """A spawned rank: one training run of ``case``; what it sent and read."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world)
    options = {
        "equal": {"batch": EQUAL},
        "unequal": {"batch": UNEQUAL},
        "never_synced": {"batch": EQUAL, "ddp_sync": False},
        "clipped": {"batch": EQUAL, "clip": CLIP},
        "autocast": {"batch": EQUAL, "autocast": True},
    }[case]
    try:
        logdir = Path(out) / case / f"rank{rank}"
        with host_reads() as reads:
            ck = train(logdir, "mean", 2, rank, world, **options)
        summary = {"bytes": ck.ranks.bytes_sent, "reads": reads}
        (Path(out) / f"{case}-rank{rank}.json").write_text(json.dumps(summary))
        torch.distributed.barrier()
    finally:
        torch.distributed.destroy_process_group()


class _Runs:
    """The spawned 2-rank runs of each case, each run once per module."""

    def __init__(self, out: Path):
        self.out = out
        self.summaries: dict[str, list[dict]] = {}

    def __call__(self, case: str) -> list[dict]:
        if case not in self.summaries:
            port = _free_port()
            mp.spawn(rank_main, args=(2, port, str(self.out), case), nprocs=2)
            self.summaries[case] = [
                json.loads((self.out / f"{case}-rank{r}.json").read_text())
                for r in (0, 1)
            ]
        return self.summaries[case]

    def run_dir(self, case: str) -> Path:
        return self.out / case / "rank0" / "run"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return _Runs(tmp_path_factory.mktemp("ddp"))


@pytest.fixture(scope="module")
def whole_equal(tmp_path_factory):
    logdir = tmp_path_factory.mktemp("whole-equal")
    train(logdir, batch=EQUAL)
    return logdir / "run"


def _saved(got: list[dict], summed: list[dict]) -> list[int]:
    """Per rank, the bytes ``got`` sent fewer than ``summed``."""
    return [b["bytes"] - a["bytes"] for a, b in zip(got, summed, strict=True)]


def test_equal_pieces_take_the_gradient_from_ddp(runs, whole_equal):
    equal = runs("equal")
    _assert_matches_whole(runs.run_dir("equal"), whole_equal)
    # 2 D float64 not summed (.grad's and the engine's mean), 2 more in the MAX
    # collective (the loss scales' range).
    assert _saved(equal, runs("unequal")) == [STEPS * (2 * D - 2) * 8] * 2
    reads = equal[0]["reads"]
    assert set(reads) <= EXPECTED_READS, reads
    assert reads["_distributed.py:gather_host"] == STEPS  # each step's header
    assert reads.get("moves.py:_verify", 0) <= 1


def test_a_gradient_ddp_never_averaged_is_summed(runs, whole_equal):
    never = runs("never_synced")
    _assert_matches_whole(runs.run_dir("never_synced"), whole_equal)
    assert _saved(runs("equal"), never) == [STEPS * (2 * D - 2) * 8] * 2


def test_under_autocast_the_engines_mean_is_summed(runs, whole_equal):
    """Autocast leaves this float64 model in float64, but is seen: one D more."""
    autocast = runs("autocast")
    _assert_matches_whole(runs.run_dir("autocast"), whole_equal)
    assert _saved(runs("equal"), autocast) == [STEPS * D * 8] * 2


def test_clipping_inside_the_block_does_not_reach_the_logged_gradient(runs, tmp_path):
    train(tmp_path, batch=EQUAL, clip=CLIP)
    runs("clipped")
    _assert_matches_whole(runs.run_dir("clipped"), tmp_path / "run")
    logged = records(runs.run_dir("clipped"))
    assert all(logged[step]["grad_norm"]["total"] > 10 * CLIP for step in logged)


def _piece(scale: float) -> Piece:
    average = {"w": torch.tensor([2.0, -4.0], dtype=torch.float64)}
    c = torch.tensor(scale, dtype=torch.float64)
    return Piece({}, {}, 3, 0.0, [c], average)


def test_the_average_is_scaled_back_to_the_mean_gradient():
    """``g = average / (c w A)``: w = 1 for a mean loss, n for a sum."""
    pieces = [_piece(0.5), _piece(0.5)]
    mean = _AveragedGrads.of_ddp(pieces, 3, mean=True)
    high, negated_low = mean.scale_range()
    got = mean.mean_gradient(high, negated_low)["w"]
    torch.testing.assert_close(got, torch.tensor([2.0, -4.0]).double() / (0.5 * 2))
    summed = _AveragedGrads.of_ddp(pieces, 3, mean=False)
    got = summed.mean_gradient(*summed.scale_range())["w"]
    expected = torch.tensor([2.0, -4.0]).double() / (0.5 * 3 * 2)
    torch.testing.assert_close(got, expected)


def test_loss_scales_that_differ_between_ranks_give_nan_not_a_wrong_value():
    averaged = _AveragedGrads.of_ddp([_piece(0.5), _piece(0.5)], 3, mean=True)
    # Another rank's largest scale was 1.0: the MAX collective's result.
    high, negated_low = torch.tensor(1.0).double(), torch.tensor(-0.5).double()
    got = averaged.mean_gradient(high, negated_low)["w"]
    assert torch.isnan(got).all()


def _layer(dtype: torch.dtype, rounding: float = 0.0) -> LayerStats:
    grad = torch.zeros(2, dtype=dtype)
    return LayerStats(grad=grad, sq_norms=grad, dots=grad, rounding=rounding)


def test_full_precision_means_no_autocast_no_narrowed_layer_and_32_or_64_bits():
    assert full_precision(False, [_layer(torch.float32), _layer(torch.float64)])
    assert not full_precision(True, [_layer(torch.float64)])
    narrowed = _layer(torch.float32, rounding=torch.finfo(torch.bfloat16).eps)
    assert not full_precision(False, [_layer(torch.float64), narrowed])
    assert not full_precision(False, [_layer(torch.bfloat16)])
