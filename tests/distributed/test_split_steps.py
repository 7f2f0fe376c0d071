"""A step split into micro-batches or ranks logs what one process logs on the whole.

Reference: the same training run tracked in one ``track()`` block per step on the
concatenated batch. Gradient accumulation over 1, 2 and 4 micro-batches (mean loss
scaled by ``1/K``, sum loss unscaled) and DDP on 2 and 3 gloo processes with unequal
shards (each rank accumulating 2 micro-batches under ``no_sync``) must log the same
values (float64, float rounding), except the quantities that are absent on split
steps, which are listed with their reason in ``meta.json``; other ranks write nothing.
"""

from __future__ import annotations

import json
import math
import socket

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

import cockpit
from cockpit._pieces import HESSIAN_REASON, WHOLE_REASON
from cockpit.exceptions import AbsentQuantityWarning, CockpitWarning, UsageError
from cockpit.quantities.hess_trace import HessTrace
from tests.distributed._runs import rank_main, records, train

#: Absent on split steps, and why (kfac_block: Kronecker factors; the others: Gram
#: matrices or eigensolves of the whole batch).
SPLIT_ABSENT = {
    name: WHOLE_REASON
    for name in ("curvature_noise", "ggn_top_eigen", "hess_max_ev", "kfac_block")
}
#: Timing, not statistics.
UNCOMPARED = {"tracker_time", "step_time"}


def _assert_same(got, expected, path: str = "") -> None:
    if isinstance(expected, dict):
        assert set(got) == set(expected), path
        for key in expected:
            _assert_same(got[key], expected[key], f"{path}/{key}")
    elif isinstance(expected, list):
        assert len(got) == len(expected), path
        for i, (a, b) in enumerate(zip(got, expected, strict=True)):
            _assert_same(a, b, f"{path}[{i}]")
    elif isinstance(expected, float):
        assert math.isclose(got, expected, rel_tol=1e-9, abs_tol=1e-12), (
            path,
            got,
            expected,
        )
    else:
        assert got == expected, path


def _assert_matches_whole(run_dir, whole_dir) -> None:
    got, whole = records(run_dir), records(whole_dir)
    assert set(got) == set(whole)
    for step, values in whole.items():
        expected = {
            k: v for k, v in values.items() if k not in SPLIT_ABSENT.keys() | UNCOMPARED
        }
        logged = {k: v for k, v in got[step].items() if k not in UNCOMPARED}
        _assert_same(logged, expected, f"step {step}")
    meta = json.loads((run_dir / "meta.json").read_text())
    assert meta["absent"] == SPLIT_ABSENT
    # Each block's own gradient matched its per-sample gradients' mean, so no
    # parameter left BackPACK for the replay.
    assert meta["engines"]["backpack"] == ["0.weight", "0.bias", "2.weight", "2.bias"]


@pytest.fixture(scope="module", params=["mean", "sum"])
def whole(request, tmp_path_factory):
    logdir = tmp_path_factory.mktemp(f"whole-{request.param}")
    train(logdir, request.param)
    return request.param, logdir / "run"


@pytest.mark.parametrize("accumulation_steps", [1, 2, 4])
def test_accumulation_equals_the_whole_batch(whole, accumulation_steps, tmp_path):
    reduction, whole_dir = whole
    train(tmp_path, reduction, accumulation_steps)
    if accumulation_steps == 1:  # the one-block path: nothing absent
        got, expected = records(tmp_path / "run"), records(whole_dir)
        for step, values in expected.items():
            _assert_same(
                {k: v for k, v in got[step].items() if k not in UNCOMPARED},
                {k: v for k, v in values.items() if k not in UNCOMPARED},
            )
        return
    _assert_matches_whole(tmp_path / "run", whole_dir)
    meta = json.loads((tmp_path / "run" / "meta.json").read_text())
    assert meta["accumulation_steps"] == accumulation_steps
    assert meta["global_batch_size"] == 13


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("world", [2, 3])
def test_ddp_equals_the_whole_batch(whole, world, tmp_path):
    reduction, whole_dir = whole
    mp.spawn(
        rank_main,
        args=(world, _free_port(), str(tmp_path), reduction),
        nprocs=world,
        join=True,
    )
    _assert_matches_whole(tmp_path / "rank0" / "run", whole_dir)
    meta = json.loads((tmp_path / "rank0" / "run" / "meta.json").read_text())
    assert (meta["world_size"], meta["global_batch_size"]) == (world, 13)
    for rank in range(1, world):
        assert not (tmp_path / f"rank{rank}").exists()


def test_an_exact_hessian_diagonal_is_absent_on_split_steps(tmp_path):
    """Its residual terms carry the loss scale: absent with the reason, no error."""
    model = nn.Linear(3, 2).double()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    quantities = {"hess_trace": HessTrace(1, curvature="hessian"), "loss": 1}
    with pytest.warns(AbsentQuantityWarning, match="loss scale"):
        ck = cockpit.Cockpit(
            model,
            nn.MSELoss(),
            optimizer,
            logdir=tmp_path,
            run_name="run",
            quantities=quantities,
            accumulation_steps=2,
        )
    ck.close()
    absent = json.loads((tmp_path / "run" / "meta.json").read_text())["absent"]
    assert absent == {"hess_trace": HESSIAN_REASON}


def test_a_step_with_fewer_blocks_than_accumulation_steps_is_refused(tmp_path):
    model = nn.Linear(3, 2).double()
    loss_fn = nn.MSELoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    ck = cockpit.Cockpit(
        model, loss_fn, optimizer, logdir=tmp_path, accumulation_steps=2
    )
    x, y = (
        torch.randn(4, 3, dtype=torch.float64),
        torch.randn(4, 2, dtype=torch.float64),
    )
    with ck.track():
        loss_fn(model(x), y).backward()
    optimizer.step()
    with (
        pytest.raises(
            UsageError, match=r"after 1 track\(\) block.*accumulation_steps=2"
        ),
        ck.track(),
    ):
        pass
    with pytest.warns(CockpitWarning, match=r"after 1 of the 2 track\(\) blocks"):
        ck.close()


def test_blocks_left_at_close_are_warned_about_and_noted(tmp_path):
    model = nn.Linear(3, 2).double()
    loss_fn = nn.MSELoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    ck = cockpit.Cockpit(
        model, loss_fn, optimizer, logdir=tmp_path, run_name="run", accumulation_steps=3
    )
    for size in (4, 5):  # two of the step's three blocks, then the run closes
        x, y = torch.randn(size, 3).double(), torch.randn(size, 2).double()
        with ck.track():
            loss_fn(model(x), y).backward()
    with pytest.warns(CockpitWarning) as caught:
        ck.close()
        ck.close()  # idempotent: one warning
    assert len(caught) == 1
    assert "after 2 of the 3 track() blocks of step 0 (9 samples" in str(
        caught[0].message
    )
    meta = json.loads((tmp_path / "run" / "meta.json").read_text())
    assert meta["dropped_pieces"] == {"step": 0, "blocks": 2, "samples": 9}
    assert not (tmp_path / "run" / "steps.jsonl").read_text().strip()


def test_no_budget_across_processes():
    from cockpit._setup import default_tracking
    from cockpit.exceptions import ConfigurationError

    assert default_tracking(None, None, None, ranks=2) == ("economy", None)
    assert default_tracking(None, ["loss"], None, ranks=2) == (None, None)
    assert default_tracking(None, None, None, ranks=1)[1] == pytest.approx(0.05)
    with pytest.raises(ConfigurationError, match="across 2 processes"):
        default_tracking(None, None, 0.05, ranks=2)
