"""Checks and choices made once, when a :class:`~cockpit.Cockpit` is created.

Every failure here is a :class:`~cockpit.exceptions.CockpitError` whose message says
what was expected, what came, and how to fix it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn

from cockpit._budget import DEFAULT_BUDGET, BudgetControl, check_budget
from cockpit._distributed import Ranks
from cockpit._sharded import Sharding, fsdp_kind
from cockpit.catalog import ENTRIES, PRESET_NAMES
from cockpit.engines.curvature import CurvatureRequest
from cockpit.exceptions import ConfigurationError
from cockpit.quantities import PRESETS, REGISTRY, Quantity


def _unknown(kind: str, name: object, valid: Iterable[str]) -> ConfigurationError:
    return ConfigurationError(
        f"Unknown {kind} {name!r}. Choose one of: {', '.join(sorted(valid))}."
    )


def resolve_quantities(
    preset: str | None, quantities: Mapping[str, object] | Iterable[str] | None
) -> dict[str, Quantity]:
    """The quantities to track: the preset's, then the user's overrides.

    ``quantities`` maps a log key to a schedule (``every(k)``, an int k, a callable),
    a configured :class:`Quantity` instance, or ``None`` to drop a preset's quantity;
    a plain list of keys means every step.
    """
    if preset is not None and preset not in PRESETS:
        raise _unknown("preset", preset, PRESETS)
    defaults = PRESETS[preset] if preset else {}
    chosen: dict[str, Quantity] = {
        name: REGISTRY[name](every_k) for name, every_k in defaults.items()
    }
    if quantities is None:
        return chosen
    if not isinstance(quantities, Mapping):
        quantities = dict.fromkeys(quantities, 1)
    for name, spec in quantities.items():
        if name not in REGISTRY:
            raise _unknown("quantity", name, REGISTRY)
        if spec is None:
            chosen.pop(name, None)
        elif isinstance(spec, Quantity):
            if spec.name != name:
                raise ConfigurationError(
                    f"quantities[{name!r}] holds a {type(spec).__name__}, which logs "
                    f"'{spec.name}'. Use the key '{spec.name}' for it."
                )
            chosen[name] = spec
        else:
            chosen[name] = REGISTRY[name](spec)
    if not chosen:
        raise ConfigurationError(
            f"Nothing to track: preset={preset!r} and quantities={quantities!r} "
            "select no quantity. Pass preset='economy' or name quantities."
        )
    return chosen


def default_tracking(
    preset: str | None,
    quantities: object,
    budget: object,
    ranks: int = 1,
    sharded: bool = False,
) -> tuple[str | None, float | None]:
    """The preset and budget to use: the economy preset under a 5 % budget by default.

    Given neither a preset nor quantities, the tracker follows the economy preset's
    quantities under ``budget`` (default :data:`~cockpit._budget.DEFAULT_BUDGET`).
    Otherwise the preset and schedules keep their meaning, under ``budget`` if given.
    A step split across ``ranks > 1`` processes has no budget: each rank would plan
    from its own timings, and ranks tracking different quantities at a step would
    wait on each other's collectives. The default there is the plain economy preset;
    with ``sharded`` parameters (FSDP) it is ``full``, of which only the quantities
    that need reductions alone are tracked, all of them at every step (they cost a
    few norms of the rank's shards), the others being absent with the reason.
    """
    if ranks > 1 or sharded:
        if budget is not None:
            raise ConfigurationError(
                f"budget={budget!r} cannot be kept across {ranks} processes: each "
                "would plan from its own timings and their collectives would no "
                "longer match. Pass a preset or schedules instead (e.g. "
                "preset='economy', quantities={'alpha': cockpit.every(10)})."
            )
        default = "full" if sharded else "economy"
        return preset or (default if quantities is None else None), None
    if preset is None and quantities is None:
        return "economy", check_budget(DEFAULT_BUDGET if budget is None else budget)
    return preset, None if budget is None else check_budget(budget)


def budget_control(
    chosen: Mapping[str, Quantity],
    quantities: Mapping[str, object] | Iterable[str] | None,
    budget: float,
) -> BudgetControl:
    """The control planning the quantities that have no schedule of the user's.

    A quantity named in a ``quantities`` mapping with an int or callable keeps that
    schedule; the preset's, a list's and configured instances are budgeted, and their
    schedules are replaced by the control's.
    """
    fixed = set()
    if isinstance(quantities, Mapping):
        fixed = {n for n, s in quantities.items() if not isinstance(s, Quantity)}
    uses = engine_uses({n: q for n, q in chosen.items() if n not in fixed})
    ranks = {
        name: PRESET_NAMES.index(ENTRIES[name].preset)
        if ENTRIES[name].preset
        else len(PRESET_NAMES)
        for name in uses
    }
    control = BudgetControl(budget, uses, ranks)
    for name in uses:
        chosen[name].schedule = control.schedule(name)
    return control


def engine_uses(chosen: Mapping[str, Quantity]) -> dict[str, frozenset[str]]:
    """Quantity -> the engines whose work it shares: ``per_sample``, ``curvature``."""
    curvature = curvature_needs(chosen)
    return {
        name: frozenset({"per_sample"} if q.needs_per_sample else set())
        | frozenset({"curvature"} if name in curvature else set())
        for name, q in chosen.items()
    }


def check_loss(loss_fn: object) -> bool:
    """Validate the loss module; return whether it averages over samples."""
    reduction = getattr(loss_fn, "reduction", None)
    if not isinstance(loss_fn, nn.Module) or reduction is None:
        raise ConfigurationError(
            "loss_fn must be a torch loss module with a 'reduction' (for example "
            f"torch.nn.CrossEntropyLoss()), got {type(loss_fn).__name__}. The tracker "
            "reads the per-sample losses from the module's inputs."
        )
    if reduction not in ("mean", "sum"):
        raise ConfigurationError(
            f"loss_fn has reduction={reduction!r}, but the tracker needs the scalar "
            "batch loss that backward() runs on. Use reduction='mean' or 'sum'."
        )
    if reduction == "mean" and getattr(loss_fn, "weight", None) is not None:
        raise ConfigurationError(
            f"{type(loss_fn).__name__} with class weights and reduction='mean' "
            "averages with weights, not over samples, so per-sample losses are not "
            "defined. Use reduction='sum' or drop 'weight'."
        )
    return reduction == "mean"


def check_grad_scaler(scaler: object) -> None:
    """Refuse a ``grad_scaler`` that is not a ``torch.amp.GradScaler`` (or ``None``)."""
    if scaler is None or isinstance(scaler, torch.amp.GradScaler):
        return
    raise ConfigurationError(
        "grad_scaler must be the torch.amp.GradScaler (or torch.cuda.amp.GradScaler) "
        f"whose scale(loss) is backpropagated, got {type(scaler).__name__}. Pass "
        "grad_scaler=scaler, or leave it out if the loss is not scaled."
    )


def check_replay_samples(samples: object) -> None:
    """Refuse a ``replay_samples`` that is not ``None`` or an int >= 1."""
    if samples is None or (
        isinstance(samples, int) and not isinstance(samples, bool) and samples >= 1
    ):
        return
    raise ConfigurationError(
        "replay_samples must be None (every sample) or an int >= 1, the number of "
        "samples per step whose gradients the batch replay computes, got "
        f"{samples!r}. Pass e.g. replay_samples=8, no more than the batch size."
    )


def trainable_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """Parameters that require grad, by qualified name; frozen ones are not tracked."""
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    if not params:
        raise ConfigurationError(
            f"None of the {sum(1 for _ in model.parameters())} parameters of "
            f"{type(model).__name__} requires grad, so there is no training to track. "
            "Set requires_grad=True on the parameters you train."
        )
    return params


def curvature_needs(quantities: Mapping[str, Quantity]) -> dict[str, list]:
    """Quantity name -> the BackPACK extensions its curvature needs (if any).

    Raises:
        ConfigurationError: If two quantities ask for conflicting GGN factors.

    """
    needs, combined = {}, CurvatureRequest()
    for name, quantity in quantities.items():
        request = CurvatureRequest()
        quantity.amend_curvature(request)
        quantity.amend_curvature(combined)  # refuses conflicting GGN factors now
        if request:
            needs[name] = request.extensions(lambda: 1)
    return needs


def plain_sgd_lr(optimizer: torch.optim.Optimizer) -> tuple[float | None, str]:
    """The learning rate if ``optimizer`` is plain SGD, else ``None`` and why not."""
    if type(optimizer) is not torch.optim.SGD:
        return None, f"the optimizer is {type(optimizer).__name__}, not plain SGD"
    lrs = {group["lr"] for group in optimizer.param_groups}
    for key in ("momentum", "weight_decay"):
        if any(group.get(key, 0) for group in optimizer.param_groups):
            return None, f"SGD uses {key}, so its step is not the plain gradient step"
    if len(lrs) != 1:
        return None, "SGD has parameter groups with different learning rates"
    return lrs.pop(), ""


def distributed(model: nn.Module, process_group: Any) -> tuple[nn.Module, Ranks | None]:
    """The model to track and the ranks that share its steps.

    A ``DistributedDataParallel`` model is tracked through its ``module`` (hooks and
    replays must not run DDP's reducer), on its process group unless one is given.
    A ``fully_shard`` (FSDP2) model is tracked as it is, on its device mesh's group,
    for the quantities that need only reductions (:mod:`cockpit._sharded`); FSDP1
    is refused.

    Raises:
        ConfigurationError: For an FSDP1 model or a sharding the tracker cannot
            read (:meth:`~cockpit._sharded.Sharding.of`), or a group without
            ``torch.distributed`` initialized.

    """
    if fsdp_kind(model) is not None:
        sharding = Sharding.of(model, process_group)
        return model, Ranks(sharding.group, sharding=sharding)
    if isinstance(model, nn.parallel.DistributedDataParallel):
        group = process_group if process_group is not None else model.process_group
        averages = group is model.process_group  # DDP's .grad: over these ranks
        return model.module, Ranks(group, model if averages else None)
    return model, None if process_group is None else Ranks(process_group)
