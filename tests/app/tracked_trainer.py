"""A training process for the concurrency checks: a tiny MLP, tracked, for a while.

Run as ``python -m tests.app.tracked_trainer LOGDIR RUN_NAME --seconds 10`` from the
repository root. It trains the ``mlp-ce-mean`` problem of ``tests/problems.py``
with the ``economy`` preset (every quantity at every step) until ``--seconds`` have
passed, pausing ``--pause`` seconds after each step, closes the run, and prints
``{"steps": N}``: the number of steps it trained (and tracked).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

import torch

import cockpit
from tests.problems import PROBLEMS

#: A tiny MLP with cross-entropy, in float64, from the test problems.
PROBLEM = next(problem for problem in PROBLEMS if problem.name == "mlp-ce-mean")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("logdir")
    parser.add_argument("run_name")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--pause", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    problem = dataclasses.replace(PROBLEM, seed=args.seed)
    model, loss_fn = problem.make()
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
        inputs, labels = problem.batch(steps)
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
