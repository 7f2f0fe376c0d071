"""One forward hook per hooked layer, or one global module hook: CPU time per forward.

The tracked step's hooks keep each ``Linear`` layer's input and put a hook on its
output (``cockpit/engines/_backpack_hooks.py``). This times a forward pass of the
64-layer MLP (``benchmarks/_overhead/problems.py``) plain, with one forward hook per
``Linear`` registered and removed around it (what the tracker does), and with one
global hook (``torch.nn.modules.module.register_module_forward_hook``) that filters
the modules by a dict, in interleaved rounds, one intra-op thread, training-thread
CPU time; medians in microseconds per forward pass::

    .venv/bin/python benchmarks/module_hooks.py --rounds 9 --passes 50
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from _overhead.problems import make_problem
from torch import Tensor, nn
from torch.nn.modules.module import register_module_forward_hook


def _on_output_gradient(grad: Tensor) -> None:
    """Stands in for the statistics handler."""


def _routes(model: nn.Module, x: Tensor) -> dict[str, Callable[[], object]]:
    linears = [m for m in model.modules() if type(m) is nn.Linear]
    kept: dict[int, Tensor] = {}

    def keep(module: nn.Module, inputs: tuple, output: Tensor) -> None:
        kept[id(module)] = inputs[0]
        output.register_hook(_on_output_gradient)

    def per_layer() -> Tensor:
        handles = [m.register_forward_hook(keep) for m in linears]
        out = model(x)
        for handle in handles:
            handle.remove()
        return out

    watched = {id(m) for m in linears}

    def filtered(module: nn.Module, inputs: tuple, output: Tensor) -> None:
        if id(module) in watched:
            keep(module, inputs, output)

    def global_hook() -> Tensor:
        handle = register_module_forward_hook(filtered)
        out = model(x)
        handle.remove()
        return out

    return {"plain": lambda: model(x), "per layer": per_layer, "global": global_hook}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--passes", type=int, default=50)
    args = parser.parse_args()
    torch.set_num_threads(1)
    problem = make_problem("deep_mlp", torch.device("cpu"))
    model = problem.make_model()
    x, _ = problem.batches[0]
    routes = _routes(model, x)
    times: dict[str, list[float]] = {name: [] for name in routes}
    for _ in range(args.rounds):
        for name, route in routes.items():
            start = time.thread_time()
            for _ in range(args.passes):
                route()
            times[name].append(1e6 * (time.thread_time() - start) / args.passes)
    print("| route | CPU us per forward pass (median) | min | max |")
    print("|---|---:|---:|---:|")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"| {name} | {median:.0f} | {min(values):.0f} | {max(values):.0f} |")


if __name__ == "__main__":
    main()
