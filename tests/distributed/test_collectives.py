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


def _sent_per_step(ck: cockpit.Cockpit, model, loss_fn, optimizer, batches) -> list:
    """Bytes ``ck``'s rank hands to collectives in each tracked step, then close."""
    sent = []
    for x, y in batches:
        before = ck.ranks.bytes_sent
        optimizer.zero_grad()
        with ck.track():
            loss_fn(model(x), y).backward()
        optimizer.step()  # alpha's slopes along the step are merged here
        sent.append(ck.ranks.bytes_sent - before)
    ck.close()
    return sent


def _by_batch(logdir: Path) -> dict[int, list[int]]:
    """Bytes per step of the full MLP run at each batch size of :data:`BATCHES`."""
    sent = {}
    for batch in BATCHES:
        model, loss_fn, optimizer, ck = tracked_mlp(logdir, f"batch{batch}", wrap=True)
        batches = [
            (torch.randn(batch, 4, dtype=torch.float64), torch.randint(0, 3, (batch,)))
            for _ in range(STEPS)
        ]
        sent[batch] = _sent_per_step(ck, model, loss_fn, optimizer, batches)
    return sent


def _by_width(logdir: Path) -> dict[int, dict]:
    """Per width: the MLP's size, its parameter tensors, the bytes per economy step."""
    found = {}
    for width in WIDTHS:
        economy = dict.fromkeys(PRESETS["economy"], 1)  # every quantity, every step
        model, loss_fn, optimizer, ck = tracked_mlp(
            logdir, f"width{width}", wrap=True, width=width, quantities=economy
        )
        params = list(model.parameters())
        data = torch.Generator().manual_seed(1)
        batches = [
            (
                torch.randn(6, 4, generator=data, dtype=torch.float64),
                torch.randint(0, 3, (6,), generator=data),
            )
            for _ in range(STEPS)
        ]
        found[width] = {
            "size": sum(p.numel() for p in params),
            "tensors": len(params),
            "sent": _sent_per_step(ck, model, loss_fn, optimizer, batches),
        }
    return found


def sent_main(rank: int, world: int, port: int, out: str, measure) -> None:
    """A spawned rank: ``measure``'s bytes per step, written to ``out``."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world)
    try:
        sent = measure(Path(out) / "logs")
        (Path(out) / f"rank{rank}.json").write_text(json.dumps(sent))
        torch.distributed.barrier()
    finally:
        gc.collect()  # gloo: the DDP models go before the process group
        torch.distributed.destroy_process_group()


def _spawn(tmp_path: Path, measure) -> list[dict]:
    """Per rank of 2, ``measure``'s bytes per step (keys as strings)."""
    port = _free_port()
    mp.spawn(sent_main, args=(2, port, str(tmp_path), measure), nprocs=2, join=True)
    return [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]


def test_bytes_per_step_do_not_grow_with_the_batch(tmp_path):
    for rank, sent in enumerate(_spawn(tmp_path, _by_batch)):
        small, large = (sent[str(b)] for b in BATCHES)
        assert all(b > 0 for b in small), sent
        assert small == large, f"rank {rank}: {sent}"


def test_economy_with_equal_shards_sends_one_model_sized_vector(tmp_path):
    """``D`` float64 plus a few numbers per parameter tensor; summing ``.grad``'s
    or the engine's mean gradient as well would add ``D`` more each."""
    for found in _spawn(tmp_path, _by_width):
        narrow, wide = (found[str(w)] for w in WIDTHS)
        growth = (wide["size"] - narrow["size"]) * 8
        steps = zip(narrow["sent"], wide["sent"], strict=True)
        assert [b - a for a, b in steps] == [growth] * STEPS, found
        # The rest: histogram counts, and for the network and each parameter
        # tensor a few moments [3] and extremes.
        rest = [b - wide["size"] * 8 for b in wide["sent"]]
        assert max(rest) <= (BINS + 32 * (wide["tensors"] + 1)) * 8, found


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
