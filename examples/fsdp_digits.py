"""Track the digits CNN sharded with FSDP (``fully_shard``) on several processes.

Each rank holds a shard of every parameter and takes its shard of every global batch
(64 images: 32 per rank on 2 ranks). The Cockpit gets the sharded model as it is and
tracks the quantities that need only reductions (loss, input scale, the norms of
the gradient, the parameters, the distance and the update), every step; the
per-sample and curvature quantities are absent, with the reason in ``meta.json``.
Rank 0 alone writes the run. CPU and the gloo backend, no download. Run from the
repository root::

    torchrun --nproc_per_node=2 examples/fsdp_digits.py --steps 50

then read the run with ``cockpit.load("runs/fsdp_digits")``.
"""

from __future__ import annotations

import argparse
import gc
import itertools
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.fsdp import fully_shard

import cockpit
from cockpit.zoo.digits import batches, train_valid
from cockpit.zoo.models import digits_cnn

GLOBAL_BATCH = 64


def main(argv: Sequence[str] | None = None) -> None:
    """Join the process group torchrun set up, train, track, leave."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--logdir", default="runs")
    args = parser.parse_args(argv)
    dist.init_process_group("gloo")
    try:
        run_dir = train(args)
        if dist.get_rank() == 0:
            print(f"wrote {run_dir}")
    finally:
        # Free the sharded model and the Cockpit (a reference cycle) while the group
        # still exists. Otherwise the cyclic collection at interpreter exit freed
        # them, and a gloo worker thread, still releasing an all-reduce's tensors,
        # could not take the GIL and aborted the rank ("terminate called without an
        # active exception"; core dump, torch 2.14.1), now and then on a loaded
        # machine (benchmarks/results/fsdp-exit/).
        gc.collect()
        dist.destroy_process_group()


def train(args: argparse.Namespace) -> Path:
    """Train ``args.steps`` global batches on this rank's shards; rank 0 writes.

    Returns:
        The run's directory (created by rank 0 alone).

    """
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(0)  # the same initial weights on every rank, then sharded
    model = fully_shard(digits_cnn())
    loss_fn = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    ck = cockpit.Cockpit(
        model, loss_fn, optimizer, logdir=args.logdir, run_name="fsdp_digits"
    )
    x, y, _, _ = train_valid()
    for inputs, labels in itertools.islice(
        batches(x, y, GLOBAL_BATCH, seed=1), args.steps
    ):
        images, targets = inputs.chunk(world)[rank], labels.chunk(world)[rank]
        optimizer.zero_grad()
        with ck.track():
            loss_fn(model(images), targets).backward()
        optimizer.step()
    ck.close()
    return ck.run_dir


if __name__ == "__main__":
    main()
