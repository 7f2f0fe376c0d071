"""Tracked against untracked DistributedDataParallel: step time ratios, bytes sent.

``--world`` gloo processes (default 2) on 127.0.0.1 (CPU, one thread each) train a
small CNN with DDP; each configuration runs ``--steps`` timed steps after
``--warmup`` steps, and rank 0 reports the median step time. A configuration's ratio
is its median over the untracked DDP run's. The bytes are what each rank hands to the
tracker's collectives per tracked step (``Cockpit.ranks.bytes_sent``; payload, not
wire bytes), the same on every rank. The 1-minute load average before and after is
stored with the results: on a loaded machine the ratios are not the overhead. Run
from the repository root::

    .venv/bin/python benchmarks/ddp_overhead.py
    .venv/bin/python benchmarks/ddp_overhead.py --problems digits_cnn 3c3d --steps 10
    .venv/bin/python benchmarks/ddp_overhead.py --problems digits_cnn 3c3d --world 3 \
        --out benchmarks/results/ddp-overhead-cpu-3.json

Problems: ``digits_cnn`` (``cockpit.zoo.models.digits_cnn`` on scikit-learn's 8x8
digits, global batch 64) and ``3c3d`` (``cnn_3c3d`` on 3x32x32 noise, global batch
128); shards are equal (the first ``W floor(B / W)`` samples: 63 and 126 on 3 ranks),
so DDP's average stands in for the summed gradients. Configurations: ``economy``,
``business`` and ``full`` with every quantity of the preset at every step (``full``
without the quantities that are absent on split steps), and ``economy-nohist``:
``economy`` without ``grad_hist_1d``. Writes ``--out`` (default
``benchmarks/results/ddp-overhead-cpu.json``).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import socket
import statistics
import tempfile
import time
import warnings
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

import cockpit
from cockpit.quantities import PRESETS
from cockpit.zoo.digits import train_valid
from cockpit.zoo.models import cnn_3c3d, digits_cnn

CONFIGS = ["plain", "economy-nohist", "economy", "business", "full"]
RESULTS = Path(__file__).parent / "results" / "ddp-overhead-cpu.json"


def problem_data(problem: str) -> tuple[torch.Tensor, torch.Tensor, nn.Module]:
    """The problem's global batch (inputs, labels) and its model (float32)."""
    if problem == "digits_cnn":
        x, y, _, _ = train_valid()
        return x[:64], y[:64], digits_cnn()
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(128, 3, 32, 32, generator=generator)
    return x, torch.randint(0, 10, (128,), generator=generator), cnn_3c3d()


def _run(rank: int, world: int, problem: str, config: str, args) -> dict | None:
    torch.manual_seed(0)
    x, y, model = problem_data(problem)
    x, y = equal_shard(x, rank, world), equal_shard(y, rank, world)
    model = nn.parallel.DistributedDataParallel(model)
    loss_fn = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    ck = None
    if config != "plain":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the absent quantities' warnings
            keys = [k for k in PRESETS[config.split("-")[0]] if k != "grad_hist_1d"]
            keys += ["grad_hist_1d"] if config in PRESETS else []
            every_step = dict.fromkeys(keys, 1)
            logdir = tempfile.mkdtemp()
            ck = cockpit.Cockpit(
                model,
                loss_fn,
                optimizer,
                logdir=logdir,
                preset=None,
                quantities=every_step,
            )
    times = []
    for step in range(args.warmup + args.steps):
        dist.barrier()
        start = time.perf_counter()
        optimizer.zero_grad()
        with ck.track() if ck else nullcontext():
            loss_fn(model(x), y).backward()
        optimizer.step()
        if step == args.warmup - 1 and ck is not None:
            sent = ck.ranks.bytes_sent
        if step >= args.warmup:
            times.append(time.perf_counter() - start)
    result = {"median_s": statistics.median(times)}
    if ck is not None:
        result["bytes_per_step"] = (ck.ranks.bytes_sent - sent) / args.steps
        ck.close()
    return result if rank == 0 else None


def equal_shard(batch: torch.Tensor, rank: int, world: int) -> torch.Tensor:
    """Rank ``rank``'s ``floor(B / W)`` samples of the first ``W floor(B / W)``."""
    size = len(batch) // world
    return batch[rank * size : (rank + 1) * size]


def _rank(rank: int, world: int, port: int, args, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    results = {}
    for problem in args.problems:
        for config in CONFIGS:
            results[f"{problem}/{config}"] = _run(rank, world, problem, config, args)
    gc.collect()  # gloo: the DDP models go before the process group
    dist.destroy_process_group()
    if rank == 0:
        Path(out).write_text(json.dumps(results))


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main() -> None:
    """Run every configuration on ``--world`` ranks; print and store the table."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--problems", nargs="+", default=["digits_cnn"])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--world", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    out = str(Path(tempfile.mkdtemp()) / "results.json")
    load_before = os.getloadavg()[0]
    world = args.world
    mp.spawn(_rank, args=(world, _port(), args, out), nprocs=world, join=True)
    load = {"before": load_before, "after": os.getloadavg()[0]}
    results = json.loads(Path(out).read_text())
    rows = ["| problem | config | median step (ms) | ratio | bytes / tracked step |"]
    rows.append("|---|---|---|---|---|")
    for problem in args.problems:
        plain = results[f"{problem}/plain"]["median_s"]
        for config in CONFIGS:
            found = results[f"{problem}/{config}"]
            found["ratio"] = found["median_s"] / plain
            sent = found.get("bytes_per_step")
            rows.append(
                f"| {problem} | {config} | {1000 * found['median_s']:.1f} | "
                f"{found['ratio']:.2f} | {'-' if sent is None else f'{sent:,.0f}'} |"
            )
    print("\n".join(rows))
    print(
        f"load average (1 min): {load['before']:.1f} before, {load['after']:.1f} after"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    stored = {"args": {**vars(args), "out": str(args.out)}, "load_average": load}
    args.out.write_text(json.dumps({**stored, "results": results}, indent=1))


if __name__ == "__main__":
    main()
