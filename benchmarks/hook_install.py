"""What entering a tracked block costs per hooked module: finding and installing hooks.

Times, per hooked module of a problem's model (training-thread CPU time, medians
over rounds, microseconds), the two ways of finding the modules BackPACK's
first-order hooks serve (a walk of the model, ``Assignment.layers``, against the
kept list of ``HookTargets`` with its checks) and the two ways of putting a forward
hook on each and taking it off (``register_forward_hook`` and ``handle.remove()``
at every block, against ``HookSlots``: the first block's handle kept, the hook put
back under its id)::

    .venv/bin/python benchmarks/hook_install.py --problems deep_mlp mlp
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from functools import partial

import torch
from _overhead.configs import build_run
from _overhead.problems import PROBLEMS, make_problem
from torch import nn

from cockpit.engines._hook_slots import HookSlots, HookTargets
from cockpit.engines.choice import Assignment


def _per_call_us(work: Callable[[], object], reps: int, rounds: int) -> float:
    """Median CPU microseconds of one ``work()`` over ``rounds`` of ``reps`` calls."""
    medians = []
    for _ in range(rounds):
        start = time.thread_time()
        for _ in range(reps):
            work()
        medians.append(1e6 * (time.thread_time() - start) / reps)
    return statistics.median(medians)


def _hook(*_: object) -> None:
    return None


def _register(modules: list[nn.Module]) -> None:
    for handle in [m.register_forward_hook(_hook) for m in modules]:
        handle.remove()


def _swap(slots: HookSlots, modules: list[nn.Module]) -> None:
    for handle in [slots.install(m, _hook) for m in modules]:
        handle.remove()


def _work(engines: Assignment, model: nn.Module) -> dict[str, Callable[[], object]]:
    """Label -> one block's finding or installing work, for every hooked module."""
    slots = HookSlots()
    targets = HookTargets(slots)
    modules = targets.layers(engines, model)
    return {
        "find: walk the model (Assignment.layers)": partial(engines.layers, model),
        "find: kept list, checked (HookTargets)": partial(
            targets.layers, engines, model
        ),
        "install + remove: register_forward_hook": partial(_register, modules),
        "install + remove: kept handle (HookSlots)": partial(_swap, slots, modules),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--problems", nargs="+", choices=PROBLEMS, default=["deep_mlp"])
    parser.add_argument("--reps", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(1)
    device = torch.device("cpu")
    print("| problem | modules | work | µs per block | µs per module |")
    print("|---|---:|---|---:|---:|")
    for name in args.problems:
        problem = make_problem(name, device)
        with tempfile.TemporaryDirectory(prefix="cockpit-install-") as logdir:
            run = build_run(problem, "economy", device, logdir)
            assert run.ck is not None
            engines, model = run.ck.engines, run.ck.model
            modules = len(engines.layers(model))
            work = _work(engines, model)
            for label, call in work.items():
                us = _per_call_us(call, args.reps, args.rounds)
                print(
                    f"| {name} | {modules} | {label} | {us:.1f} | {us / modules:.2f} |"
                )
            run.ck.close()


if __name__ == "__main__":
    main()
