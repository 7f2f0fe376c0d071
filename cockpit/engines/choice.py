"""Which engine computes what: BackPACK where it is fast and sound, torch.func elsewhere.

Decided once when the tracker is created (``engine=``), from the model's structure:

- ``"backpack"``: BackPACK's hooks in the user's backward pass for every parameter;
  a layer type it does not support is refused.
- ``"torch.func"``: the torch.func replay (:mod:`cockpit.engines.func_engine`) for
  every parameter and for curvature.
- ``"auto"`` (default), per parameter, the cheapest engine that is sound:

  1. BackPACK, if its module is a layer type the BackPACK engine supports and the
     parameter belongs to that module alone;
  2. torch.func per module (:mod:`cockpit.engines.module_func`), if it belongs to
     leaf modules only: other layer types (LayerNorm, GroupNorm, custom layers) and
     parameters shared between modules (weight tying), from hooks in the user's
     backward pass;
  3. the torch.func replay of the whole model for the rest: parameters of modules
     with submodules (an attention module's projection, a learned position
     embedding that the model adds itself);
  4. the batch replay (:mod:`cockpit.engines.batch_replay`) for recurrent layers
     (``nn.RNN``, ``nn.LSTM``, ``nn.GRU``), which ``vmap`` cannot replay per sample,
     and for every parameter of a model with a BatchNorm layer in training mode
     (:meth:`Assignment.couple`), whose samples are coupled.

  Curvature comes from BackPACK only if every parameter is BackPACK's and every
  module and the loss are supported by the due second-order extensions; otherwise
  from torch.func (:mod:`cockpit.engines.func_engine`).

What module structure cannot show is checked at the tracked steps (see
:mod:`cockpit._step`): a BackPACK layer that runs twice in one forward pass, or that
BackPACK fails on, moves to torch.func per module; at the first step with per-sample statistics, a parameter
whose per-sample gradients do not add up to its gradient in ``.grad`` (used outside
its module, ``F.linear(h, embedding.weight)``) moves to the replay, as does one whose
module's output has no batch dimension; a forward pass that is not a chain of
modules moves curvature. Each move is one line of the ``cockpit`` logger.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field

from backpack.extensions.backprop_extension import BackpropExtension
from torch import nn

from cockpit.engines.backpack_engine import SUPPORTED_LAYERS
from cockpit.engines.curvature import check_supported
from cockpit.exceptions import ConfigurationError, UnsupportedModelError

ENGINES = ("auto", "backpack", "torch.func")

#: The logger of the engine lines (``logging.getLogger("cockpit")``).
LOG = logging.getLogger("cockpit")


#: The engines of per-sample statistics, as the info line and ``meta.json`` name them.
BACKPACK, MODULE, REPLAY = "backpack", "torch.func per module", "torch.func replay"
BATCH = "batch replay"


@dataclass
class Assignment:
    """The engine of every tracked parameter, and of curvature.

    Attributes:
        engine: The user's choice.
        backpack: Parameter names whose per-sample statistics come from BackPACK.
        module: Parameter name -> why its module's own calls, through torch.func,
            give them (:mod:`cockpit.engines.module_func`).
        replay: Parameter name -> why the whole-model torch.func replay gives them
            (:mod:`cockpit.engines.func_engine`).
        batch: Parameter name -> why the batch replay gives them
            (:mod:`cockpit.engines.batch_replay`).
        replay_samples: Samples per step the batch replay differentiates (``None``:
            all), when it computes every parameter: for the gradients and,
            drawn again, for the GGN diagonals.
        curvature: ``"backpack"`` or ``"torch.func"``: the curvature engine.
        curvature_why: Why torch.func computes curvature (empty for BackPACK).
        owners: Parameter name -> ``(module name, attribute)`` of every owner.
        changed: A move happened since the tracker last wrote ``meta.json``.
        verified: The per-sample gradients from hooks were checked once against
            ``.grad`` (:func:`cockpit.engines.moves.layer_stats`).

    """

    engine: str
    backpack: list[str] = field(default_factory=list)
    module: dict[str, str] = field(default_factory=dict)
    replay: dict[str, str] = field(default_factory=dict)
    batch: dict[str, str] = field(default_factory=dict)
    replay_samples: int | None = None
    curvature: str = "backpack"
    curvature_why: str = ""
    owners: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    changed: bool = False
    verified: bool = False

    @property
    def func(self) -> dict[str, str]:
        """Every parameter BackPACK does not handle, and why."""
        return {**self.module, **self.replay, **self.batch}

    def layers(self, model: nn.Module) -> list[nn.Module]:
        """The modules BackPACK hooks for first-order statistics."""
        return [module for _, module in self.named_layers(model)]

    def named_layers(self, model: nn.Module) -> list[tuple[str, nn.Module]]:
        """:meth:`layers` with their names in ``model``."""
        names = {owner for p in self.backpack for owner, _ in self.owners[p]}
        return [(name, m) for name, m in model.named_modules() if name in names]

    def module_owners(self, model: nn.Module) -> dict[nn.Module, list[tuple[str, str]]]:
        """Module -> ``[(tracked name, attribute)]`` for the per-module engine."""
        modules = dict(model.named_modules(remove_duplicate=False))
        owners: dict[nn.Module, list[tuple[str, str]]] = {}
        for name in self.module:
            for module_name, attr in self.owners[name]:
                owners.setdefault(modules[module_name], []).append((name, attr))
        return owners

    def move(self, names: list[str], to: str, why: str) -> None:
        """Hand parameters to another engine from now on (found at a tracked step)."""
        target = self.module if to == MODULE else self.replay
        moved = []
        for name in names:
            if name in self.backpack:
                self.backpack.remove(name)
            elif name in self.module and to == REPLAY:
                del self.module[name]
            else:
                continue
            target[name] = why
            moved.append(name)
        if moved:
            self.changed = True
            LOG.info("cockpit: %s from now on for %s: %s", to, ", ".join(moved), why)

    def couple(self, why: str, announce: bool = True) -> None:
        """Move every parameter and curvature to the batch replay (samples coupled).

        Args:
            why: What couples the samples (said in the engine line and meta.json).
            announce: Log the move and rewrite ``meta.json`` (a move at a step).

        """
        moving = {*self.backpack, *self.module, *self.replay}
        names = [name for name in self.owners if name in moving]  # tracker's order
        self.backpack, self.module, self.replay = [], {}, {}
        self.batch.update(dict.fromkeys(names, why))
        self.verified = True  # rows of the Jacobian add up to .grad by construction
        self.curvature, self.curvature_why = "torch.func", why
        if announce:
            self.changed = True
            LOG.info("cockpit: %s from now on for every parameter: %s", BATCH, why)

    def move_curvature(self, why: str) -> None:
        """Compute curvature with torch.func from now on."""
        if self.curvature != "torch.func":
            self.curvature, self.curvature_why = "torch.func", why
            self.changed = True
            LOG.info("cockpit: curvature by torch.func from now on: %s", why)

    def describe(self) -> str:
        """One line: which parameters each engine handles."""
        parts = []
        if self.backpack:
            parts.append(
                f"BackPACK for {len(self.backpack)} parameters "
                f"({_short(self.backpack)})"
            )
        engines = ((MODULE, self.module), (REPLAY, self.replay), (BATCH, self.batch))
        for label, chosen in engines:
            if chosen:
                reasons = Counter(chosen.values())
                why = "; ".join(
                    f"{_short([n for n, r in chosen.items() if r == reason])}: {reason}"
                    for reason in reasons
                )
                if label == BATCH and self.replay_samples is not None:
                    why += (
                        f"; gradients of {self.replay_samples} random samples per "
                        "step, GGN diagonals of as many, sums scaled by N/M"
                    )
                parts.append(f"{label} for {len(chosen)} parameters ({why})")
        line = f"cockpit engines (engine={self.engine!r}): " + "; ".join(parts)
        if self.curvature_why:
            line += f"; curvature by torch.func ({self.curvature_why})"
        return line

    def as_meta(self) -> dict[str, object]:
        """What ``meta.json`` stores under ``engines`` (``batch replay`` if used)."""
        meta: dict[str, object] = {
            "engine": self.engine,
            BACKPACK: self.backpack,
            MODULE: self.module,
            REPLAY: self.replay,
        }
        if self.batch:
            meta[BATCH] = self.batch
        meta.update(curvature=self.curvature, curvature_why=self.curvature_why)
        return meta


def _short(names: list[str], keep: int = 4) -> str:
    shown = ", ".join(names[:keep])
    return shown + (f", ... ({len(names) - keep} more)" if len(names) > keep else "")


def _owners(
    model: nn.Module, params: dict[str, nn.Parameter]
) -> dict[str, list[tuple[str, str]]]:
    """Parameter name -> every (module name, attribute) that owns it."""
    by_id = {id(p): name for name, p in params.items()}
    owners: dict[str, list[tuple[str, str]]] = {name: [] for name in params}
    for module_name, module in model.named_modules(remove_duplicate=False):
        for attr, param in module.named_parameters(recurse=False):
            if id(param) in by_id:
                owners[by_id[id(param)]].append((module_name, attr))
    return owners


def assign(
    model: nn.Module,
    params: dict[str, nn.Parameter],
    engine: str,
    needing: list[str],
) -> Assignment:
    """Assign every tracked parameter to an engine.

    Args:
        model: The user's model.
        params: The tracked parameters, by name.
        engine: ``"auto"``, ``"backpack"`` or ``"torch.func"``.
        needing: The quantities that need per-sample statistics (for messages).

    Raises:
        ConfigurationError: For an unknown ``engine``.
        UnsupportedModelError: With ``engine="backpack"``, naming a layer BackPACK
            does not support.

    """
    if engine not in ENGINES:
        raise ConfigurationError(
            f"Unknown engine {engine!r}. Choose one of: {', '.join(ENGINES)}."
        )
    owners = _owners(model, params)
    result = Assignment(engine=engine, owners=owners)
    modules = dict(model.named_modules(remove_duplicate=False))
    if engine == "torch.func":
        result.replay = dict.fromkeys(params, "engine='torch.func'")
        result.curvature, result.curvature_why = "torch.func", "engine='torch.func'"
    for name in params:
        module_names = [m for m, _ in owners[name]]
        kinds = {type(modules[m]) for m in module_names}
        kind = type(modules[module_names[0]])
        leaves = all(not list(modules[m].children()) for m in module_names)
        if issubclass(kind, nn.RNNBase) and engine != "backpack":
            result.replay.pop(name, None)
            result.batch[name] = (
                f"{kind.__name__} cannot be replayed per sample by vmap (it updates "
                "its hidden state in place)"
            )
            continue
        if engine == "torch.func":
            continue
        if len(module_names) == 1 and kind in SUPPORTED_LAYERS:
            result.backpack.append(name)
            continue
        if len(module_names) > 1:
            why = f"shared by modules {', '.join(module_names)}"
        else:
            why = f"{kind.__name__} is not a BackPACK layer"
        if engine == "backpack" and needing:
            raise UnsupportedModelError(
                _refusal(name, module_names[0], kind, why, needing)
            )
        if leaves:
            result.module[name] = why
        else:
            names = ", ".join(sorted(k.__name__ for k in kinds))
            result.replay[name] = f"owned by a module with submodules ({names})"
    return result


def _refusal(
    name: str, module_name: str, kind: type, why: str, needing: list[str]
) -> str:
    hint = (
        " In training mode BatchNorm couples the samples, so BackPACK's per-sample "
        "gradients would miss the coupling; engine='auto' computes them through the "
        "whole batch (the batch replay)."
        if issubclass(kind, nn.modules.batchnorm._BatchNorm)
        else ""
    )
    return (
        f"Parameter '{name}' of layer '{module_name or kind.__name__}' "
        f"({kind.__name__}): {why}, and engine='backpack' computes per-sample "
        f"gradients only for unshared parameters of "
        f"{', '.join(c.__name__ for c in SUPPORTED_LAYERS)}; "
        f"{', '.join(needing)} need them.{hint} Use "
        "engine='auto' (torch.func for such layers), drop those quantities "
        "(quantities={name: None}) or freeze this layer."
    )


def choose_curvature(
    assignment: Assignment,
    model: nn.Module,
    loss_fn: nn.Module,
    needs: dict[str, list[BackpropExtension]],
) -> None:
    """Decide the curvature engine for the due second-order extensions ``needs``.

    Raises:
        UnsupportedModelError: With ``engine="backpack"``, if an extension cannot
            handle a module or the loss.

    """
    if not needs or assignment.engine == "torch.func":
        return
    if assignment.engine == "auto" and assignment.func:
        first = next(iter(assignment.func))
        assignment.curvature = "torch.func"
        assignment.curvature_why = (
            f"BackPACK's second-order extensions cannot reach '{first}'"
        )
        return
    try:
        check_supported(model, loss_fn, needs)
    except UnsupportedModelError as error:
        if assignment.engine == "backpack":
            raise
        assignment.curvature = "torch.func"
        assignment.curvature_why = str(error).split(". It supports")[0]


__all__ = [
    "BACKPACK",
    "BATCH",
    "ENGINES",
    "LOG",
    "MODULE",
    "REPLAY",
    "Assignment",
    "assign",
    "choose_curvature",
]
