"""Flat memory: the tracker's resident memory over a long run of a tiny model.

Run from the repository root (about 4 minutes for 30,000 steps on a busy 2-core CPU;
100,000 steps take about three times as long)::

    .venv/bin/python benchmarks/memory_flat.py
    .venv/bin/python benchmarks/memory_flat.py --steps 100000 --at 1000 10000 100000

A tiny MLP (6-8-3, batch 16, SGD) trains ``--steps`` tracked steps with the
``economy`` preset, which logs every one of its quantities at every step. At each
step count of ``--at`` the script waits for the writer to catch up, collects garbage
and prints the process's resident set size (``VmRSS``), the records still queued for
the writer and the size of ``steps.jsonl``. Memory is flat when the RSS at the last
count is within a few MiB of the RSS at the first; the first count (1,000 steps) is
past the one-time allocations of the first steps.
"""

from __future__ import annotations

import argparse
import gc
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

import cockpit


def rss_mib() -> float:
    """The process's resident set size now, in MiB (Linux ``/proc``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status (Linux only)")


def main() -> None:
    """Train, and print RSS, queue and log size at each requested step count."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30_000)
    parser.add_argument("--at", type=int, nargs="+", default=[1_000, 10_000, 30_000])
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))
    loss_fn = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    x, y = torch.randn(16, 6), torch.randint(0, 3, (16,))
    marks = sorted(a for a in args.at if a <= args.steps)
    with tempfile.TemporaryDirectory() as logdir:
        ck = cockpit.Cockpit(
            model, loss_fn, optimizer, logdir=logdir, run_name="m", preset="economy"
        )
        print("steps   RSS MiB  queued  log MiB  s/1k steps")
        start = time.perf_counter()
        for step in range(1, args.steps + 1):
            optimizer.zero_grad()
            with ck.track():
                loss_fn(model(x), y).backward()
            optimizer.step()
            if marks and step == marks[0]:
                marks.pop(0)
                queued = ck.writer._queue.qsize()
                ck.writer.flush()
                gc.collect()
                size = (ck.run_dir / "steps.jsonl").stat().st_size / 2**20
                per_1k = (time.perf_counter() - start) / step * 1000
                print(
                    f"{step:>6} {rss_mib():>9.1f} {queued:>7} {size:>8.1f} "
                    f"{per_1k:>10.1f}",
                    flush=True,
                )
        ck.close()


if __name__ == "__main__":
    main()
