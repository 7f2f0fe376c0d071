"""The replay's layers, with a double backward free of work autograd does needlessly.

Hessian-vector products differentiate the gradient's graph (reverse over reverse), so
every first-order backward formula of the replayed forward pass is differentiated once
more by autograd's generic second-order formulas. Three of them do work whose result is
zero or never used:

* ``relu``: the backward ``threshold_backward(g, y)`` is differentiated in ``y`` too,
  into ``zeros_like`` (a step function has derivative 0 almost everywhere); the
  zeros are then added to the real gradient and pulled back through the forward ReLU.
* ``max_pool2d``: the backward ``max_pool2d_with_indices_backward(g, x, ..., idx)`` is
  differentiated in ``x`` into ``zeros_like(x)`` (the indices carry all that depends on
  ``x``), with the same adds downstream.
* a convolution whose input needs no gradient (a network's first layer on the data):
  ``_convolution_double_backward`` computes the input's gradient
  ``conv_transpose(g_out, v_W)`` whenever a weight direction ``v_W`` comes, used or not
  (on 3c3d the first convolution's ``[128, 3, 32, 32]`` transposed convolution, 15 % of
  a product on one CPU thread).

One more is slow rather than needless: for a hidden convolution (input and weight
need gradients) ``_convolution_double_backward`` forms the weight's term
``d<u_x, conv_transpose(g_out, W)>/dW`` as a convolution of the transposed tensors
(batch as channels, ``g_out`` as a kernel the size of the output: on 3c3d's second
layer ``[64, 128, 14, 14]`` by ``[96, 128, 12, 12]``); ATen's weight-gradient kernel
``convolution_backward(g_out, u_x, W)`` computes the same sum in about 60 % of the
CPU time (``benchmarks/hvp_cost.py``). That term then differs from autograd's by float
rounding (the sum runs in another order): the products equal autograd's to rounding,
no longer bit for bit, where a hidden convolution is replayed.

During the replay (:meth:`~cockpit.engines.hessian.ForwardCapture.replay`),
:class:`LeanDoubleBackward` routes these calls to :class:`torch.autograd.Function` s
whose forward and first-order backward call the same ATen kernels as autograd does (the
replay's output and gradient are bit for bit autograd's), and whose backward is built
from operations that are linear in the incoming gradient and hold the rest constant
(``y``, ``x`` and the indices detached), so its derivative is exactly the part that is
not zero: ``threshold_backward(u, y)``, ``max_pool_double_backward(u, idx)`` and
``conv(x, v_W) + v_b``. A hidden convolution's first-order backward is a function of
``(g_out, x, W)`` whose derivative is written out with ATen's kernels (see
:class:`_ConvGrads`). Without hidden convolutions the Hessian-vector products are
those of autograd bit for bit in the tests (float64 and float32), with them equal to
rounding; either way with less work. Calls these routes do not cover (in-place ReLU,
returned indices, string padding, unbatched inputs, frozen weights) run unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor
from torch.autograd import Function
from torch.nn import functional
from torch.overrides import TorchFunctionMode

__all__ = ["LeanDoubleBackward"]

#: ``(stride, padding, dilation, transposed, output_padding, groups)`` of
#: ``aten.convolution``.
ConvArgs = tuple[list[int], list[int], list[int], bool, list[int], int]


class _Relu(Function):
    """``y = relu(x)``; backward ``threshold_backward(g, y)`` with ``y`` held fixed."""

    @staticmethod
    def forward(x: Tensor) -> Tensor:
        return torch.relu(x)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple, output: Tensor) -> None:
        ctx.save_for_backward(output)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        (output,) = ctx.saved_tensors
        return torch.ops.aten.threshold_backward(grad, output.detach(), 0)


class _MaxPool2d(Function):
    """``max_pool2d`` with its indices; backward with the input and indices fixed."""

    @staticmethod
    def forward(x: Tensor, *window: Any) -> tuple[Tensor, Tensor]:
        return torch.ops.aten.max_pool2d_with_indices(x, *window)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple, output: tuple) -> None:
        x, *ctx.window = inputs
        ctx.mark_non_differentiable(output[1])
        ctx.save_for_backward(x, output[1])

    @staticmethod
    def backward(ctx: Any, grad: Tensor, _: Tensor | None) -> tuple:
        x, indices = ctx.saved_tensors
        pulled = torch.ops.aten.max_pool2d_with_indices_backward(
            grad, x.detach(), *ctx.window, indices
        )
        return (pulled, *(None for _ in ctx.window))


def _conv_grads(
    grad: Tensor,
    x: Tensor,
    weight: Tensor,
    bias: Sequence[int] | None,
    args: ConvArgs,
    input_grad: bool,
) -> tuple[Tensor | None, Tensor, Tensor | None]:
    """``dL/dx`` (if ``input_grad``), ``dL/dW``, ``dL/db``: autograd's kernel call."""
    mask = [input_grad, True, bias is not None]
    x_grad, weight_grad, bias_grad = torch.ops.aten.convolution_backward(
        grad, x, weight, bias, *args, mask
    )
    return x_grad, weight_grad, bias_grad


class _WeightGrads(Function):
    """``g_out -> (dL/dW, dL/db)``, linear in ``g_out`` with the input ``x`` fixed.

    Its backward is ``(v_W, v_b) -> conv(x, v_W) + v_b`` ``[N, C_out, *S]``, the one
    term of ``_convolution_double_backward`` an input without gradient needs.
    """

    @staticmethod
    def forward(
        grad: Tensor,
        x: Tensor,
        weight: Tensor,
        bias: Sequence[int] | None,
        args: ConvArgs,
    ) -> tuple[Tensor, Tensor | None]:
        return _conv_grads(grad, x, weight, bias, args, False)[1:]

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple, output: tuple) -> None:
        _, x, _, _, ctx.args = inputs
        ctx.save_for_backward(x)

    @staticmethod
    def backward(ctx: Any, weight_dir: Tensor, bias_dir: Tensor | None) -> tuple:
        (x,) = ctx.saved_tensors
        pushed = torch.ops.aten.convolution(x, weight_dir, None, *ctx.args)
        if bias_dir is not None:
            pushed = pushed + bias_dir.reshape(1, -1, *([1] * (pushed.dim() - 2)))
        return pushed, None, None, None, None


class _Conv(Function):
    """``aten.convolution`` (autograd's forward kernel), saving ``x`` and ``W``."""

    @staticmethod
    def forward(x: Tensor, weight: Tensor, bias: Tensor | None, args: ConvArgs):
        return torch.ops.aten.convolution(x, weight, bias, *args)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple, output: Tensor) -> None:
        x, weight, bias, ctx.args = inputs
        ctx.bias = None if bias is None else list(bias.shape)
        ctx.save_for_backward(x, weight)


class _InputConv(_Conv):
    """A convolution of an input that needs no gradient (only ``W`` and ``b`` do)."""

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple:
        x, weight = ctx.saved_tensors
        x, weight = x.detach(), weight.detach()
        if torch.is_grad_enabled():  # create_graph: keep the lean second derivative
            weight_grad, bias_grad = _WeightGrads.apply(
                grad, x, weight, ctx.bias, ctx.args
            )
        else:
            weight_grad, bias_grad = _conv_grads(
                grad, x, weight, ctx.bias, ctx.args, False
            )[1:]
        return None, weight_grad, bias_grad, None


class _ConvGrads(Function):
    """``(g_out, x, W) -> (dL/dx, dL/dW, dL/db)`` of a hidden convolution.

    ``dL/dx = conv_transpose(g_out, W)`` ``[N, C_in, *S_in]``, ``dL/dW`` the
    correlation of ``x`` with ``g_out`` ``[C_out, C_in / groups, *K]``, ``dL/db`` the
    sum of ``g_out`` over samples and positions ``[C_out]``. Its backward takes
    directions ``(u_x, u_W, u_b)`` of the three to

    - ``g_out``: ``conv(u_x, W) + conv(x, u_W) + u_b`` ``[N, C_out, *S_out]``;
    - ``x``: ``conv_transpose(g_out, u_W)``, ATen's input-gradient kernel;
    - ``W``: the correlation of ``u_x`` with ``g_out``, ATen's weight-gradient kernel
      (autograd's double backward forms it by a slower convolution of the transposed
      tensors; the same sum, rounded in another order).
    """

    @staticmethod
    def forward(*inputs: Any) -> tuple[Tensor, Tensor, Tensor | None]:
        """``inputs``: ``(g_out, x, W, bias shape or None, ConvArgs)``."""
        return _conv_grads(*inputs, input_grad=True)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple, output: tuple) -> None:
        grad, x, weight, _, ctx.args = inputs
        ctx.save_for_backward(grad, x, weight)
        ctx.set_materialize_grads(False)

    @staticmethod
    def backward(
        ctx: Any,
        x_dir: Tensor | None,
        weight_dir: Tensor | None,
        bias_dir: Tensor | None,
    ) -> tuple:
        grad, x, weight = ctx.saved_tensors
        convolution_backward = torch.ops.aten.convolution_backward
        pushed = x_pulled = weight_pulled = None
        if x_dir is not None:
            pushed = torch.ops.aten.convolution(x_dir, weight, None, *ctx.args)
            weight_pulled = convolution_backward(
                grad, x_dir, weight, None, *ctx.args, [False, True, False]
            )[1]
        if weight_dir is not None:
            pushed_w = torch.ops.aten.convolution(x, weight_dir, None, *ctx.args)
            pushed = pushed_w if pushed is None else pushed + pushed_w
            x_pulled = convolution_backward(
                grad, x, weight_dir, None, *ctx.args, [True, False, False]
            )[0]
        if bias_dir is not None:
            shaped = bias_dir.reshape(1, -1, *([1] * (grad.dim() - 2)))
            pushed = shaped.expand_as(grad) if pushed is None else pushed + shaped
        return pushed, x_pulled, weight_pulled, None, None


class _HiddenConv(_Conv):
    """A convolution whose input and weight need gradients (a hidden layer)."""

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple:
        x, weight = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph: keep the lean second derivative
            grads = _ConvGrads.apply(grad, x, weight, ctx.bias, ctx.args)
        else:
            grads = _conv_grads(grad, x, weight, ctx.bias, ctx.args, True)
        return (*grads, None)


def _tuple(value: int | Sequence[int], n: int) -> list[int]:
    return [value] * n if isinstance(value, int) else list(value)


def _argument(args: tuple, kwargs: dict, index: int, name: str, default: Any) -> Any:
    return args[index] if len(args) > index else kwargs.get(name, default)


def _relu(args: tuple, kwargs: dict) -> Tensor | None:
    inplace = _argument(args, kwargs, 1, "inplace", False)
    if inplace or not args[0].requires_grad:
        return None
    return _Relu.apply(args[0])


def _max_pool2d(args: tuple, kwargs: dict) -> Tensor | None:
    x = args[0]
    if _argument(args, kwargs, 6, "return_indices", False) or x.dim() != 4:
        return None
    if not x.requires_grad:
        return None
    kernel = _tuple(_argument(args, kwargs, 1, "kernel_size", None), 2)
    stride = _argument(args, kwargs, 2, "stride", None)
    stride = kernel if not stride else _tuple(stride, 2)
    padding = _tuple(_argument(args, kwargs, 3, "padding", 0), 2)
    dilation = _tuple(_argument(args, kwargs, 4, "dilation", 1), 2)
    ceil_mode = bool(_argument(args, kwargs, 5, "ceil_mode", False))
    return _MaxPool2d.apply(x, kernel, stride, padding, dilation, ceil_mode)[0]


def _convolution(dims: int, hidden: bool) -> Callable[[tuple, dict], Tensor | None]:
    """The route of ``conv{dims}d``; a hidden convolution's only if ``hidden``."""

    def route(args: tuple, kwargs: dict) -> Tensor | None:
        x, weight = args[0], _argument(args, kwargs, 1, "weight", None)
        bias = _argument(args, kwargs, 2, "bias", None)
        padding = _argument(args, kwargs, 4, "padding", 0)
        plain = isinstance(padding, str) or x.dim() != dims + 2
        if plain or not weight.requires_grad:
            return None
        conv: ConvArgs = (
            _tuple(_argument(args, kwargs, 3, "stride", 1), dims),
            _tuple(padding, dims),
            _tuple(_argument(args, kwargs, 5, "dilation", 1), dims),
            False,
            [0] * dims,
            _argument(args, kwargs, 6, "groups", 1),
        )
        if x.requires_grad:
            return _HiddenConv.apply(x, weight, bias, conv) if hidden else None
        return _InputConv.apply(x, weight, bias, conv)

    return route


#: Functional call -> its lean route, which returns ``None`` where it does not apply.
_ROUTES: dict[Callable, Callable[[tuple, dict], Tensor | None]] = {
    functional.relu: _relu,
    torch.relu: _relu,
    functional.max_pool2d: _max_pool2d,
    functional.conv1d: _convolution(1, hidden=True),
    functional.conv2d: _convolution(2, hidden=True),
    functional.conv3d: _convolution(3, hidden=True),
}

#: The routes with hidden convolutions left to autograd (for A/B timings).
_ROUTES_BUT_HIDDEN = {
    **_ROUTES,
    functional.conv1d: _convolution(1, hidden=False),
    functional.conv2d: _convolution(2, hidden=False),
    functional.conv3d: _convolution(3, hidden=False),
}


class LeanDoubleBackward(TorchFunctionMode):
    """Inside it, ReLU, 2d max-pooling and convolutions take the lean routes.

    Only while grad mode is on (the replay's forward pass); the values and the graph's
    first-order gradients equal autograd's bit for bit, its second derivatives to
    rounding (module docstring).

    Args:
        hidden_convolutions: Route hidden convolutions too (``False``: autograd's
            double backward for them, bit for bit; ``benchmarks/hvp_cost.py`` times
            both).

    """

    def __init__(self, hidden_convolutions: bool = True) -> None:
        super().__init__()
        self._routes = _ROUTES if hidden_convolutions else _ROUTES_BUT_HIDDEN

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        route = self._routes.get(func)
        if route is not None and torch.is_grad_enabled():
            routed = route(args, kwargs)
            if routed is not None:
                return routed
        return func(*args, **kwargs)
