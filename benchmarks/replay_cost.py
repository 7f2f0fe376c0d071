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

Columns: ``forward``, ``backward`` of the plain step; the tracked step's ``total``
and its ratio to the plain step; of it, ``replay fwd`` (the replayed forward pass and
the per-sample losses), ``backwards`` (all the replayed samples' backward passes),
``per sample / plain bwd`` (one replayed sample's backward against the plain
backward), ``statistics`` (the per-sample statistics of the rows, without the
backward passes that produce them) and ``rest`` (everything else of the tracked step:
the user's own forward and backward, the other quantities, the record).
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

from cockpit.engines import batch_replay

#: The engine's phases: the attribute of :mod:`cockpit.engines.batch_replay` wrapped.
WRAPPED = {
    "replay fwd": (batch_replay.BatchReplay, "_loss_input"),
    "backwards": (batch_replay.BatchReplay, "_rows"),
    "with stats": (batch_replay, "from_blocks"),
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


def plain_ms(run: Run, batches: Batches, steps: int) -> tuple[float, float]:
    """CPU ms per step of a plain step's forward and backward passes."""
    forward = backward = 0.0
    for _ in range(steps):
        x, y = batches[run.batch_index % len(batches)]
        run.batch_index += 1
        run.optimizer.zero_grad()
        start = time.thread_time()
        loss = run.loss(x, y)
        middle = time.thread_time()
        loss.backward()
        end = time.thread_time()
        run.optimizer.step()
        forward, backward = forward + middle - start, backward + end - middle
    return 1e3 * forward / steps, 1e3 * backward / steps


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
        "| problem | config | forward | backward | total | ratio | replay fwd | "
        "backwards | per sample / plain bwd | statistics | rest |"
    )
    print(f"|---|---|{'---:|' * 9}")
    for name in args.problems:
        problem = make_problem(name, device)
        with tempfile.TemporaryDirectory(prefix="cockpit-replay-") as logdir:
            runs = warm_runs(problem, args.configs, device, logdir, args.warmup)
            plain: list[tuple[float, float]] = []
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
            forward = statistics.median(f for f, _ in plain)
            backward = statistics.median(b for _, b in plain)
            for config, rounds in tracked.items():
                m = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
                stats = m["with stats"] - m["backwards"]
                rest = m["total"] - m["replay fwd"] - m["with stats"]
                samples = replayed[config]
                per_sample = m["backwards"] / samples / backward
                cells = [
                    forward,
                    backward,
                    m["total"],
                    m["total"] / (forward + backward),
                    m["replay fwd"],
                    m["backwards"],
                    per_sample,
                    stats,
                    rest,
                ]
                print(
                    f"| {name} | {config} | {' | '.join(f'{c:.2f}' for c in cells)} |"
                )
            for run in runs:
                if run.ck is not None:
                    run.ck.close()


if __name__ == "__main__":
    main()
