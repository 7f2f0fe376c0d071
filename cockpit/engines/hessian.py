"""Hessian-vector products of the tracked step's mini-batch loss.

The user's ``loss.backward()`` frees the graph and does not build the graph of the
gradient, which Hessian-vector products need. Rather than asking for
``create_graph=True``, the tracker re-runs the forward pass itself on a due step: a
forward pre-hook on the model (:class:`ForwardCapture`) keeps the model's inputs and
the random state at the start of the block; after the block, :func:`hvp_operator`
replays the forward pass with the same random state (the same dropout masks), restores
the model's buffers afterwards (BatchNorm's running statistics), and differentiates
twice. Cost: one forward pass and one backward pass with graph, then one Hessian-vector
product (about two backward passes) per eigensolver iteration; the extra graph lives
only while the eigensolver runs. The training's random stream and buffers end up
exactly as without tracking.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from cockpit.exceptions import UsageError


class ForwardCapture:
    """Forward pre-hook on the model that keeps its first call's inputs in the block."""

    def __init__(self, model: nn.Module):
        self.model = model
        self.args: tuple[Any, ...] | None = None
        self.kwargs: dict[str, Any] = {}
        self.rng: dict[str, Tensor] = {}
        self._handle: RemovableHandle | None = None

    def __enter__(self) -> ForwardCapture:
        self._handle = self.model.register_forward_pre_hook(
            self._keep, with_kwargs=True
        )
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._handle is not None
        self._handle.remove()

    def _keep(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        if self.args is not None:
            return  # the loss capture refuses a second forward pass
        self.args, self.kwargs = args, dict(kwargs)
        self.rng = {"cpu": torch.get_rng_state()}
        for device in _cuda_devices(args, kwargs):
            self.rng[str(device)] = torch.cuda.get_rng_state(device)

    def replay(self) -> Tensor:
        """The model's output on the kept inputs, with the kept random state."""
        if self.args is None:
            raise UsageError(
                "hess_max_ev re-runs the forward pass, but the model was not called "
                "inside the track() block. Call the model given to Cockpit inside it."
            )
        devices = [torch.device(k) for k in self.rng if k != "cpu"]
        buffers = {n: b.clone() for n, b in self.model.named_buffers()}
        with torch.random.fork_rng(devices=devices), torch.enable_grad():
            torch.set_rng_state(self.rng["cpu"])
            for device in devices:
                torch.cuda.set_rng_state(self.rng[str(device)], device)
            output = self.model(*self.args, **self.kwargs)
        with torch.no_grad():
            for name, buffer in self.model.named_buffers():
                buffer.copy_(buffers[name])
        return output


def _cuda_devices(args: tuple, kwargs: dict) -> list[torch.device]:
    tensors = [a for a in (*args, *kwargs.values()) if isinstance(a, Tensor)]
    return sorted({t.device for t in tensors if t.is_cuda}, key=str)


def hvp_operator(
    loss: Tensor, params: list[nn.Parameter], scale: float
) -> Callable[[Tensor], Tensor]:
    """``v [D] -> scale * H v [D]`` for the Hessian H of ``loss`` w.r.t. ``params``.

    Args:
        loss: The replayed batch loss (its graph is kept until the operator is gone).
        params: The tracked parameters; ``v`` is their flat concatenation.
        scale: ``1`` for a mean-reduced loss, ``1/N`` for a summed one (mean
            convention).

    """
    grads = torch.autograd.grad(
        loss, params, create_graph=True, allow_unused=True, materialize_grads=True
    )
    sizes = [p.numel() for p in params]

    def hvp(vector: Tensor) -> Tensor:
        pieces = [
            v.view_as(p) for v, p in zip(vector.split(sizes), params, strict=True)
        ]
        products = torch.autograd.grad(
            grads,
            params,
            grad_outputs=pieces,
            retain_graph=True,
            allow_unused=True,
            materialize_grads=True,
        )
        return torch.cat([h.reshape(-1) for h in products]) * scale

    return hvp


__all__ = ["ForwardCapture", "hvp_operator"]
