"""Per-sample statistics of every parameter at a step, and the engine moves found there.

Structure cannot show everything at construction. At a tracked step the hooks report
what they found, and parameters move to another engine from then on
(:meth:`~cockpit.engines.choice.Assignment.move`): to torch.func per module if their
BackPACK layer ran twice, BackPACK failed on it, or its input had no batch dimension
(``auto`` engine); to the replay if their module's calls have no batch dimension
under the per-module engine, if the per-module engine failed, or if their
per-sample gradients do not add up to ``.grad``; every parameter to the batch replay
if a BatchNorm layer is in training mode (:func:`couple`). The parameters that move get this
step's statistics from the replay, so no step is lost.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from cockpit.engines import backpack_engine
from cockpit.engines.choice import MODULE, REPLAY, Assignment
from cockpit.engines.func_engine import batch_norm_in_training, refuse_batch_norm
from cockpit.engines.layer_stats import LayerStats, SampleRequest, from_per_sample
from cockpit.engines.module_func import ModuleGrads
from cockpit.exceptions import UsageError

__all__ = ["HookFindings", "couple", "layer_stats"]


@dataclass
class HookFindings:
    """What BackPACK's hooks found at a step (``auto`` engine only).

    Attributes:
        reused: Ids of BackPACK modules that ran more than once.
        failed: Module id -> the error BackPACK raised on it.
        broken: Modules where the chain second-order extensions need was broken.

    """

    reused: set[int] = field(default_factory=set)
    failed: dict[int, str] = field(default_factory=dict)
    broken: list[nn.Module] = field(default_factory=list)


def couple(model: nn.Module, engines: Assignment) -> bool:
    """Move everything to the batch replay if a BatchNorm trains at this step.

    Called at a step with per-sample statistics or curvature. A model put into
    training mode after the tracker was created moves here (``engine="backpack"``
    refuses it). Returns whether curvature left BackPACK (``kfac_block`` stops).
    """
    why = batch_norm_in_training(model)
    if why is None:
        return False
    if engines.engine == "backpack":
        refuse_batch_norm(model)
    was = engines.curvature
    if engines.backpack or engines.module or engines.replay or was == "backpack":
        engines.couple(why)
    return was == "backpack"


def layer_stats(
    model: nn.Module,
    params: dict[str, nn.Parameter],
    engines: Assignment,
    request: SampleRequest,
    n: int,
    grads: dict[str, Tensor],
    module_grads: ModuleGrads | None,
    findings: HookFindings,
    replay: Callable[[list[str]], dict[str, LayerStats]],
) -> dict[str, LayerStats]:
    """Per-sample statistics of every parameter, from its engine (module docstring).

    Args:
        model: The model.
        params: Parameter name -> parameter, in the tracker's order.
        engines: The engine assignment (moves are recorded on it).
        request: What the statistics hold.
        n: The batch size N.
        grads: Parameter name -> flat gradient of the mean loss ``[D_l]``.
        module_grads: The per-module engine's hooks at this step, if any.
        findings: What BackPACK's hooks found.
        replay: ``names -> statistics`` of those parameters from the replay.

    """
    found = backpack_engine.collect(params, request, grads)
    moved = set(engines.replay) | set(engines.batch)
    if module_grads is not None:
        found.update(module_grads.collect(params, request))
        failed = sorted(module_grads.failed)
        errors = "; ".join(f"{k}: {v}" for k, v in module_grads.errors.items())
        why = (
            f"torch.func could not differentiate its module per sample ({errors})"
            if errors
            else "its module's output has no batch dimension"
        )
        engines.move(failed, REPLAY, why)
        moved.update(failed)
    if findings.reused:
        reused = backpack_params(model, params, engines, findings.reused)
        engines.move(reused, MODULE, "its module runs more than once per step")
        moved.update(reused)
    for module_id, error in findings.failed.items():
        broken = backpack_params(model, params, engines, {module_id})
        engines.move(broken, MODULE, f"BackPACK failed on its module ({error})")
        moved.update(broken)
    # A module called without the batch dimension (an embedding of arange(T))
    # gives BackPACK T "samples": its statistics have the wrong length.
    unbatched = [
        name
        for name, stats in found.items()
        if stats.samples != n and name not in moved
    ]
    _move_unbatched(engines, unbatched)
    moved.update(unbatched)
    if not engines.verified:
        engines.verified = True
        moved.update(_verify(params, engines, found, grads, moved))
    for name in moved:
        found.pop(name, None)
    if moved:
        found.update(replay([name for name in params if name in moved]))
    for name, p in params.items():
        if name not in found:  # not reached by this backward: zero gradients
            zeros = torch.zeros(n, *p.shape, device=p.device, dtype=p.dtype)
            found[name] = from_per_sample(zeros, p, request)
    return {name: found[name] for name in params}


def _move_unbatched(engines: Assignment, names: list[str]) -> None:
    """Parameters whose module's input has no batch dimension leave BackPACK.

    In ``auto`` mode they go to torch.func per module, which spreads a lookup on
    ``[1, T]`` indices over the batch (:mod:`cockpit.engines.module_func`) and
    reports any other unbatched call, which then goes to the replay; the check that
    per-sample gradients add up to ``.grad`` runs again at the next step, for them.
    Otherwise they go to the replay at once. This step's statistics of them come
    from the replay either way.
    """
    why = "its module's input has no batch dimension"
    if engines.engine == "auto" and names:
        engines.move(names, MODULE, why)
        engines.verified = False
    else:
        engines.move(names, REPLAY, why)


def backpack_params(
    model: nn.Module,
    params: dict[str, nn.Parameter],
    engines: Assignment,
    module_ids: set[int],
) -> list[str]:
    """The BackPACK engine's parameters owned by the modules with these ids."""
    return [
        name
        for module in engines.layers(model)
        if id(module) in module_ids
        for name in engines.backpack
        if any(p is params[name] for p in module.parameters(False))
    ]


def _verify(
    params: dict[str, nn.Parameter],
    engines: Assignment,
    found: dict[str, LayerStats],
    grads: dict[str, Tensor],
    moved: set[str],
) -> list[str]:
    """Check once that per-sample gradients from hooks add up to the gradient.

    A parameter used outside its modules (``F.linear(h, embedding.weight)``)
    gets per-sample gradients from the hooked calls alone, whose mean is not the
    gradient in ``.grad``. One host synchronization, at the first step with
    per-sample statistics. Returns the parameters moved to the replay.
    """
    names = [n for n in params if n not in moved]
    if not names:
        return []
    checks = []
    # A gradient that is zero by symmetry (an attention key's bias) is roundoff on
    # both sides: differences below the roundoff of the whole gradient are no
    # evidence of a missed use.
    norms = [g.norm().to(torch.float64) for g in grads.values()]
    whole = torch.linalg.vector_norm(torch.stack(norms))
    for name in names:
        grad = grads[name]
        floor = 64 * torch.finfo(grad.dtype).eps * whole
        if name in found:
            mean = found[name].grad
            error = torch.linalg.vector_norm(mean - grad)
            scale = torch.linalg.vector_norm(grad) + torch.linalg.vector_norm(mean)
            # Under autocast .grad carries the narrower dtype's rounding.
            tolerance = max(1e-3, 16 * found[name].rounding)
            checks.append(error > tolerance * scale + floor)
        else:
            checks.append(grad.abs().max() > floor)
    flags = torch.stack(checks).tolist()
    wrong = [n for n, bad in zip(names, flags, strict=True) if bad]
    if not wrong:
        return []
    why = (
        "its per-sample gradients from its modules' hooks do not add up to its "
        "gradient in .grad (it is used outside its modules, e.g. "
        "F.linear(h, embedding.weight))"
    )
    if engines.engine == "backpack":
        raise UsageError(
            f"Parameter(s) {', '.join(wrong)}: {why}, so the BackPACK engine's "
            "statistics of them would be wrong. Use engine='auto' or "
            "engine='torch.func'."
        )
    engines.move(wrong, REPLAY, why)
    return wrong
