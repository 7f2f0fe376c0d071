"""The configurations: plain training, each preset, each quantity, and their variants.

A configuration is a name; :func:`build_run` turns it into a model, an SGD optimizer
and a Cockpit (none for :data:`PLAIN`). ``overhead.py``'s docstring describes them.
"""

from __future__ import annotations

from collections.abc import Callable
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
#: The batch replay on a random subsample of this many samples per step
#: (``Cockpit(replay_samples=...)``), as ``<preset>/replay8`` configurations.
REPLAY_SAMPLES = 8
SUBSAMPLE = f"/replay{REPLAY_SAMPLES}"
#: A histogram sample of 2**16 elements instead of the default 2**20
#: (``Cockpit(hist_samples=...)``), as ``<preset>/hist64k`` configurations.
HIST_SAMPLES = 2**16
SMALL_HIST = "/hist64k"
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
CONFIGS += [p + SUBSAMPLE for p in PRESETS]
CONFIGS += [p + SMALL_HIST for p in PRESETS]
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
    base = config.removesuffix(FUNC).removesuffix(SUBSAMPLE).removesuffix(SMALL_HIST)
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
            replay_samples=REPLAY_SAMPLES if config.endswith(SUBSAMPLE) else None,
            **({"hist_samples": HIST_SAMPLES} if config.endswith(SMALL_HIST) else {}),
            **_tracking(config),
        )
    return Run(config, model, loss_fn, optimizer, ck, problem.loss_input)
