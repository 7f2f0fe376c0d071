"""A refactoring check: every quantity's logged values, bit for bit, before and after.

Records, for every problem in ``tests/problems.py`` and the library models named in
``LIBRARY`` (``tests/models/cases.py``: the tiny GPT-2, whose ``Conv1D`` layers take
the summed-factor route), a short run with every quantity of the ``full`` preset plus
``early_stopping`` and ``cabs`` due at every step (plain SGD, so all of them are
defined), then compares two such recordings line by line.
The JSON lines hold floats as ``repr`` (shortest round trip), so equal text is equal
bits. Wall-clock fields (``time``, ``step_time``, ``tracker_time``) and the run's
creation stamp are left out of the comparison.

Run from the repository root::

    .venv/bin/python benchmarks/values_unchanged.py record /tmp/before   # old commit
    .venv/bin/python benchmarks/values_unchanged.py record /tmp/after    # new commit
    .venv/bin/python benchmarks/values_unchanged.py compare /tmp/before /tmp/after

``record --preset economy`` records that preset's quantities alone instead: without
the second-order quantities of ``full``, BackPACK runs first-order extensions only,
a route of its own (``Linear`` layers' factors kept by the tracker's hooks).
``record --batch-replay`` records the batch replay's models instead (those of
``tests/engines/test_batch_replay.py``: BatchNorm in training mode, LSTM, GRU; in
float64, with a mean cross-entropy and a summed MSE loss), which the problems above
do not reach; ``--loop-route`` sends them through the route of large models, one
backward pass per sample (``batch_replay.LOOP_WIDTH`` set to 0), which these small
models never take otherwise.

A commit that adds a quantity to the ``full`` preset adds its key to every run, so the
recordings differ by that key alone if nothing else changed. ``--new KEY [KEY ...]``
drops those keys from the *after* recording (the values in ``steps.jsonl``, and the
entries of ``meta.json``'s ``quantities`` and ``options``) before comparing, so what
remains must still be identical::

    .venv/bin/python benchmarks/values_unchanged.py compare /tmp/before /tmp/after \
        --new param_norm

A change that reorders floating-point sums (batched reductions) changes the last bits;
``--rtol`` (and ``--atol`` for values near 0) compare numbers up to that tolerance and
print the largest mismatches, everything else still exactly::

    .venv/bin/python benchmarks/values_unchanged.py compare /tmp/before /tmp/after \
        --rtol 1e-4 --atol 1e-6
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import warnings
from pathlib import Path
from typing import Any

STEPS = 4
#: Library models (``tests/models/cases.py``) recorded besides ``tests/problems.py``.
#: In float64, as the problems, so that reordered sums differ in the last bits only.
LIBRARY = ("gpt2",)
CLOCKS = ("step_time", "tracker_time")
META_STAMPS = ("created", "start_time", "end_time", "host", "run_name", "versions")


def record(out: Path, preset: str | None = None, batch_replay: bool = False) -> None:
    import torch

    from cockpit.presets import PRESETS
    from tests.models.cases import CASES
    from tests.problems import PROBLEMS

    if preset is None:
        names = [*PRESETS["full"], "early_stopping", "cabs"]
    else:
        names = list(PRESETS[preset])
    quantities = dict.fromkeys(names, 1)
    if batch_replay:
        _record_batch_replay(out, quantities)
        return
    for problem in PROBLEMS:
        model, loss_fn = problem.make()
        batches = [problem.batch(step) for step in range(STEPS)]
        loss_input = getattr(problem, "loss_input", None)
        _record_run(out, problem.name, model, loss_fn, batches, quantities, loss_input)
    for case in (c for c in CASES if c.name in LIBRARY):
        batches = _doubled(case.batches(2 * STEPS, torch.float64))
        model = case.make(torch.float64)
        _record_run(
            out, case.name, model, case.loss(), batches, quantities, case.loss_input
        )


def _record_batch_replay(out: Path, quantities: dict[str, int]) -> None:
    """The models of ``tests/engines/test_batch_replay.py``, two losses each."""
    import torch
    from torch import nn

    from tests.engines.test_batch_replay import MODELS, batches

    for name, (make, shape) in MODELS.items():
        for loss_fn in (nn.CrossEntropyLoss(), nn.MSELoss(reduction="sum")):
            torch.manual_seed(0)
            model = make().double()
            data = batches(shape, loss_fn, steps=STEPS)
            run = f"{name}-{type(loss_fn).__name__}"
            _record_run(out, run, model, loss_fn, data, quantities, None)


def _doubled(batches: list) -> list:
    """Pairs of a library case's keyword batches as one of twice the samples.

    ``ggn_top_eigen`` asks for 4 eigenvalues, more than the GGN of a case's 3 samples
    has.
    """
    import torch

    pairs = zip(batches[::2], batches[1::2], strict=True)
    return [
        (
            {k: torch.cat([a.kwargs[k], b.kwargs[k]]) for k in a.kwargs},
            torch.cat([a.target, b.target]),
        )
        for a, b in pairs
    ]


def _record_run(out, name, model, loss_fn, batches, quantities, loss_input) -> None:
    """Train on ``batches`` (``(inputs, target)``; a dict of inputs goes by keyword)."""
    import torch

    import cockpit

    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ck = cockpit.Cockpit(
            model,
            loss_fn,
            optimizer,
            logdir=out,
            run_name=name,
            preset=None,
            quantities=quantities,
            loss_input=loss_input,
        )
        for x, y in batches:
            optimizer.zero_grad()
            with ck.track():
                output = model(**x) if isinstance(x, dict) else model(x)
                z = output if loss_input is None else loss_input(output)
                loss_fn(z, y).backward()
            optimizer.step()
        ck.close()
    print(f"recorded {name}")


def _lines(run: Path, new: tuple[str, ...] = ()) -> list[dict]:
    lines = []
    for line in (run / "steps.jsonl").read_text().splitlines():
        entry = json.loads(line)
        entry.pop("time", None)
        for key in (*CLOCKS, *new):
            entry.get("values", {}).pop(key, None)
        if new and not entry.get("values"):
            continue  # a record that held only new keys (a late one)
        lines.append(entry)
    return sorted(lines, key=lambda e: (e["step"], sorted(e["values"])))


def _meta(run: Path, new: tuple[str, ...] = ()) -> dict:
    meta = json.loads((run / "meta.json").read_text())
    for key in META_STAMPS:
        meta.pop(key, None)
    for section in ("quantities", "options"):
        for key in new:
            meta.get(section, {}).pop(key, None)
    return meta


def _mismatches(old: Any, new: Any, rtol: float, atol: float, path: str) -> list:
    """``(path, old, new)`` of the numbers that differ by more than the tolerance.

    Anything else (keys, lengths, strings, null) must be equal.
    """
    numbers = (int, float)
    if isinstance(old, numbers) and isinstance(new, numbers):
        if isinstance(old, bool) or isinstance(new, bool):
            return [] if old == new else [(path, old, new)]
        close = math.isclose(old, new, rel_tol=rtol, abs_tol=atol)
        return [] if close else [(path, old, new)]
    if isinstance(old, dict) and isinstance(new, dict) and old.keys() == new.keys():
        return [
            m
            for k in old
            for m in _mismatches(old[k], new[k], rtol, atol, f"{path}.{k}")
        ]
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        return [
            m
            for i, (a, b) in enumerate(zip(old, new, strict=True))
            for m in _mismatches(a, b, rtol, atol, f"{path}[{i}]")
        ]
    return [] if old == new else [(path, old, new)]


def _steps_differ(old: list, new: list, rtol: float, atol: float) -> list:
    """Bit for bit (``rtol == atol == 0``) or up to the tolerance; the mismatches."""
    if rtol == 0 and atol == 0:
        return [] if old == new else [("steps.jsonl", "", "")]
    return _mismatches(old, new, rtol, atol, "")


def compare(
    before: Path,
    after: Path,
    new: tuple[str, ...] = (),
    rtol: float = 0.0,
    atol: float = 0.0,
) -> int:
    """Compare two recordings run by run; ``new`` keys are dropped from ``after``.

    With a tolerance, numbers match if ``math.isclose(old, new, rel_tol=rtol,
    abs_tol=atol)``, and the largest mismatches are printed.
    """
    runs = sorted(p.name for p in before.iterdir() if p.is_dir())
    differing = []
    for name in runs:
        old, fresh = before / name, after / name
        if not fresh.is_dir():
            differing.append(f"{name}: missing after")
            continue
        mismatches = _steps_differ(_lines(old), _lines(fresh, new), rtol, atol)
        if mismatches:
            differing.append(f"{name}: steps.jsonl differs")
            for path, a, b in mismatches[:3] if rtol or atol else []:
                print(f"  {name}{path}: {a!r} -> {b!r}")
        if _meta(old) != _meta(fresh, new):
            differing.append(f"{name}: meta.json differs")
    for line in differing:
        print(line)
    # A run may differ in both files: count runs, not lines.
    identical = len(runs) - len({line.split(":")[0] for line in differing})
    print(f"{identical} of {len(runs)} runs identical")
    return 1 if differing else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("record")
    rec.add_argument("out", type=Path)
    rec.add_argument(
        "--preset",
        choices=["economy", "business", "full"],
        help="record this preset's quantities alone (default: full, early_stopping "
        "and cabs)",
    )
    rec.add_argument(
        "--batch-replay",
        action="store_true",
        help="record the batch replay's models (BatchNorm, LSTM, GRU) instead",
    )
    rec.add_argument(
        "--loop-route",
        action="store_true",
        help="the batch replay's backward pass per sample for every model",
    )
    cmp = sub.add_parser("compare")
    cmp.add_argument("before", type=Path)
    cmp.add_argument("after", type=Path)
    cmp.add_argument(
        "--rtol",
        type=float,
        default=0.0,
        help="relative tolerance for numbers (default 0: bit for bit)",
    )
    cmp.add_argument(
        "--atol",
        type=float,
        default=0.0,
        help="absolute tolerance for numbers (default 0)",
    )
    cmp.add_argument(
        "--new",
        nargs="+",
        default=[],
        metavar="KEY",
        help="log keys added on purpose: dropped from AFTER before comparing",
    )
    args = parser.parse_args()
    if args.command == "record":
        if args.loop_route:
            from cockpit.engines import batch_replay

            batch_replay.LOOP_WIDTH = 0
        record(args.out, args.preset, args.batch_replay)
        return 0
    return compare(args.before, args.after, tuple(args.new), args.rtol, args.atol)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.exit(main())
