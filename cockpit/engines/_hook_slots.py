"""What entering a tracked block costs per hooked module: found once, installed fast.

Two pieces of work per module ran at every tracked block, and neither depends on the
step:

- **Finding the modules** (:class:`HookTargets`): the modules whose parameters
  BackPACK's first-order hooks serve, by name (``Assignment.layers``), walked the
  whole module tree. They are kept with the edges ``(parent, attribute, child)``
  from the model down to each of them, and found again only when the engines'
  BackPACK parameters change (a move at a step) or an edge no longer holds (a
  submodule on the way was replaced): one identity check per edge, and the same
  modules as a fresh walk.
- **Installing the forward hooks** (:class:`HookSlots`):
  ``register_forward_hook`` makes a ``RemovableHandle`` each time (weak references
  to three dicts, a generator), about 2 microseconds per module on a CPU. The first
  block registers; later blocks put their hook back into the module's forward-hook
  dict under the handle's id (what ``register_forward_hook`` does after making the
  handle), and every block removes it with ``handle.remove()`` as it closes, so no
  hook stays on the model between tracked blocks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from torch import nn
from torch.utils.hooks import RemovableHandle

if TYPE_CHECKING:  # choice imports the engines, which import this module
    from cockpit.engines.choice import Assignment

__all__ = ["HookSlots", "HookTargets"]

ForwardHook = Callable[[nn.Module, tuple, object], object]


class HookSlots:
    """A kept handle per module: its forward hook goes in and out under one id."""

    def __init__(self) -> None:
        self._handles: dict[nn.Module, RemovableHandle] = {}

    def install(self, module: nn.Module, hook: ForwardHook) -> RemovableHandle:
        """Add ``hook`` as the last of ``module``'s forward hooks; remove by handle.

        Re-registers if the module's hook dict is not the one the handle was made
        for (a module whose hooks were replaced wholesale, say by a copy).
        """
        handle = self._handles.get(module)
        hooks = module._forward_hooks
        if handle is None or handle.hooks_dict_ref() is not hooks:
            handle = self._handles[module] = module.register_forward_hook(hook)
            return handle
        hooks[handle.id] = hook
        return handle

    def forget(self, modules: set[nn.Module]) -> None:
        """Drop the handles of ``modules`` (no longer hooked: not kept alive here)."""
        for module in modules:
            self._handles.pop(module, None)


class HookTargets:
    """The modules BackPACK's first-order hooks serve, found again only on change.

    Args:
        slots: Where their hooks' handles are kept: the handles of modules no longer
            served are dropped when the modules are found again.

    """

    def __init__(self, slots: HookSlots) -> None:
        self.slots = slots
        self._names: list[str] | None = None
        self._model: nn.Module | None = None
        self._modules: list[nn.Module] = []
        self._edges: list[tuple[dict[str, nn.Module | None], str, nn.Module]] = []

    def layers(self, engines: Assignment, model: nn.Module) -> list[nn.Module]:
        """``engines.layers(model)``, from the kept list while nothing changed."""
        if (
            model is not self._model
            or engines.backpack != self._names
            or not all([parent.get(key) is child for parent, key, child in self._edges])
        ):
            self._find(engines, model)
        return self._modules

    def _find(self, engines: Assignment, model: nn.Module) -> None:
        named = engines.named_layers(model)
        edges = {}
        for name, _ in named:
            module = model
            for key in name.split(".") if name else []:
                child = module._modules[key]
                assert child is not None, f"{name} resolved through a None module"
                edges[id(module), key] = (module._modules, key, child)
                module = child
        self._model, self._names = model, list(engines.backpack)
        modules = [module for _, module in named]
        self.slots.forget(set(self._modules) - set(modules))
        self._modules = modules
        self._edges = list(edges.values())
