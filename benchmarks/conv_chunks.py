"""The convolution routes' chunk rule against the earlier one, per thread, in one process.

The convolutions' factors of one tracked ``economy`` step of 3c3d
(``conv_floor.captured``), with alpha's projection on a unit direction per layer,
are reduced as the tracker does (``ConvFactors.reduce``, the later projection
included) in interleaved rounds, with two intra-op threads, once with the chunks of
``_conv_factors.chunk_samples`` and once with the earlier rule (at most
``layer_stats.CHUNK_ELEMENTS`` elements per temporary, no multiple: 3c3d's third
convolution in 14 chunks of 9 samples and one of 2; only the first convolution
differs from the earlier code, which took 7 chunks of 17 and one of 9 where the
equal chunks here are 8 of 16). ``thread_split``'s dispatch
mode reads the training thread's and the pool's CPU time around every ATen
operation; printed per step: the batched products per layer, ``ChunkReducer.add``,
the rest, and the total::

    .venv/bin/python benchmarks/conv_chunks.py --rounds 6
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import collections
import contextlib

import torch
from _overhead.problems import PROBLEMS
from conv_floor import captured
from thread_split import _Split

from cockpit.engines import _conv_factors


@contextlib.contextmanager
def earlier_chunks():
    """``chunk_samples`` as before: the CPU bound of ``layer_stats``, no multiple."""
    scale, multiple = _conv_factors.CPU_CHUNK_SCALE, _conv_factors.CHUNK_MULTIPLE
    _conv_factors.CPU_CHUNK_SCALE, _conv_factors.CHUNK_MULTIPLE = 1, 2**62
    try:
        yield
    finally:
        _conv_factors.CPU_CHUNK_SCALE, _conv_factors.CHUNK_MULTIPLE = scale, multiple


def reduce_step(factors: dict, grads: dict, request, kept: set[str]) -> None:
    """Every layer's statistics and its later projection, as one tracked step."""
    for name, f in factors.items():
        f.reduce(grads[name], request, name in kept).project(grads[name])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--problem", choices=PROBLEMS, default="3c3d")
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    torch.set_num_threads(2)
    factors, grads, request = captured(args.problem)
    generator = torch.Generator().manual_seed(1)
    for f in factors.values():
        direction = torch.randn(f.param.numel(), generator=generator)
        request.directions[id(f.param)] = direction / direction.norm()
    kept = _conv_factors.kept_layers(factors)
    rules = {"earlier": earlier_chunks, "current": contextlib.nullcontext}
    modes = {rule: _Split() for rule in rules}
    for _ in range(args.rounds + 1):  # the first round warms up, uncounted
        for rule, context in rules.items():
            mode = modes[rule] if _ else contextlib.nullcontext()
            with context(), mode:
                reduce_step(factors, grads, request, kept)
    print(
        f"\n{args.problem}: CPU ms per step (training thread / pool), 2 threads, "
        f"{args.rounds} interleaved rounds, load average {os.getloadavg()[0]:.1f}\n"
    )
    print("| part | " + " | ".join(rules) + " |\n|---|" + "---:|" * len(rules))
    parts: dict[str, dict[str, list[float]]] = collections.defaultdict(dict)
    for rule, mode in modes.items():
        for (site, func, shapes), (_, own, pool) in mode.spent.items():
            part = (
                f"bmm {shapes[0]}"
                if "bmm" in func
                else "ChunkReducer.add"
                if site.endswith("_chunk_reducer.py:add")
                else "other"
            )
            for key in (part, "total"):
                spent = parts[key].setdefault(rule, [0.0, 0.0])
                spent[0] += own / args.rounds
                spent[1] += pool / args.rounds
    for part, by_rule in sorted(parts.items()):
        cells = [
            f"{by_rule[r][0] * 1e3:.1f} / {by_rule[r][1] * 1e3:.1f}"
            if r in by_rule
            else "-"
            for r in rules
        ]
        print(f"| {part} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
