"""A fork server of tracked trainings, for the tests that kill or starve one.

Importing torch takes seconds; a kill test needs dozens of fresh training processes.
``python -m tests.logs.training_child`` imports torch and cockpit once and then, per
JSON line on stdin, forks a child that runs :func:`train` with the line's arguments.
For each child it prints ``{"pid": ...}`` when the child is started and ``{"pid": ...,
"exit": ...}`` when it ended (``exit``: the exit code, or minus the signal that killed
it). The server trains two warm-up steps first (the first step's one-time setup takes
seconds); that run's writer thread has ended before the first fork, so the children
are sound.

A child appends the number of each step it completed (``optimizer.step()`` done) to
``progress`` and, when it ends by itself, writes what it saw (exceptions out of
cockpit, warnings, writer-thread deaths) to ``result``.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import tempfile
import threading
import traceback
import warnings

import torch
from torch import nn

import cockpit


def train(
    logdir: str,
    run_name: str,
    progress: str,
    result: str | None = None,
    steps: int | None = None,
    max_file_size: int | None = None,
    seed: int = 0,
) -> None:
    """Train a tiny MLP with the economy preset, ``steps`` steps or until killed.

    Args:
        logdir: The Cockpit's log directory.
        run_name: The run's name.
        progress: File that gets each completed step's number, one per line.
        result: File for what the child saw, as JSON; written if it ends by itself.
        steps: Steps to train; ``None``: until killed.
        max_file_size: ``RLIMIT_FSIZE`` in bytes (a full disk), if given.
        seed: Seed of the data and the model.

    """
    torch.manual_seed(seed)
    torch.set_num_threads(1)
    seen: dict[str, list[str]] = {"raised": [], "warnings": [], "thread_deaths": []}
    threading.excepthook = lambda args: seen["thread_deaths"].append(
        f"{args.exc_type.__name__}: {args.exc_value}"
    )
    _, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    if max_file_size is not None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_file_size, hard))
    model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))
    loss_fn = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    done = os.open(progress, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ck = cockpit.Cockpit(
            model,
            loss_fn,
            optimizer,
            logdir=logdir,
            run_name=run_name,
            preset="economy",
        )
        step = 0
        while steps is None or step < steps:
            x = torch.randn(16, 6)
            y = torch.randint(0, 3, (16,))
            optimizer.zero_grad()
            try:
                with ck.track():
                    loss_fn(model(x), y).backward()
            except Exception as err:  # what the issue saw: I/O faults out of track()
                seen["raised"].append(f"track: {type(err).__name__}: {err}")
            optimizer.step()
            os.write(done, f"{step}\n".encode())
            step += 1
        try:
            ck.close()
        except Exception as err:
            seen["raised"].append(f"close: {type(err).__name__}: {err}")
    seen["warnings"] = [str(w.message) for w in caught]
    resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))
    if result is not None:
        with open(result, "w", encoding="utf-8") as file:
            json.dump(seen, file)


def _child(request: dict) -> None:
    code = 0
    try:
        train(**request)
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        sys.stderr.flush()
        os._exit(code)


def serve() -> None:
    """Fork a :func:`train` child per JSON line on stdin; report pids and exits."""
    # The first tracked step imports and initializes more (seconds); do it once here.
    with tempfile.TemporaryDirectory() as warm:
        train(warm, "warm-up", os.path.join(warm, "progress"), steps=2)
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            _child(request)
        print(json.dumps({"pid": pid}), flush=True)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"pid": pid, "exit": os.waitstatus_to_exitcode(status)}))
        sys.stdout.flush()


if __name__ == "__main__":
    serve()
