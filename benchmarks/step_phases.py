"""Where a tracked step's CPU time goes, phase by phase, next to a plain step's.

Times each phase of a training step on the training thread (``time.thread_time``,
one intra-op thread): ``zero_grad``, entering ``track()`` (the hooks), the forward
pass, the backward pass (the hooks' work in it), leaving ``track()`` (statistics,
quantities, the record), and ``optimizer.step()`` (the step's snapshot and the
quantities that wait for it). Plain and tracked runs alternate in rounds of
``--steps`` steps; the log's writer is flushed before each step, outside the timed
phases, so its thread does not take the interpreter from the timed one. Medians over
rounds, in ms per step::

    .venv/bin/python benchmarks/step_phases.py --problems deep_mlp --configs economy

``--ops`` counts instead the ATen operations each phase dispatches per step (as
``op_count.py`` counts a whole step), which CPU contention does not move;
``--memory`` gives each phase's peak bytes of the tensor storage its operations
allocate (counted until the tensors die, also after the phase): what the phase adds
to the step's memory::

    .venv/bin/python benchmarks/step_phases.py --problems deep_mlp --ops --rounds 1
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import tempfile
import time
import weakref
from collections.abc import Callable

import torch
from _overhead.configs import CONFIGS, Run, warm_runs
from _overhead.problems import PROBLEMS, make_problem
from op_count import _Counter
from torch import Tensor
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

PHASES = ("zero_grad", "enter", "forward", "backward", "exit", "optimizer")


def _cpu_ms(action: Callable[[], object]) -> float:
    """The training thread's CPU milliseconds in ``action``."""
    start = time.thread_time()
    action()
    return 1e3 * (time.thread_time() - start)


def _operations(action: Callable[[], object]) -> float:
    """The ATen operations ``action`` dispatches."""
    with _Counter() as counter:
        action()
    return counter.count


class _PeakBytes(TorchDispatchMode):
    """The peak bytes of the tensor storage that operations allocate while active.

    A storage is counted from the operation that makes it (an output whose storage
    none of the inputs holds) until the last tensor on it made in the mode dies;
    the views of an input add nothing.
    """

    def __init__(self) -> None:
        super().__init__()
        self.live = self.peak = 0
        self._tensors: dict[int, int] = {}  # storage address -> tensors made on it
        self._bytes: dict[int, int] = {}

    def _release(self, address: int) -> None:
        self._tensors[address] -= 1
        if not self._tensors[address]:
            del self._tensors[address]
            self.live -= self._bytes.pop(address)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {
            t.untyped_storage().data_ptr()
            for t in tree_leaves((args, kwargs))
            if isinstance(t, Tensor)
        }
        for tensor in tree_leaves(out):
            if not isinstance(tensor, Tensor):
                continue
            storage = tensor.untyped_storage()
            address = storage.data_ptr()
            if address in inputs or not address:
                continue
            if address not in self._tensors:
                self._tensors[address], self._bytes[address] = 0, storage.nbytes()
                self.live += storage.nbytes()
                self.peak = max(self.peak, self.live)
            self._tensors[address] += 1
            weakref.finalize(tensor, self._release, address)
        return out


def _peak_bytes(action: Callable[[], object]) -> float:
    """The peak bytes of new tensor storage while ``action`` runs."""
    with _PeakBytes() as counter:
        action()
    return counter.peak


def _step_actions(run: Run, x: Tensor, y: Tensor) -> tuple[Callable[[], object], ...]:
    """One training step on ``(x, y)`` as the calls of :data:`PHASES`, in order."""
    block = run.ck.track() if run.ck is not None else contextlib.nullcontext()
    losses: list[Tensor] = []
    return (
        run.optimizer.zero_grad,
        block.__enter__,
        lambda: losses.append(run.loss(x, y)),
        lambda: losses[0].backward(),
        lambda: block.__exit__(None, None, None),
        run.optimizer.step,
    )


def phase_costs(
    run: Run, batches, steps: int, meter: Callable[[Callable[[], object]], float]
) -> list[float]:
    """``meter`` (CPU ms or operations) per step of each phase of :data:`PHASES`."""
    totals = [0.0] * len(PHASES)
    for _ in range(steps):
        run.flush()
        actions = _step_actions(run, *batches[run.batch_index % len(batches)])
        run.batch_index += 1
        for i, action in enumerate(actions):
            totals[i] += meter(action)
    return [total / steps for total in totals]


def phases_parser(doc: str, steps: int, warmup: int) -> argparse.ArgumentParser:
    """The options of a benchmark by phase: problems, configurations, steps, warm-up."""
    parser = argparse.ArgumentParser(description=doc.split("\n", 1)[0])
    parser.add_argument("--problems", nargs="+", choices=PROBLEMS, default=["deep_mlp"])
    parser.add_argument("--configs", nargs="+", choices=CONFIGS, default=["economy"])
    parser.add_argument("--steps", type=int, default=steps)
    parser.add_argument("--warmup", type=int, default=warmup)
    return parser


def print_header() -> None:
    """The table's header: one column per phase of :data:`PHASES` and the total."""
    print(f"| problem | config | {' | '.join(PHASES)} | total |")
    print(f"|---|---|{'---:|' * (len(PHASES) + 1)}")


def main() -> None:
    parser = phases_parser(__doc__, steps=20, warmup=5)
    parser.add_argument("--rounds", type=int, default=5)
    measures = parser.add_mutually_exclusive_group()
    measures.add_argument(
        "--ops", action="store_true", help="count ATen operations, not CPU time"
    )
    measures.add_argument(
        "--memory", action="store_true", help="peak bytes of new tensors, not time"
    )
    args = parser.parse_args()
    meter = _operations if args.ops else _peak_bytes if args.memory else _cpu_ms
    torch.set_num_threads(1)
    device = torch.device("cpu")
    print_header()
    for name in args.problems:
        problem = make_problem(name, device)
        with tempfile.TemporaryDirectory(prefix="cockpit-phases-") as logdir:
            runs = warm_runs(problem, args.configs, device, logdir, args.warmup)
            times: dict[str, list[list[float]]] = {run.config: [] for run in runs}
            for _ in range(args.rounds):
                for run in runs:
                    times[run.config].append(
                        phase_costs(run, problem.batches, args.steps, meter)
                    )
            for config, rounds in times.items():
                medians = [statistics.median(c) for c in zip(*rounds, strict=True)]
                cells = " | ".join(f"{m:.2f}" for m in medians)
                print(f"| {name} | {config} | {cells} | {sum(medians):.2f} |")
            for run in runs:
                if run.ck is not None:
                    run.ck.close()


if __name__ == "__main__":
    main()
