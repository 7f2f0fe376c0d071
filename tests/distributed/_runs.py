"""One tiny training run, tracked whole, in micro-batches, or on one rank of several.

Every run trains the same float64 MLP on the same 3 steps of a global batch of 13
samples with plain SGD and every quantity of ``full`` at every step (exact curvature
diagonals, exact histograms), so that a split run's records must equal the whole
run's. A rank takes an unequal shard of each step's batch (``torch.tensor_split``)
and scales its micro-batches' losses so that ``.grad`` is the whole batch's
(``n_k / N`` times the world size for a mean loss: ``1 / K`` when pieces are equal).
"""

from __future__ import annotations

import os
import warnings
from contextlib import nullcontext
from pathlib import Path

import torch
from torch import nn

import cockpit
from cockpit.logs import LogReader
from cockpit.quantities import PRESETS, REGISTRY

STEPS = 3
BATCH = 13


def _quantities() -> dict:
    chosen: dict = dict.fromkeys(PRESETS["full"], 1)
    for name in ("hess_trace", "tic_diag", "tic_trace"):
        chosen[name] = REGISTRY[name](1, curvature="ggn_exact")
    return chosen


def tracked_mlp(
    logdir: Path,
    run_name: str = "run",
    wrap: bool = False,
    reduction: str = "mean",
    width: int = 5,
    **options,
) -> tuple[nn.Module, nn.Module, torch.optim.Optimizer, cockpit.Cockpit]:
    """The float64 MLP (in DDP if ``wrap``), its loss, plain SGD and its Cockpit.

    The Cockpit tracks :func:`_quantities` with exact histograms unless ``options``
    say otherwise. ``width``: the hidden layer's.
    """
    torch.manual_seed(0)
    model: nn.Module = nn.Sequential(
        nn.Linear(4, width), nn.Tanh(), nn.Linear(width, 3)
    )
    model = model.double()
    if wrap:
        model = nn.parallel.DistributedDataParallel(model)
    loss_fn = nn.CrossEntropyLoss(reduction=reduction)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    options = {"quantities": _quantities(), "hist_samples": 0, **options}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the absent quantities' warnings
        ck = cockpit.Cockpit(
            model, loss_fn, optimizer, logdir=logdir, run_name=run_name, **options
        )
    return model, loss_fn, optimizer, ck


def train(
    logdir: Path,
    reduction: str = "mean",
    accumulation_steps: int = 1,
    rank: int = 0,
    world: int = 1,
    batch: int = BATCH,
    clip: float | None = None,
    ddp_sync: bool = True,
    autocast: bool = False,
) -> cockpit.Cockpit:
    """Train and track; with ``world > 1`` inside an initialized process group.

    Args:
        clip: Clip the gradient to this norm inside each step's last block (the
            logged gradient must stay the unclipped one).
        ddp_sync: DDP averages the gradient in the last block's backward pass;
            ``False``: every block runs under ``no_sync`` and the ranks average
            ``.grad`` by hand before the step (the same training).
        autocast: Run the forward passes under CPU autocast (bfloat16), which
            leaves this float64 model's operations in float64.

    Returns:
        The closed Cockpit (``ranks.bytes_sent``).

    """
    model, loss_fn, optimizer, ck = tracked_mlp(
        logdir,
        wrap=world > 1,
        reduction=reduction,
        accumulation_steps=accumulation_steps,
    )
    data = torch.Generator().manual_seed(1)
    for _ in range(STEPS):
        x = torch.randn(batch, 4, generator=data, dtype=torch.float64)
        y = torch.randint(0, 3, (batch,), generator=data)
        shard = torch.tensor_split(torch.arange(batch), world)[rank]
        optimizer.zero_grad()
        for i, part in enumerate(torch.tensor_split(shard, accumulation_steps)):
            last = i == accumulation_steps - 1
            alone = world > 1 and not (last and ddp_sync)
            sync = model.no_sync() if alone else nullcontext()
            cast = torch.autocast("cpu", torch.bfloat16, enabled=autocast)
            with sync, ck.track():
                with cast:
                    loss = loss_fn(model(x[part]), y[part])
                # The usual loss / K, exact for unequal pieces: .grad (after DDP's
                # average over ranks) is the whole batch's, so the training is too.
                share = len(part) / batch if reduction == "mean" else 1
                (loss * share * world).backward()
                if clip is not None and last:
                    nn.utils.clip_grad_norm_(model.parameters(), clip)
        if world > 1 and not ddp_sync:
            for p in model.parameters():
                torch.distributed.all_reduce(p.grad)
                p.grad /= world
        optimizer.step()
    ck.close()
    return ck


def records(run_dir: Path) -> dict[int, dict]:
    """Step -> its values, merged over the step's records."""
    steps: dict[int, dict] = {}
    for record in LogReader(run_dir).read_new():
        steps.setdefault(record["step"], {}).update(record["values"])
    return steps


def rank_main(rank: int, world: int, port: int, logdir: str, reduction: str) -> None:
    """A spawned rank: join the gloo group on 127.0.0.1, train, leave."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world)
    try:
        train(Path(logdir) / f"rank{rank}", reduction, 2, rank, world)
        # No rank tears gloo down while another still talks to it (a rank that
        # left early once aborted with "terminate called without an active
        # exception").
        torch.distributed.barrier()
    finally:
        torch.distributed.destroy_process_group()
