"""BackPACK extensions' results on the parameters, and their module tables."""

from __future__ import annotations

from typing import Any

from backpack.extensions.backprop_extension import BackpropExtension
from backpack.extensions.module_extension import ModuleExtension
from torch import nn


def module_table(extension: BackpropExtension) -> dict[type, ModuleExtension]:
    """``extension``'s module type -> module extension table, in place.

    BackPACK keeps it private (``set_module_extension`` only adds); reading and
    rewriting it here is the one place that depends on its name.
    """
    return extension._BackpropExtension__module_extensions


def take(params: dict[str, nn.Parameter], savefield: str) -> dict[str, Any]:
    """``{name: param.<savefield>}`` for the parameters that have one; removes them.

    A parameter the backward pass did not reach has none and is left out.
    """
    found = {}
    for name, param in params.items():
        value = getattr(param, savefield, None)
        if value is not None:
            found[name] = value
            delattr(param, savefield)
    return found
