"""What the batch replay's step costs, phase by phase, against a plain step's.

For a model whose samples BatchNorm couples, the economy step's per-sample statistics
come from :mod:`cockpit.engines.batch_replay`: one replayed forward pass of the batch,
then one backward pass through its graph per replayed sample (``replay_samples=M``, or
every sample), then the statistics of the ``[M, D]`` rows. This script times those
phases inside real tracked steps by wrapping the engine's methods (training thread's
CPU time, ``time.thread_time``, one intra-op thread), next to a plain step's forward
and backward passes, interleaved in rounds; medians over rounds, in ms per step::

    cd benchmarks && ../.venv/bin/python replay_cost.py --problems resnet18 \\
        --configs economy/replay1 economy/replay2 economy/replay4

Columns: ``plain``, a plain step (zero_grad, forward, backward, optimizer step); the
tracked step's ``ratio`` to it; of the tracked step, ``replay fwd`` (the replayed
forward pass), ``backwards`` (all the replayed samples' backward passes), ``per
sample / plain bwd`` (one replayed sample's backward passes against the plain step's
backward pass), ``statistics`` (the per-sample statistics of the rows, without the
backward passes that produce them), ``other engines`` (the rest of the engines'
work after the block: the per-sample losses, the subsample's draw, the histogram
state...), ``quantities`` (their ``finalize`` at the end of the block), ``optimizer
step`` (the parameters' snapshots around ``optimizer.step()`` and the quantities
that wait for the step, such as alpha's projections) and ``rest`` (everything else:
the user's own zero_grad, forward, backward and optimizer step, the hooks, the
record).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator

import torch
from _overhead.configs import CONFIGS, PLAIN, Run, warm_runs
from _overhead.problems import PROBLEMS, Batches, make_problem

from cockpit import _optimizer_step, _step
from cockpit.engines import batch_replay

#: The phases: the function wrapped, as its owner and attribute.
WRAPPED = {
    "replay fwd": (batch_replay.BatchReplay, "loss_input"),
    "backwards": (batch_replay.BatchReplay, "_vjps"),
    "with stats": (batch_replay, "from_blocks"),
    "engines": (_step.TrackedStep, "_fill"),
    "quantities": (_step.TrackedStep, "_finalize"),
    "snapshot": (_optimizer_step._FlatParams, "concatenated"),
    "after step": (_optimizer_step.OptimizerWatch, "flush"),
}


class PhaseClock:
    """Thread CPU seconds spent in each wrapped function."""

    def __init__(self) -> None:
        self.seconds = dict.fromkeys(WRAPPED, 0.0)

    def wrap(self, phase: str, function: Callable) -> Callable:
        def timed(*args, **kwargs):
            start = time.thread_time()
            try:
                return function(*args, **kwargs)
            finally:
                self.seconds[phase] += time.thread_time() - start

        return timed

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        """The wrappers in place of the engine's functions, restored on exit."""
        originals = {phase: getattr(*WRAPPED[phase]) for phase in WRAPPED}
        for phase, (owner, attribute) in WRAPPED.items():
            setattr(owner, attribute, self.wrap(phase, originals[phase]))
        try:
            yield
        finally:
            for phase, (owner, attribute) in WRAPPED.items():
                setattr(owner, attribute, originals[phase])

    def reset(self) -> None:
        self.seconds = dict.fromkeys(WRAPPED, 0.0)


def plain_ms(run: Run, batches: Batches, steps: int) -> dict[str, float]:
    """CPU ms per step: a plain step, and its forward and backward passes."""
    forward = backward = total = 0.0
    for _ in range(steps):
        x, y = batches[run.batch_index % len(batches)]
        run.batch_index += 1
        start = time.thread_time()
        run.optimizer.zero_grad()
        before = time.thread_time()
        loss = run.loss(x, y)
        middle = time.thread_time()
        loss.backward()
        end = time.thread_time()
        run.optimizer.step()
        total += time.thread_time() - start
        forward, backward = forward + middle - before, backward + end - middle
    return {
        "forward": 1e3 * forward / steps,
        "backward": 1e3 * backward / steps,
        "total": 1e3 * total / steps,
    }


def tracked_ms(
    run: Run, batches: Batches, steps: int, clock: PhaseClock
) -> dict[str, float]:
    """CPU ms per step: the whole tracked step and the engine's phases in it."""
    clock.reset()
    total = 0.0
    for _ in range(steps):
        run.flush()
        start = time.thread_time()
        run.step(batches)
        total += time.thread_time() - start
    phases = {k: 1e3 * v / steps for k, v in clock.seconds.items()}
    phases["total"] = 1e3 * total / steps
    return phases


def _cells(m: dict[str, float], plain: dict[str, float], samples: int) -> list[str]:
    """A tracked configuration's row (ms per step, or ratios), from its medians."""
    statistics_ms = m["with stats"] - m["backwards"]
    after = m["snapshot"] + m["after step"]
    rest = m["total"] - m["engines"] - m["quantities"] - after
    cells = [
        f"{m['total'] / plain['total']:.2f}x",
        f"{m['replay fwd']:.1f}",
        f"{m['backwards']:.1f}",
        f"{m['backwards'] / samples / plain['backward']:.2f}",
        f"{statistics_ms:.1f}",
        f"{m['engines'] - m['replay fwd'] - m['with stats']:.1f}",
        f"{m['quantities']:.1f}",
        f"{after:.1f}",
        f"{rest:.1f}",
    ]
    return cells


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--problems", nargs="+", choices=PROBLEMS, default=["resnet18"])
    parser.add_argument(
        "--configs", nargs="+", choices=CONFIGS, default=["economy/replay2"]
    )
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(1)
    device = torch.device("cpu")
    clock = PhaseClock()
    print(
        "| problem | config | plain | ratio | replay fwd | backwards | "
        "per sample / plain bwd | statistics | other engines | quantities | "
        "optimizer step | rest |"
    )
    print(f"|---|---|{'---:|' * 10}")
    for name in args.problems:
        problem = make_problem(name, device)
        with tempfile.TemporaryDirectory(prefix="cockpit-replay-") as logdir:
            runs = warm_runs(problem, args.configs, device, logdir, args.warmup)
            plain: list[dict[str, float]] = []
            tracked: dict[str, list[dict[str, float]]] = {}
            with clock.installed():
                for _ in range(args.rounds):
                    for run in runs:
                        if run.config == PLAIN:
                            plain.append(plain_ms(run, problem.batches, args.steps))
                        else:
                            tracked.setdefault(run.config, []).append(
                                tracked_ms(run, problem.batches, args.steps, clock)
                            )
            batch = problem.batches[0][0].shape[0]
            replayed = {r.config: r.ck.replay_samples or batch for r in runs if r.ck}
            base = {k: statistics.median(r[k] for r in plain) for k in plain[0]}
            for config, rounds in tracked.items():
                m = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
                print(f"| {name} | {config} | {base['total']:.1f} | ", end="")
                print(" | ".join(_cells(m, base, replayed[config])) + " |")
            for run in runs:
                if run.ck is not None:
                    run.ck.close()


if __name__ == "__main__":
    main()
