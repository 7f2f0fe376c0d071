"""The configurations: plain training, each preset, each quantity, and their variants.

A configuration is a name; :func:`build_run` turns it into a model, an SGD optimizer
and a Cockpit (none for :data:`PLAIN`). ``overhead.py``'s docstring describes them.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

import cockpit
from _overhead.problems import Batches, Problem
from cockpit.quantities import PRESETS, REGISTRY, GgnTopEigen, HessMaxEv, HessTrace

PLAIN = "plain"
#: The full preset with its default schedules (costly curvature every 10th step).
SCHEDULED = "full-scheduled"
#: The default Cockpit: the economy preset under the 5 % overhead budget
#: (``benchmarks/budget.py``; not in :data:`CONFIGS`, whose short blocks would time
#: its calibration only).
BUDGET = "budget"
FUNC = "/torch.func"
#: The batch replay on a random subsample of M samples per step
#: (``Cockpit(replay_samples=M)``), as ``<preset>/replay<M>`` configurations.
REPLAY_SAMPLES = {f"/replay{m}": m for m in (1, 2, 4, 8)}
#: Histogram samples other than the default (``Cockpit(hist_samples=...)``), as
#: ``<preset>/hist64k`` (2**16, the default since 2026-11-30, kept so that the
#: commands of earlier results still run) and ``<preset>/hist1m`` (2**20, the default
#: before) configurations.
HIST_SAMPLES = {"/hist64k": 2**16, "/hist1m": 2**20}
#: Quantities with non-default options, as ``<quantity>/<variant>`` configurations,
#: and groups of quantities that share work (a dict of them).
VARIANTS: dict[str, Callable[[], Any]] = {
    "ggn_top_eigen/lanczos": lambda: GgnTopEigen(method="lanczos"),
    # The stopping rule before the residual rule became the default (max_error=0.04):
    # the estimate settled to tol=1e-3 alone. Alone and in full, for A/B timings.
    "hess_max_ev/settled": lambda: HessMaxEv(max_error=None),
    "full/settled": lambda: {
        **dict.fromkeys(PRESETS["full"], 1),
        "hess_max_ev": HessMaxEv(max_error=None),
    },
    # Hutchinson's estimator (torch.func engine) and the eigensolve: one replay.
    "hutchinson+hess_max_ev": lambda: {
        "hess_trace": HessTrace(curvature="hessian"),
        "hess_max_ev": HessMaxEv(),
    },
}
CONFIGS = [PLAIN, *PRESETS, SCHEDULED, *REGISTRY]
assert len(set(CONFIGS)) == len(CONFIGS), "a preset and a quantity share a name"
DEFAULT_CONFIGS = [*CONFIGS, "economy" + FUNC, "business" + FUNC]
CONFIGS += [*VARIANTS]
CONFIGS += [c + FUNC for c in CONFIGS if c != PLAIN]
CONFIGS += [p + suffix for suffix in REPLAY_SAMPLES for p in PRESETS]
CONFIGS += [p + suffix for suffix in HIST_SAMPLES for p in PRESETS]
#: Plain SGD (no momentum, no weight decay), so that every quantity is defined.
LR = 0.01


@dataclass
class Run:
    """One configuration's training: model, optimizer, Cockpit (None for plain)."""

    config: str
    model: nn.Module
    loss_fn: nn.Module
    optimizer: torch.optim.Optimizer
    ck: cockpit.Cockpit | None
    loss_input: Callable[[Any], Tensor] | None = None
    batch_index: int = 0

    def loss(self, x: Tensor, y: Tensor) -> Tensor:
        out = self.model(x)
        return self.loss_fn(out if self.loss_input is None else self.loss_input(out), y)

    def step(self, batches: Batches) -> None:
        """One training step on the next batch of the pool (tracked unless plain)."""
        x, y = batches[self.batch_index % len(batches)]
        self.batch_index += 1
        self.optimizer.zero_grad()
        if self.ck is None:
            self.loss(x, y).backward()
        else:
            with self.ck.track():
                self.loss(x, y).backward()
        self.optimizer.step()

    def flush(self) -> None:
        """Wait until the Cockpit's writer has written everything submitted."""
        if self.ck is not None:
            self.ck.writer.flush()


def _tracking(config: str) -> dict[str, Any]:
    """The Cockpit's ``preset`` and ``quantities`` for a configuration but plain."""
    base = config.removesuffix(FUNC)
    for suffix in [*REPLAY_SAMPLES, *HIST_SAMPLES]:
        base = base.removesuffix(suffix)
    if base == BUDGET:
        return {}
    if base == SCHEDULED:
        return {"preset": "full"}
    if base in VARIANTS:
        made = VARIANTS[base]()
        quantities = made if isinstance(made, dict) else {made.name: made}
        return {"preset": None, "quantities": quantities}
    # Presets with every quantity at every step (``full`` by default runs its
    # costly curvature quantities every 10th step only).
    names = list(PRESETS[base]) if base in PRESETS else [base]
    return {"preset": None, "quantities": dict.fromkeys(names, 1)}


def build_run(problem: Problem, config: str, device: torch.device, logdir: str) -> Run:
    """A fresh model with the problem's initial weights, its optimizer and Cockpit."""
    model = problem.make_model().to(device)
    model.load_state_dict(problem.initial)
    loss_fn = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    ck = None
    if config != PLAIN:
        ck = cockpit.Cockpit(
            model,
            loss_fn,
            optimizer,
            logdir=logdir,
            run_name=f"{problem.name}-{config.replace('/', '-')}",
            engine="torch.func" if config.endswith(FUNC) else "auto",
            loss_input=problem.loss_input,
            replay_samples=_suffixed(REPLAY_SAMPLES, config),
            **_optional("hist_samples", _suffixed(HIST_SAMPLES, config)),
            **_tracking(config),
        )
    return Run(config, model, loss_fn, optimizer, ck, problem.loss_input)


def _suffixed(values: dict[str, int], config: str) -> int | None:
    """The value of ``config``'s suffix among ``values``' keys, if it has one."""
    return next((v for suffix, v in values.items() if config.endswith(suffix)), None)


def _optional(name: str, value: int | None) -> dict[str, int]:
    """``{name: value}``, or nothing where ``value`` is None (the Cockpit's default)."""
    return {} if value is None else {name: value}


def warm_runs(
    problem: Problem,
    configs: list[str],
    device: torch.device,
    logdir: str,
    warmup: int,
) -> list[Run]:
    """Plain training first, then each other configuration, ``warmup`` steps each."""
    names = [PLAIN, *(c for c in configs if c != PLAIN)]
    runs = [build_run(problem, c, device, logdir) for c in names]
    for run in runs:
        for _ in range(warmup):
            run.step(problem.batches)
    return runs


def interleaved_steps(
    runs: dict[str, Run], problem: Problem, rounds: int, steps: int
) -> Iterator[tuple[str, Run]]:
    """``(config, run)`` before each timed step, blocks in shuffled rounds.

    Per round every configuration once, in an order drawn from a fixed seed: one
    untimed warm-up step, ``steps`` steps for the caller to time (it runs each
    itself), then the writer flushed, untimed.
    """
    rng = random.Random(0)
    for _ in range(rounds):
        for config in rng.sample(list(runs), len(runs)):
            run = runs[config]
            run.step(problem.batches)  # warm-up
            for _ in range(steps):
                yield config, run
            run.flush()
