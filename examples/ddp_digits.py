"""Track the digits CNN under DistributedDataParallel with gradient accumulation.

Each rank takes its shard of every global batch (64 images: 32 per rank on 2 ranks)
and accumulates it in micro-batches of 16 (``no_sync`` on all but the last), with the
usual ``loss / K`` scaling. The Cockpit gets the DDP model and ``accumulation_steps``;
every step's statistics describe the whole global batch, and rank 0 alone writes the
run. CPU and the gloo backend, no download. Run from the repository root::

    torchrun --nproc_per_node=2 examples/ddp_digits.py --steps 50

then read the run with ``cockpit.load("runs/ddp_digits")``.
"""

from __future__ import annotations

import argparse
import gc
from collections.abc import Sequence
from contextlib import nullcontext

import torch
import torch.distributed as dist
from torch import nn

import cockpit
from cockpit.zoo.digits import batches, train_valid
from cockpit.zoo.models import digits_cnn

GLOBAL_BATCH = 64
MICRO_BATCH = 16


def main(argv: Sequence[str] | None = None) -> None:
    """Join the process group torchrun set up, train, track, leave."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--logdir", default="runs")
    parser.add_argument("--preset", default="business")
    args = parser.parse_args(argv)
    dist.init_process_group("gloo")
    train(args)
    # Free the DDP model (its reducer holds the process group) before the group is
    # destroyed: when it outlived the group until interpreter exit, gloo aborted
    # ("terminate called without an active exception") in about 1 exit in 20, with
    # or without a Cockpit (torch 2.14.1).
    gc.collect()
    dist.destroy_process_group()


def train(args: argparse.Namespace) -> None:
    """Train ``args.steps`` global batches on this rank's shards; rank 0 writes."""
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(0)  # the same initial weights on every rank
    model = nn.parallel.DistributedDataParallel(digits_cnn())
    loss_fn = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    shard = GLOBAL_BATCH // world
    accumulation_steps = max(1, shard // MICRO_BATCH)
    ck = cockpit.Cockpit(
        model,
        loss_fn,
        optimizer,
        logdir=args.logdir,
        run_name="ddp_digits",
        preset=args.preset,
        accumulation_steps=accumulation_steps,
    )
    x, y, _, _ = train_valid()
    for _, (inputs, labels) in zip(
        range(args.steps), batches(x, y, GLOBAL_BATCH, seed=1), strict=False
    ):
        mine = slice(rank * shard, (rank + 1) * shard)
        parts = torch.arange(shard).tensor_split(accumulation_steps)
        optimizer.zero_grad()
        for i, part in enumerate(parts):
            last = i == accumulation_steps - 1
            with model.no_sync() if not last else nullcontext(), ck.track():
                outputs = model(inputs[mine][part])
                loss = loss_fn(outputs, labels[mine][part]) / accumulation_steps
                loss.backward()
        optimizer.step()
    ck.close()
    if rank == 0:
        print(f"wrote {ck.run_dir}")


if __name__ == "__main__":
    main()
