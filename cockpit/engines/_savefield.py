"""Results BackPACK extensions leave on parameters, taken off after the backward."""

from __future__ import annotations

from typing import Any

from torch import nn


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
