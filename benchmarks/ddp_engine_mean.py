"""What taking DDP's average for the per-sample engine's mean changes, in float32.

With equal shards and no autocast the tracker takes the mean gradient that the
per-sample formulas read (``sample_grads``) from DDP's averaged ``.grad`` instead of
all-reducing the engine's own mean (:func:`cockpit._ddp_average.full_precision`). The
two differ by float32 rounding; the variance formulas (``mean ||g_n||^2 - ||g||^2``)
amplify it. This script measures by how much, on 2 gloo processes, with every
``economy`` quantity at every step:

- ``ddp``: the tracker as it is (DDP's average stands in);
- ``summed``: the same run with the engine's mean summed over the ranks (the
  substitution switched off), the same training bit for bit;
- ``single``: one process on the concatenated batch, float32;
- the reference: one process in float64 on the same float32 data and initial
  parameters, at step 0 (later steps' parameters differ by training's rounding).

``grad_hist_1d``'s sample of elements is drawn at random in each process, so it is
compared only between ``ddp`` and ``summed`` (which draw alike), and so are the
quantities first logged after step 0 (alpha).

For each quantity and run it reports the largest relative difference
``|a - b| / |b|`` over the quantity's logged numbers (total and per layer; numbers
with ``|b| < 1e-30`` left out): at step 0 against the float64 reference, and
``ddp`` against ``summed`` over all steps. Run from the repository root::

    .venv/bin/python benchmarks/ddp_engine_mean.py
    .venv/bin/python benchmarks/ddp_engine_mean.py --problems digits_cnn --steps 3

Writes ``--out`` (default ``benchmarks/results/ddpsmall/engine-mean-float32.json``).
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import socket
import tempfile
import warnings
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from ddp_overhead import equal_shard, problem_data
from torch import nn

import cockpit
import cockpit._pieces
from cockpit.logs import LogReader
from cockpit.quantities import PRESETS

RESULTS = Path(__file__).parent / "results" / "ddpsmall" / "engine-mean-float32.json"
#: Timing: not statistics of the batch.
UNCOMPARED = {"tracker_time", "step_time"}
#: Drawn at random in each process (the histogram's sample of elements): one process
#: and two draw different samples, ``ddp`` and ``summed`` the same.
SAMPLED = {"grad_hist_1d"}


def _train(logdir: Path, run: str, x, y, model: nn.Module, steps: int) -> None:
    """Track ``steps`` SGD steps on the fixed batch with every economy quantity."""
    loss_fn = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # non-finite values are compared as such
        ck = cockpit.Cockpit(
            model,
            loss_fn,
            optimizer,
            logdir=logdir,
            run_name=run,
            quantities=dict.fromkeys(PRESETS["economy"], 1),
        )
        for _ in range(steps):
            optimizer.zero_grad()
            with ck.track():
                loss_fn(model(x), y).backward()
            optimizer.step()
        ck.close()


def _never(autocast: bool, layers) -> bool:
    """``summed``: the substitution switched off, the engine's mean summed."""
    return False


def _rank(rank: int, world: int, port: int, args, logdir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    substitutes = cockpit._pieces.full_precision
    for problem in args.problems:
        for run in ("ddp", "summed"):
            chosen = substitutes if run == "ddp" else _never
            cockpit._pieces.full_precision = chosen
            torch.manual_seed(0)
            x, y, model = problem_data(problem)
            x, y = equal_shard(x, rank, world), equal_shard(y, rank, world)
            ddp = nn.parallel.DistributedDataParallel(model)
            _train(
                Path(logdir) / f"rank{rank}", f"{problem}-{run}", x, y, ddp, args.steps
            )
            del ddp, model
    gc.collect()  # gloo: the DDP models go before the process group
    dist.destroy_process_group()


def _records(run_dir: Path) -> dict[int, dict]:
    steps: dict[int, dict] = {}
    for record in LogReader(run_dir).read_new():
        steps.setdefault(record["step"], {}).update(record["values"])
    return steps


def _numbers(value) -> list[float | None]:
    if isinstance(value, dict):
        return [n for key in sorted(value) for n in _numbers(value[key])]
    if isinstance(value, list):
        return [n for item in value for n in _numbers(item)]
    return [value] if value is None or isinstance(value, (int, float)) else []


def _worst(got: dict, expected: dict) -> float | None:
    """Largest ``|a - b| / |b|`` over the logged numbers (NaN if one is null)."""
    pairs = zip(_numbers(got), _numbers(expected), strict=True)
    worst = 0.0
    for a, b in pairs:
        if a is None or b is None:
            if a is not b:
                return math.nan
        elif abs(b) >= 1e-30:
            worst = max(worst, abs(a - b) / abs(b))
    return worst


def _compare(runs: dict[str, dict[int, dict]]) -> dict[str, dict]:
    """Quantity -> column -> largest relative difference (``None``: not compared).

    Quantities logged only after step 0 (alpha) have no step-0 reference.
    """
    reference, steps = runs["float64"][0], runs["ddp"]
    names = {name for values in steps.values() for name in values} - UNCOMPARED
    table = {}
    for name in sorted(names):
        referenced = name in reference and name not in SAMPLED
        row = {
            f"{run} vs float64 (step 0)": _worst(runs[run][0][name], reference[name])
            if referenced
            else None
            for run in ("ddp", "summed", "single")
        }
        row["ddp vs summed (all steps)"] = max(
            _worst(values[name], runs["summed"][s][name])
            for s, values in steps.items()
            if name in values
        )
        table[name] = row
    return table


def main() -> None:
    """Run the four runs of each problem; print and store the differences."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--problems", nargs="+", default=["digits_cnn", "3c3d"])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    logdir = Path(tempfile.mkdtemp())
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    mp.spawn(_rank, args=(2, port, args, str(logdir)), nprocs=2, join=True)
    results = {}
    for problem in args.problems:
        runs = {
            r: _records(logdir / "rank0" / f"{problem}-{r}") for r in ("ddp", "summed")
        }
        for run, dtype, steps in (
            ("single", torch.float32, args.steps),
            ("float64", torch.float64, 1),
        ):
            torch.manual_seed(0)
            x, y, model = problem_data(problem)
            keep = 2 * (len(y) // 2)  # the two ranks' shards, concatenated
            x, y = x[:keep].to(dtype), y[:keep]
            _train(logdir, f"{problem}-{run}", x, y, model.to(dtype), steps)
            runs[run] = _records(logdir / f"{problem}-{run}")
        results[problem] = _compare(runs)
        print(f"\n{problem} (largest relative difference over the logged numbers)")
        columns = list(next(iter(results[problem].values())))
        print("| quantity | " + " | ".join(columns) + " |")
        print("|---" * (len(columns) + 1) + "|")
        for name, row in results[problem].items():
            print(
                f"| {name} | "
                + " | ".join("-" if v is None else f"{v:.1e}" for v in row.values())
                + " |"
            )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    stored = {"args": {**vars(args), "out": str(args.out)}, "results": results}
    args.out.write_text(json.dumps(stored, indent=1))


if __name__ == "__main__":
    main()
