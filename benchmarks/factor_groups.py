"""The host time of reducing one step's ``Linear`` factors, in-process A/B.

At a tracked step's exit every ``Linear`` parameter's two per-sample factors are
reduced in batched products per group of equal shapes
(``cockpit.engines._linear_factors.from_linear_factor_groups``). This captures the
factors of one economy step of a benchmark problem, then times making the factor
records and reducing them, many times in one process (one intra-op thread, medians
of rounds). With ``--against TREE`` (an exported commit) the tree's
``cockpit/engines/_linear_factors.py`` is loaded beside this package's and the two
alternate call by call on the same factors, so that the machine's drift between
processes, which moved whole-step timings by tens of percent on 2026-12-01, falls
on both alike::

    git archive HEAD~1 | tar -x -C /tmp/before
    .venv/bin/python benchmarks/factor_groups.py --problems mlp deep_mlp 3c3d \
        --against /tmp/before

A tree from before 2026-12-01 holds a bias's input factor as ``[N, 1]`` ones and
draws the histogram positions as each record is made (``Factors.arrive``); its
records are made that way, in the timed call. Only that one module file is taken
from the tree: what it imports comes from this package, so the two must agree on
those names (ba23eb8's module against bcda48c, where the comparison in
``benchmarks/results/biasgroups/`` was run; ``stacked_views`` left
``_flat_buffers`` in the commit after).
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from _overhead.capture import last_call

from cockpit.engines import _linear_factors, backpack_engine


def captured(problem_name: str) -> tuple[list[Any], Any]:
    """The factor records and request of a tracked economy step's exit."""
    args, _ = last_call(
        problem_name,
        "from_linear_factor_groups",
        [_linear_factors, backpack_engine],
    )
    factors, request = args
    return list(factors), request


def loaded(tree: str) -> ModuleType:
    """The tree's ``_linear_factors`` module, beside this package's."""
    path = Path(tree) / "cockpit" / "engines" / "_linear_factors.py"
    spec = importlib.util.spec_from_file_location("_linear_factors_against", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def reducer(module: ModuleType, factors: list[Any], request: Any):
    """``() -> statistics``: the module's records made from ``factors``, reduced."""
    make = module.Factors
    if hasattr(make, "arrive"):  # before 2026-12-01: ones for a bias, drawn here
        ones = factors[0].delta.new_ones(factors[0].delta.shape[0], 1)
        parts = [
            (f.delta, ones if f.x is None else f.x, f.param, f.rounding, f.scale)
            for f in factors
        ]

        def old() -> list[Any]:
            records = [make.arrive(d, x, p, request, r, s) for d, x, p, r, s in parts]
            return module.from_linear_factor_groups(records, request)

        return old
    parts = [(f.delta, f.x, f.param, f.rounding, f.scale) for f in factors]

    def new() -> list[Any]:
        records = [make(*part) for part in parts]
        return module.from_linear_factor_groups(records, request)

    return new


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--problems", nargs="+", default=["mlp", "deep_mlp", "3c3d"])
    parser.add_argument("--against", help="an exported tree to compare with")
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    other = loaded(args.against) if args.against else None
    print("| problem | parameter tensors | µs, this tree | µs, --against |")
    print("|---|---:|---:|---:|")
    for name in args.problems:
        factors, request = captured(name)
        calls = {"this": reducer(_linear_factors, factors, request)}
        if other is not None:
            calls["against"] = reducer(other, factors, request)
        medians: dict[str, list[float]] = {key: [] for key in calls}
        for _ in range(args.rounds):
            times: dict[str, list[float]] = {key: [] for key in calls}
            for _ in range(args.calls):
                for key, call in calls.items():
                    start = time.perf_counter()
                    call()
                    times[key].append(time.perf_counter() - start)
            for key in calls:
                medians[key].append(1e6 * statistics.median(times[key]))
        cells = [
            f"{statistics.median(m):.0f} ({', '.join(f'{v:.0f}' for v in m)})"
            for m in medians.values()
        ]
        cells += ["-"] * (2 - len(cells))
        print(f"| {name} | {len(factors)} | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()
