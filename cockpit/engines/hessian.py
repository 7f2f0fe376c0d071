"""Hessian- and GGN-vector products of the tracked step's mini-batch loss.

The user's ``loss.backward()`` frees the graph and does not build the graph of the
gradient, which Hessian-vector products need. Rather than asking for
``create_graph=True``, the tracker re-runs the forward pass itself on a due step: a
forward pre-hook on the model (:class:`ForwardCapture`) keeps the model's inputs and
the random state at the start of the block; after the block, :func:`hvp_operator`
replays the forward pass with the same random state (the same dropout masks), on
copies of the model's buffers (BatchNorm's running statistics stay as the step left
them), and differentiates
twice. Cost: one forward pass and one backward pass with graph, then one Hessian-vector
product (about two backward passes) per eigensolver iteration. The training's random
stream and buffers end up exactly as without tracking.

One replay per step, shared: every engine of the step that needs the whole batch's
forward pass (the batch replay's per-sample gradients and GGN columns, Hutchinson's
estimator, the eigensolvers) gets the same replayed output from
:meth:`ForwardCapture.replay`, and the consumers of Hessian-vector products
(``hess_max_ev``, Hutchinson's ``hess_trace``) the same gradient graph from
:meth:`ForwardCapture.loss_gradient`; both live until the step's quantities are
finalized (:meth:`ForwardCapture.release`). Everyone differentiates with
``retain_graph=True``, so the graph survives them all.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.hooks import RemovableHandle

from cockpit.engines._lean_double_backward import LeanDoubleBackward
from cockpit.exceptions import UsageError


class ForwardCapture:
    """Forward pre-hook on the model that keeps its first call's inputs in the block."""

    def __init__(self, model: nn.Module):
        self.model = model
        self.args: tuple[Any, ...] | None = None
        self.kwargs: dict[str, Any] = {}
        self.rng: dict[str, Tensor] = {}
        self.output: Any = None
        self._handles: list[RemovableHandle] = []
        self._replayed: Any = None
        self._gradients: dict[tuple[int, ...], tuple[Tensor, ...]] = {}

    def __enter__(self) -> ForwardCapture:
        model = self.model
        self._handles = [
            model.register_forward_pre_hook(self._keep, with_kwargs=True),
            model.register_forward_hook(self._keep_output),
        ]
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()

    def _keep_output(self, module: nn.Module, args: tuple, output: Any) -> None:
        if self.output is None:  # what the model returned (shapes read, not values)
            self.output = output

    def _keep(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        if self.args is not None:
            return  # the loss capture refuses a second forward pass
        self.args, self.kwargs = args, dict(kwargs)
        self.rng = {"cpu": torch.get_rng_state()}
        for device in _cuda_devices(args, kwargs):
            self.rng[str(device)] = torch.cuda.get_rng_state(device)

    def replay(self) -> Any:
        """The model's output on the kept inputs, with the kept random state.

        Replayed at the first call only; later calls (until :meth:`release`) return
        the same output and graph.
        """
        if self._replayed is None:
            self._replayed = self._forward()
        return self._replayed

    def loss_gradient(
        self, loss_of: Callable[[Any], Tensor], params: list[nn.Parameter]
    ) -> tuple[Tensor, ...]:
        """``d L / d theta`` of the replayed batch loss, with graph, built once.

        Args:
            loss_of: The model's output -> the batch loss ``L`` (the step's loss
                module and target: the same for every caller of one step).
            params: The parameters to differentiate (one gradient per parameter
                list, so a second caller with the same list shares the graph).

        """
        key = tuple(id(p) for p in params)
        if key not in self._gradients:
            loss = loss_of(self.replay())
            self._gradients[key] = _vjp(loss, params, None, create_graph=True)
        return self._gradients[key]

    def release(self) -> None:
        """Drop the replayed output and gradients (and so their graphs)."""
        self._replayed = None
        self._gradients = {}

    def _forward(self) -> Any:
        if self.args is None:
            raise UsageError(
                "hess_max_ev re-runs the forward pass, but the model was not called "
                "inside the track() block. Call the model given to Cockpit inside it."
            )
        devices = [torch.device(k) for k in self.rng if k != "cpu"]
        # The forward runs on copies of the buffers: BatchNorm's running statistics
        # move in the copies, and the model's own buffers are never written, so the
        # graph (which saved them) stays valid for the backward passes to come.
        copies = {n: b.clone() for n, b in self.model.named_buffers()}
        # Fused attention kernels (flash, memory-efficient) have no second
        # derivative; Hessian- and GGN-vector products need one, so the replay
        # computes scaled_dot_product_attention with the exact math kernel. ReLU,
        # max-pooling and convolutions take routes whose second derivative skips
        # autograd's zeros and unused input gradients, and forms a hidden
        # convolution's weight term with the faster kernel (_lean_double_backward;
        # values and gradients bit for bit, the products equal to rounding).
        with (
            torch.random.fork_rng(devices=devices),
            torch.enable_grad(),
            sdpa_kernel(SDPBackend.MATH),
            LeanDoubleBackward(),
        ):
            torch.set_rng_state(self.rng["cpu"])
            for device in devices:
                torch.cuda.set_rng_state(self.rng[str(device)], device)
            return functional_call(self.model, copies, self.args, self.kwargs)


def _cuda_devices(args: tuple, kwargs: dict) -> list[torch.device]:
    tensors = [a for a in (*args, *kwargs.values()) if isinstance(a, Tensor)]
    return sorted({t.device for t in tensors if t.is_cuda}, key=str)


def hvp_operator(
    gradient: Sequence[Tensor], params: list[nn.Parameter], scale: float
) -> Callable[[Tensor], Tensor]:
    """``v [D] -> scale * H v [D]`` for the Hessian H of a loss w.r.t. ``params``.

    ``H v`` is the vjp of the gradient ``g = dL/dtheta`` (built with graph) with
    ``v``: one backward pass through the graph of ``g`` (about two of the forward
    pass) per product.

    Args:
        gradient: One tensor per parameter: ``dL/dtheta`` with graph
            (:meth:`ForwardCapture.loss_gradient`; kept until the operator is gone).
        params: The tracked parameters; ``v`` is their flat concatenation.
        scale: ``1`` for a mean-reduced loss, ``1/N`` for a summed one (mean
            convention).

    """

    def hvp(vector: Tensor) -> Tensor:
        return _flat(_vjp(gradient, params, _pieces(vector, params))) * scale

    return hvp


def ggn_operator(
    output: Tensor,
    loss_of: Callable[[Tensor], Tensor],
    params: list[nn.Parameter],
    scale: float,
) -> Callable[[Tensor], Tensor]:
    """``v [D] -> scale * J^T H_z J v [D]``: products with the GGN, matrix-free.

    ``J = dz/dtheta`` is the Jacobian of the loss input ``z`` (``[*Z]``, the whole
    batch) and ``H_z`` the Hessian of ``loss_of`` w.r.t. ``z``. ``J v`` comes from the
    double-vjp trick: ``u -> J^T u`` is linear in ``u``, so its vjp with ``v`` is
    ``J v``; then ``H_z (J v)`` is a Hessian-vector product at ``z`` and ``J^T (.)``
    one more vjp. Building ``J^T u`` with graph costs one backward pass; each product
    about three, and no ``[D, D]`` or ``[Z, D]`` matrix is ever formed.

    Args:
        output: ``z``, the replayed loss input, with graph to ``params``.
        loss_of: ``z -> `` batch loss (the user's loss module and target).
        params: The tracked parameters; ``v`` is their flat concatenation.
        scale: ``1`` for a mean-reduced loss, ``1/N`` for a summed one.

    """
    probe = torch.zeros_like(output, requires_grad=True)
    transposed = _vjp(output, params, probe, create_graph=True)
    leaf = output.detach().requires_grad_()
    with torch.enable_grad():
        (slope,) = _vjp(loss_of(leaf), [leaf], None, create_graph=True)

    def ggn(vector: Tensor) -> Tensor:
        if not slope.requires_grad:  # a loss linear in z (or piecewise): H_z = 0
            return torch.zeros_like(vector)
        (forward,) = _vjp(transposed, [probe], _pieces(vector, params))
        (curved,) = _vjp(slope, [leaf], forward)
        return _flat(_vjp(output, params, curved)) * scale

    return ggn


def _vjp(outputs, inputs: list[Tensor], cotangents, create_graph: bool = False):
    """``autograd.grad`` keeping the graph; unused inputs get zeros."""
    return torch.autograd.grad(
        outputs,
        inputs,
        grad_outputs=cotangents,
        retain_graph=True,
        create_graph=create_graph,
        allow_unused=True,
        materialize_grads=True,
    )


def _pieces(vector: Tensor, params: list[nn.Parameter]) -> list[Tensor]:
    """The flat ``[D]`` vector as one tensor per parameter."""
    sizes = [p.numel() for p in params]
    return [v.view_as(p) for v, p in zip(vector.split(sizes), params, strict=True)]


def _flat(tensors) -> Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])


__all__ = ["ForwardCapture", "ggn_operator", "hvp_operator"]
