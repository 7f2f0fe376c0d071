"""The scale of the model's input: moments of its elements, taken on the device.

A forward pre-hook on the model reads the first floating-point tensor it is called
with (positional arguments first, then keyword arguments), at the first call of the
tracked block, and keeps ``[3]`` float64 sums ``(count, sum x, sum x^2)`` and
``max |x|`` as device tensors: no host synchronization. Integer inputs (token ids)
have no scale, so nothing is taken from them.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["InputMoments"]


def _first_float(args: tuple, kwargs: dict[str, Any]) -> Tensor | None:
    for value in (*args, *kwargs.values()):
        if isinstance(value, Tensor) and value.is_floating_point():
            return value
    return None


class InputMoments:
    """Context manager: the moments of the model's input during a tracked block.

    Args:
        model: The tracked model.

    Attributes:
        moments: ``[3]`` ``(count, sum x, sum x^2)`` in float64, or ``None`` if the
            model got no floating-point tensor.
        absmax: ``[]`` ``max |x|``, or ``None`` likewise.

    """

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.moments: Tensor | None = None
        self.absmax: Tensor | None = None

    def _take(self, module: nn.Module, args: tuple, kwargs: dict[str, Any]) -> None:
        if self.moments is not None:
            return
        x = _first_float(args, kwargs)
        if x is None:
            return
        with torch.no_grad():
            x = x.detach()
            count = torch.full((), x.numel(), dtype=torch.float64, device=x.device)
            self.moments = torch.stack(
                [count, x.sum(dtype=torch.float64), x.square().sum(dtype=torch.float64)]
            )
            self.absmax = x.abs().amax().double()

    def __enter__(self) -> InputMoments:
        self._handle = self.model.register_forward_pre_hook(
            self._take, with_kwargs=True
        )
        return self

    def __exit__(self, *exc: object) -> None:
        self._handle.remove()

    def states(self) -> dict[str, Tensor]:
        """``input_moments`` and ``input_absmax``, if an input was seen."""
        if self.moments is None or self.absmax is None:
            return {}
        return {"input_moments": self.moments, "input_absmax": self.absmax}
