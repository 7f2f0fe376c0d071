"""What the ranks exchange: a few small tensors per step, and no hang on a dead rank.

The bytes a rank hands to collectives per tracked step (``Ranks.bytes_sent``) must not
depend on its batch: per-sample values travel as moments, histogram samples as counts
on agreed edges (exact histograms, ``hist_samples=0``, would otherwise send every
element). With equal shards under ``economy`` they grow with the model by one
model-sized vector (``mean_gsnr``'s ``sum_sq``; both gradients come from DDP's
average), and the rest is a few numbers per parameter tensor. A rank that dies inside
its tracked step makes the other raise within the process group's timeout instead of
waiting forever.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
from pathlib import Path

import torch
import torch.multiprocessing as mp

import cockpit
from cockpit.quantities import PRESETS
from tests.distributed._runs import tracked_mlp
from tests.distributed.test_split_steps import _free_port

BATCHES = (8, 64)
STEPS = 3
#: Hidden widths of the economy runs' MLP (4 parameter tensors either way).
WIDTHS = (8, 64)
#: ``grad_hist_1d``'s bins: its counts are summed over the ranks.
BINS = 64
ROOT = Path(__file__).resolve().parents[2]
DYING = "tests.distributed._dying_rank"


def _bytes_per_step(logdir: Path, batch: int) -> list[int]:
    model, loss_fn, optimizer, ck = tracked_mlp(logdir, f"batch{batch}", wrap=True)
    sent = []
    for _ in range(STEPS):
        x = torch.randn(batch, 4, dtype=torch.float64)
        y = torch.randint(0, 3, (batch,))
        before = ck.ranks.bytes_sent
        optimizer.zero_grad()
        with ck.track():
            loss_fn(model(x), y).backward()
        optimizer.step()  # alpha's slopes along the step are merged here
        sent.append(ck.ranks.bytes_sent - before)
    ck.close()
    return sent


def bytes_main(rank: int, world: int, port: int, out: str) -> None:
    """A spawned rank: the bytes it sends per step at each batch size."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world)
    try:
        sent = {b: _bytes_per_step(Path(out) / "logs", b) for b in BATCHES}
        (Path(out) / f"rank{rank}.json").write_text(json.dumps(sent))
        torch.distributed.barrier()
    finally:
        torch.distributed.destroy_process_group()


def test_bytes_per_step_do_not_grow_with_the_batch(tmp_path):
    mp.spawn(bytes_main, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    for rank in range(2):
        sent = json.loads((tmp_path / f"rank{rank}.json").read_text())
        small, large = (sent[str(b)] for b in BATCHES)
        assert all(b > 0 for b in small), sent
        assert small == large, f"rank {rank}: {sent}"


def _mlp(width: int) -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.Linear(4, width), torch.nn.Tanh(), torch.nn.Linear(width, 3)
    ).double()


def _economy_bytes(logdir: Path, width: int) -> list[int]:
    """Bytes sent per tracked step under ``economy`` (every quantity at every step)."""
    torch.manual_seed(0)
    model = torch.nn.parallel.DistributedDataParallel(_mlp(width))
    loss_fn = torch.nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    quantities = dict.fromkeys(PRESETS["economy"], 1)
    ck = cockpit.Cockpit(
        model,
        loss_fn,
        optimizer,
        logdir=logdir,
        run_name=f"width{width}",
        quantities=quantities,
    )
    data = torch.Generator().manual_seed(1)
    sent = []
    for _ in range(STEPS):
        x = torch.randn(6, 4, generator=data, dtype=torch.float64)
        y = torch.randint(0, 3, (6,), generator=data)
        before = ck.ranks.bytes_sent
        optimizer.zero_grad()
        with ck.track():
            loss_fn(model(x), y).backward()
        optimizer.step()
        sent.append(ck.ranks.bytes_sent - before)
    ck.close()
    return sent


def economy_main(rank: int, world: int, port: int, out: str) -> None:
    """A spawned rank: the bytes it sends per economy step at each width."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world)
    try:
        sent = {w: _economy_bytes(Path(out) / "logs", w) for w in WIDTHS}
        (Path(out) / f"rank{rank}.json").write_text(json.dumps(sent))
        torch.distributed.barrier()
    finally:
        gc.collect()  # gloo: the DDP models go before the process group
        torch.distributed.destroy_process_group()


def test_economy_with_equal_shards_sends_one_model_sized_vector(tmp_path):
    """``D`` float64 plus a few numbers per parameter tensor; summing ``.grad``'s
    or the engine's mean gradient as well would add ``D`` more each."""
    mp.spawn(economy_main, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    sizes = {w: sum(p.numel() for p in _mlp(w).parameters()) for w in WIDTHS}
    tensors = len(list(_mlp(WIDTHS[0]).parameters()))
    for rank in range(2):
        sent = json.loads((tmp_path / f"rank{rank}.json").read_text())
        narrow, wide = (sent[str(w)] for w in WIDTHS)
        growth = (sizes[WIDTHS[1]] - sizes[WIDTHS[0]]) * 8
        assert [b - a for a, b in zip(narrow, wide, strict=True)] == [growth] * STEPS
        # The rest: histogram counts, and for the network and each parameter
        # tensor a few moments [3] and extremes.
        rest = [b - sizes[WIDTHS[1]] * 8 for b in wide]
        assert max(rest) <= (BINS + 32 * (tensors + 1)) * 8, (rest, sizes)


def test_a_dead_rank_makes_the_other_raise_not_hang(tmp_path):
    port = str(_free_port())

    def command(rank: int) -> list[str]:
        return [sys.executable, "-m", DYING, str(rank), port, str(tmp_path)]

    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    with (
        subprocess.Popen(command(0), cwd=ROOT, **pipes) as zero,
        subprocess.Popen(command(1), cwd=ROOT, **quiet) as one,
    ):
        try:
            out, err = zero.communicate(timeout=120)
        finally:
            zero.kill()
            one.kill()
    assert one.returncode == 3
    assert zero.returncode == 0, err[-2000:]
    assert out.startswith("raised "), out
    waited = float(out.split(" after ")[1].split()[0])
    assert waited < 60, out
