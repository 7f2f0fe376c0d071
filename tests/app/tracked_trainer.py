"""A training process for the concurrency checks: a tiny MLP, tracked, for a while.

Run as ``python -m tests.app.tracked_trainer LOGDIR RUN_NAME --seconds 10`` from the
repository root. It trains with the ``economy`` preset (every quantity at every step)
until ``--seconds`` have passed, pausing ``--pause`` seconds after each step, closes
the run, and prints ``{"steps": N}``: the number of steps it trained (and tracked).
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from torch import nn

import cockpit


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("logdir")
    parser.add_argument("run_name")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--pause", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)
    model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))
    loss_fn = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    ck = cockpit.Cockpit(
        model,
        loss_fn,
        optimizer,
        logdir=args.logdir,
        run_name=args.run_name,
        preset="economy",
    )
    end = time.monotonic() + args.seconds
    steps = 0
    while time.monotonic() < end:
        inputs, labels = torch.randn(16, 6), torch.randint(0, 3, (16,))
        optimizer.zero_grad()
        with ck.track():
            loss_fn(model(inputs), labels).backward()
        optimizer.step()
        steps += 1
        time.sleep(args.pause)
    ck.close()
    print(json.dumps({"steps": steps}), flush=True)


if __name__ == "__main__":
    main()
