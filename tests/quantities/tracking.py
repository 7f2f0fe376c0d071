"""Run a tracked training loop on a problem and keep brute-force references.

``tracked_run`` trains a problem for a few steps with the tracker on and, before each
step, records what the references need: the parameters, the per-sample gradients and
the per-sample losses at that point, from ``tests.reference`` alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from torch import Tensor

import cockpit
from cockpit.engines.curvature import CurvatureRequest
from cockpit.logs import Run
from cockpit.quantities import REGISTRY
from tests import reference
from tests.problems import Problem


def _needs_curvature(quantity) -> bool:
    request = CurvatureRequest()
    quantity.amend_curvature(request)
    return bool(request)


#: Quantities that need BackPACK's second-order extensions (a chain of modules).
SECOND_ORDER = [name for name, cls in REGISTRY.items() if _needs_curvature(cls())]


def everything(problem: Problem) -> list[str]:
    """Every quantity the problem's model supports; "together" tests track them all.

    All work with plain SGD; the second-order ones need a chain of modules.
    """
    return [n for n in REGISTRY if problem.chain or n not in SECOND_ORDER]


@dataclass
class ReferenceStep:
    """Brute-force ingredients at one step, taken before the tracked step runs."""

    params: dict[str, Tensor]
    grads: dict[str, Tensor]
    losses: Tensor
    lr: float


def tracked_run(
    problem: Problem,
    logdir: Path,
    quantities,
    steps: int = 2,
    optimizer: str = "sgd",
    lr: float = 0.1,
    **kwargs,
) -> tuple[Run, list[ReferenceStep]]:
    """Train ``steps`` steps with tracking; return the loaded log and the references."""
    model, loss_fn = problem.make()
    if optimizer == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=lr)
    else:
        opt = torch.optim.Adam(model.parameters(), lr=lr)
    ck = cockpit.Cockpit(
        model, loss_fn, opt, logdir=logdir, preset=None, quantities=quantities, **kwargs
    )
    refs = []
    for step in range(steps):
        x, y = problem.batch(step)
        with torch.no_grad():
            losses = reference.per_sample_losses(loss_fn, model(x), y)
        refs.append(
            ReferenceStep(
                params={n: p.detach().clone() for n, p in model.named_parameters()},
                grads=reference.per_sample_grads(model, loss_fn, x, y),
                losses=losses,
                lr=opt.param_groups[0]["lr"],
            )
        )
        opt.zero_grad()
        with ck.track():
            loss_fn(model(x), y).backward()
        opt.step()
    ck.close()
    return cockpit.load(ck.run_dir), refs


def repeat_batch(problem: Problem, logdir: Path, quantities, steps: int):
    """Track ``steps`` steps on batch 0 with SGD at learning rate 0 (fixed parameters).

    Returns:
        The loaded run, and the model, loss and batch every step used.

    """
    model, loss_fn = problem.make()
    x, y = problem.batch(0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    ck = cockpit.Cockpit(
        model, loss_fn, optimizer, logdir=logdir, preset=None, quantities=quantities
    )
    for _ in range(steps):
        optimizer.zero_grad()
        with ck.track():
            loss_fn(model(x), y).backward()
        optimizer.step()
    ck.close()
    return cockpit.load(ck.run_dir), (model, loss_fn, x, y)


def logged(run: Run, quantity: str, step: int, layer: str | None = None) -> float:
    """The one value logged for ``quantity`` (and layer) at ``step``."""
    frame = run.scalars
    rows = frame[(frame.quantity == quantity) & (frame.step == step)]
    rows = rows[rows.layer.isna()] if layer is None else rows[rows.layer == layer]
    assert len(rows) == 1, f"{quantity}/{layer} at step {step}: {len(rows)} rows"
    return float(rows.value.iloc[0])


def assert_per_layer(run: Run, quantity: str, step: int, expected: dict) -> None:
    """Compare the logged total (key "total") and every layer with ``expected``."""
    for layer, value in expected.items():
        got = logged(run, quantity, step, None if layer == "total" else layer)
        torch.testing.assert_close(
            torch.tensor(got, dtype=torch.float64),
            torch.as_tensor(value, dtype=torch.float64),
            rtol=1e-7,
            atol=1e-10,
            msg=lambda m, layer=layer: f"{quantity}[{layer}] at step {step}: {m}",
        )


def histogram_rows(run: Run, quantity: str) -> pd.DataFrame:
    """The histogram rows of ``quantity``."""
    return run.histograms[run.histograms.quantity == quantity]


def check_per_layer_reference(
    problem: Problem, logdir: Path, name: str, together: bool
) -> None:
    """Track ``name`` (alone or with all others) and compare it, total and per layer,
    with the reference function of the same name on the brute-force gradients."""
    run, refs = tracked_run(
        problem, logdir, everything(problem) if together else [name]
    )
    brute_force = getattr(reference, name)
    for step, ref in enumerate(refs):
        per_sample = reference.layers_and_total(ref.grads)
        assert_per_layer(
            run, name, step, {k: brute_force(g) for k, g in per_sample.items()}
        )


def make_cockpit(model, loss_fn, logdir: Path, quantities, **kwargs) -> cockpit.Cockpit:
    """A Cockpit with plain SGD (lr 0.1) tracking only ``quantities``."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    return cockpit.Cockpit(
        model,
        loss_fn,
        optimizer,
        logdir=logdir,
        preset=None,
        quantities=quantities,
        **kwargs,
    )


def linear_cockpit(logdir: Path, quantities, shape: tuple[int, int], bias: bool = True):
    """A float64 ``Linear`` with MSE loss and plain SGD, tracked for ``quantities``."""
    model = torch.nn.Linear(*shape, bias=bias).double()
    loss_fn = torch.nn.MSELoss()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    ck = cockpit.Cockpit(
        model, loss_fn, opt, logdir=logdir, preset=None, quantities=quantities
    )
    return model, loss_fn, ck
