"""How far a change moves the convolutions' statistics on a benchmark problem.

``values_unchanged.py`` runs the tiny test problems, whose convolutions fit one
chunk; a change of the chunking (``_conv_factors.chunk_samples``) reorders float sums
only on larger layers. ``dump`` captures one tracked ``economy`` step's factors of a
benchmark problem (``conv_floor.captured``), adds a unit direction per layer (alpha's
projection of the last step), reduces every ``Conv2d`` weight as the tracker does
(per-sample gradients kept where ``reduce_all`` keeps them, the later projection
of the gradient) and saves the statistics; ``compare`` prints, per layer and field,
``identical`` or ``max |a - b| / max |b|``. Run the dump at two commits::

    .venv/bin/python benchmarks/at_commit.py /tmp/before benchmarks/conv_stats_diff.py \
        dump /tmp/before.pt
    .venv/bin/python benchmarks/conv_stats_diff.py dump /tmp/after.pt
    .venv/bin/python benchmarks/conv_stats_diff.py compare /tmp/before.pt /tmp/after.pt
"""

from __future__ import annotations

import argparse

import torch
from _overhead.problems import PROBLEMS
from conv_floor import captured

from cockpit.engines import _conv_factors

FIELDS = ("grad", "sq_norms", "dots", "sum_sq", "low", "high", "projection")


def dump(problem: str, path: str) -> None:
    factors, grads, request = captured(problem)
    generator = torch.Generator().manual_seed(1)
    for f in factors.values():
        direction = torch.randn(f.param.numel(), generator=generator)
        request.directions[id(f.param)] = direction / direction.norm()
    kept = _conv_factors.kept_layers(factors)
    found = {}
    for name, f in factors.items():
        stats = f.reduce(grads[name], request, name in kept)
        found[name] = {k: getattr(stats, k) for k in FIELDS}
        found[name]["later projection"] = stats.project(grads[name])
    torch.save(found, path)


def compare(before: str, after: str) -> None:
    old, new = torch.load(before), torch.load(after)
    print("| layer | field | after vs before |\n|---|---|---|")
    for name, fields in new.items():
        for field, value in fields.items():
            was = old[name][field]
            if torch.equal(value, was):
                moved = "identical"
            else:
                moved = f"{((value - was).abs().max() / was.abs().max()).item():.1e}"
            print(f"| {name} | {field} | {moved} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    verbs = parser.add_subparsers(dest="verb", required=True)
    save = verbs.add_parser("dump")
    save.add_argument("path")
    save.add_argument("--problem", choices=PROBLEMS, default="3c3d")
    diff = verbs.add_parser("compare")
    diff.add_argument("before")
    diff.add_argument("after")
    args = parser.parse_args()
    torch.set_num_threads(2)
    if args.verb == "dump":
        dump(args.problem, args.path)
    else:
        compare(args.before, args.after)


if __name__ == "__main__":
    main()
