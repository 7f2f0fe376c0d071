"""Which engine computes what: BackPACK where it is fast and sound, torch.func elsewhere.

Decided once when the tracker is created (``engine=``), from the model's structure:

- ``"backpack"``: BackPACK's hooks in the user's backward pass for every parameter;
  a layer type it does not support is refused.
- ``"torch.func"``: the torch.func replay (:mod:`cockpit.engines.func_engine`) for
  every parameter and for curvature.
- ``"auto"`` (default): per parameter, BackPACK if its module is a layer type the
  BackPACK engine supports and the parameter belongs to that module alone; torch.func
  for the rest (other layer types such as LayerNorm or attention, parameters of
  non-leaf modules, parameters shared between modules, modules registered twice).
  Curvature comes from BackPACK only if every parameter is BackPACK's and every
  module and the loss are supported by the due second-order extensions; otherwise
  from torch.func.

What module structure cannot show is checked at the first tracked steps (see
:mod:`cockpit._step`): a module that runs twice in one forward pass, a parameter used
outside its module (``F.linear(h, embedding.weight)``), and a forward pass that is not
a chain of modules move the parameters concerned (or the curvature) to torch.func,
with a line in the log of the ``cockpit`` logger.
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


@dataclass
class Assignment:
    """The engine of every tracked parameter, and of curvature.

    Attributes:
        engine: The user's choice.
        backpack: Parameter names whose per-sample statistics come from BackPACK.
        func: Parameter name -> why torch.func computes its statistics.
        curvature: ``"backpack"`` or ``"torch.func"``: the curvature engine.
        curvature_why: Why torch.func computes curvature (empty for BackPACK).
        owners: Parameter name -> names of the modules that own it.

    """

    engine: str
    backpack: list[str] = field(default_factory=list)
    func: dict[str, str] = field(default_factory=dict)
    curvature: str = "backpack"
    curvature_why: str = ""
    owners: dict[str, list[str]] = field(default_factory=dict)

    def layers(self, model: nn.Module) -> list[nn.Module]:
        """The modules BackPACK hooks for first-order statistics."""
        names = {owner for p in self.backpack for owner in self.owners[p]}
        return [m for name, m in model.named_modules() if name in names]

    def move_to_func(self, names: list[str], why: str) -> None:
        """Hand parameters to torch.func from now on (found at a tracked step)."""
        for name in names:
            if name in self.backpack:
                self.backpack.remove(name)
                self.func[name] = why
        if names:
            LOG.info(
                "cockpit: torch.func from now on for %s: %s", ", ".join(names), why
            )

    def move_curvature(self, why: str) -> None:
        """Compute curvature with torch.func from now on."""
        if self.curvature != "torch.func":
            self.curvature, self.curvature_why = "torch.func", why
            LOG.info("cockpit: curvature by torch.func from now on: %s", why)

    def describe(self) -> str:
        """One line: which parameters each engine handles."""
        parts = []
        if self.backpack:
            parts.append(
                f"BackPACK for {len(self.backpack)} parameters "
                f"({_short(self.backpack)})"
            )
        if self.func:
            reasons = Counter(self.func.values())
            why = "; ".join(
                f"{_short([n for n, r in self.func.items() if r == reason])}: {reason}"
                for reason in reasons
            )
            parts.append(f"torch.func for {len(self.func)} parameters ({why})")
        line = f"cockpit engines (engine={self.engine!r}): " + "; ".join(parts)
        if self.curvature_why:
            line += f"; curvature by torch.func ({self.curvature_why})"
        return line


def _short(names: list[str], keep: int = 4) -> str:
    shown = ", ".join(names[:keep])
    return shown + (f", ... ({len(names) - keep} more)" if len(names) > keep else "")


def _owners(model: nn.Module, params: dict[str, nn.Parameter]) -> dict[str, list[str]]:
    """Parameter name -> every module name that owns it (tying, double registration)."""
    by_id = {id(p): name for name, p in params.items()}
    owners: dict[str, list[str]] = {name: [] for name in params}
    for module_name, module in model.named_modules(remove_duplicate=False):
        for param in module.parameters(recurse=False):
            if id(param) in by_id:
                owners[by_id[id(param)]].append(module_name)
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
    if engine == "torch.func":
        result.func = dict.fromkeys(params, "engine='torch.func'")
        result.curvature, result.curvature_why = "torch.func", "engine='torch.func'"
        return result
    modules = dict(model.named_modules(remove_duplicate=False))
    for name in params:
        module_names = owners[name]
        kind = type(modules[module_names[0]])
        if len(module_names) > 1:
            why = f"shared by modules {', '.join(module_names)}"
        elif kind not in SUPPORTED_LAYERS:
            why = f"{kind.__name__} is not a BackPACK layer"
        else:
            result.backpack.append(name)
            continue
        if engine == "backpack" and needing:
            raise UnsupportedModelError(
                _refusal(name, module_names, kind, why, needing)
            )
        result.func[name] = why
    return result


def _refusal(
    name: str, module_names: list[str], kind: type, why: str, needing: list[str]
) -> str:
    hint = (
        " In training mode BatchNorm mixes samples, so per-sample gradients are not "
        "defined; freeze it or use GroupNorm."
        if issubclass(kind, nn.modules.batchnorm._BatchNorm)
        else ""
    )
    return (
        f"Parameter '{name}' of layer '{module_names[0] or kind.__name__}' "
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


__all__ = ["ENGINES", "LOG", "Assignment", "assign", "choose_curvature"]
