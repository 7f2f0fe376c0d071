"""A rank that dies inside its tracked step, and one that must not hang on it.

Run as ``python -m tests.distributed._dying_rank RANK PORT LOGDIR`` (two processes).
Rank 1 exits hard (``os._exit``) after its backward pass, before the tracker's
collectives at the end of ``track()``; rank 0 reaches them and must raise within the
process group's timeout (10 s). Rank 0 prints what it raised and how long it waited.
The model is not wrapped in DDP (the Cockpit gets the process group), so the only
collectives of the step are the tracker's own.
"""

from __future__ import annotations

import os
import sys
import time
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist

from tests.distributed._runs import tracked_mlp

TIMEOUT_S = 10


def main(rank: int, port: int, logdir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group(
        "gloo", rank=rank, world_size=2, timeout=timedelta(seconds=TIMEOUT_S)
    )
    model, loss_fn, _, ck = tracked_mlp(Path(logdir), process_group=dist.group.WORLD)
    x = torch.randn(6, 4, dtype=torch.float64)
    y = torch.randint(0, 3, (6,))
    start = time.perf_counter()
    try:
        with ck.track():
            loss_fn(model(x), y).backward()
            if rank == 1:
                os._exit(3)
    except Exception as error:
        waited = time.perf_counter() - start
        print(f"raised {type(error).__name__} after {waited:.1f} s", flush=True)
        os._exit(0)
    print("no error", flush=True)
    os._exit(1)


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3])
