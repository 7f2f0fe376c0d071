"""The replay's lean routes: autograd's values, gradients and Hessian products, less work.

References: the same model's forward pass and derivatives without the routes (plain
autograd), the exact Hessian from ``torch.autograd.functional.hessian``, and finite
differences (``torch.autograd.gradcheck``) for the hidden convolution's derivative.
"""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from torch import Tensor, nn
from torch.utils._python_dispatch import TorchDispatchMode

from cockpit.engines._lean_double_backward import LeanDoubleBackward, _ConvGrads
from cockpit.engines.hessian import ForwardCapture, hvp_operator
from tests.reference_curvature import hessian


def _cnn() -> nn.Module:
    """Both pooled ReLU convolutions, the first on the data, the second hidden."""
    return nn.Sequential(
        nn.Conv2d(1, 2, 3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(2, 2, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2, stride=1),  # overlapping windows
        nn.Flatten(),
        nn.Linear(2, 3),
    )


def _conv1d() -> nn.Module:
    return nn.Sequential(
        nn.Conv1d(2, 2, 3, stride=2, dilation=2, bias=False),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(2 * 3, 3),
    )


CASES = {"cnn": (_cnn, (3, 1, 7, 7)), "conv1d": (_conv1d, (3, 2, 9))}


def _problem(name: str, dtype: torch.dtype = torch.float64):
    make, shape = CASES[name]
    torch.manual_seed(0)
    model = make().to(dtype)
    x = torch.randn(*shape, dtype=dtype)
    y = torch.randint(0, 3, (shape[0],))
    return model, x, y


def _gradient_graph(model: nn.Module, x: Tensor, y: Tensor, lean: bool):
    """The mean loss, and its gradient with graph, with or without the routes."""
    params = list(model.parameters())
    if lean:
        with LeanDoubleBackward():
            output = model(x)
    else:
        output = model(x)
    loss = nn.functional.cross_entropy(output, y)
    return output, torch.autograd.grad(loss, params, create_graph=True)


def _graph_nodes(output: Tensor) -> set[str]:
    seen, stack, names = set(), [output.grad_fn], set()
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        names.add(type(node).__name__)
        stack.extend(next_fn for next_fn, _ in node.next_functions)
    return names


@pytest.mark.parametrize("name", CASES)
def test_values_and_gradients_are_autograds_bit_for_bit(name):
    model, x, y = _problem(name)
    output, gradient = _gradient_graph(model, x, y, lean=False)
    lean_output, lean_gradient = _gradient_graph(model, x, y, lean=True)
    nodes = _graph_nodes(lean_output)
    assert "_InputConvBackward" in nodes and "_ReluBackward" in nodes
    assert ("_HiddenConvBackward" in nodes) == (name == "cnn")
    assert torch.equal(lean_output, output)
    for lean_g, g in zip(lean_gradient, gradient, strict=True):
        assert torch.equal(lean_g, g)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("name", CASES)
def test_hessian_products_are_autograds_and_exact(name, dtype):
    model, x, y = _problem(name, dtype)
    params = list(model.parameters())
    _, gradient = _gradient_graph(model, x, y, lean=False)
    _, lean_gradient = _gradient_graph(model, x, y, lean=True)
    generator = torch.Generator().manual_seed(1)
    size = sum(p.numel() for p in params)
    vector = torch.randn(size, dtype=dtype, generator=generator)
    product = hvp_operator(gradient, params, 1.0)(vector)
    lean_product = hvp_operator(lean_gradient, params, 1.0)(vector)
    if name == "cnn":  # a hidden convolution: its weight term is rounded differently
        torch.testing.assert_close(lean_product, product)
    else:
        assert torch.equal(lean_product, product)
    if dtype == torch.float64:
        exact = hessian(model, nn.CrossEntropyLoss(), x, y) @ vector
        torch.testing.assert_close(lean_product, exact)


def test_the_replay_takes_the_routes_and_its_products_are_exact():
    model, x, y = _problem("cnn")
    with ForwardCapture(model) as capture:
        model(x)
    params = list(model.parameters())
    output = capture.replay()
    assert {
        "_InputConvBackward",
        "_HiddenConvBackward",
        "_ReluBackward",
        "_MaxPool2dBackward",
    } <= _graph_nodes(output)
    gradient = capture.loss_gradient(
        lambda out: nn.functional.cross_entropy(out, y), params
    )
    vector = torch.randn(sum(p.numel() for p in params), dtype=torch.float64)
    exact = hessian(model, nn.CrossEntropyLoss(), x, y) @ vector
    torch.testing.assert_close(hvp_operator(gradient, params, 1.0)(vector), exact)


class _OpCount(TorchDispatchMode):
    """Counts ATen calls by name while active."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.calls[func.__name__.split(".")[0]] += 1
        return func(*args, **(kwargs or {}))


def _product_calls(lean: bool) -> Counter[str]:
    model, x, y = _problem("cnn")
    params = list(model.parameters())
    _, gradient = _gradient_graph(model, x, y, lean=lean)
    vector = [torch.ones_like(p) for p in params]
    with _OpCount() as count:
        torch.autograd.grad(gradient, params, vector, retain_graph=True)
    return count.calls


def test_a_product_skips_the_input_gradient_and_the_zeros():
    plain, lean = _product_calls(lean=False), _product_calls(lean=True)
    # The first convolution's input gradient, conv_transpose(g_out, v_W), is gone;
    # the hidden one's two terms on transposed tensors are ATen's backward kernels.
    assert lean["convolution"] == plain["convolution"] - 3
    assert lean["convolution_backward"] == plain["convolution_backward"] + 2
    assert lean["transpose"] == 0 < plain["transpose"]
    # No zeros_like for ReLU's and max-pooling's inputs (two of each here).
    assert lean["zeros_like"] + lean["zero_"] + lean["fill_"] < (
        plain["zeros_like"] + plain["zero_"] + plain["fill_"]
    )
    assert sum(lean.values()) < sum(plain.values())


def test_batched_vector_jacobian_products_are_autograds():
    """The batch replay's per-sample rows (``is_grads_batched``) through the routes."""
    model, x, y = _problem("cnn")
    params = list(model.parameters())
    rows = {}
    for lean in (False, True):
        if lean:
            with LeanDoubleBackward():
                output = model(x)
        else:
            output = model(x)
        losses = nn.functional.cross_entropy(output, y, reduction="none")
        cotangents = torch.eye(x.shape[0], dtype=x.dtype)
        rows[lean] = torch.autograd.grad(
            losses, params, cotangents, retain_graph=True, is_grads_batched=True
        )
    for lean_row, row in zip(rows[True], rows[False], strict=True):
        assert torch.equal(lean_row, row)


def test_calls_outside_the_routes_run_unchanged():
    torch.manual_seed(0)
    x = torch.randn(2, 2, 6, 6, dtype=torch.float64)
    conv = nn.Conv2d(2, 2, 3, padding="same").double()
    with LeanDoubleBackward():
        inplace = nn.functional.relu(conv(x), inplace=True)
        pooled, indices = nn.functional.max_pool2d(inplace, 2, return_indices=True)
        leaf = x.clone().requires_grad_()
        frozen = nn.functional.conv2d(leaf, conv.weight.detach())  # no weight grad
    names = _graph_nodes(pooled) | _graph_nodes(frozen)
    routed = {"_InputConvBackward", "_HiddenConvBackward", "_ReluBackward"}
    assert not names & {*routed, "_MaxPool2dBackward"}
    assert torch.equal(pooled, nn.functional.max_pool2d(torch.relu(conv(x)), 2))
    assert indices.dtype == torch.int64


#: Hidden convolutions: (dims, in, out, kernel, stride, padding, dilation, groups, bias).
HIDDEN = [
    (1, 2, 3, 3, 2, 1, 1, 1, True),
    (2, 4, 2, 2, 1, 0, 2, 2, False),
    (3, 2, 2, 2, 1, 1, 1, 1, True),
]


@pytest.mark.parametrize("case", HIDDEN, ids=["conv1d", "conv2d-groups", "conv3d"])
def test_a_hidden_convolutions_derivatives_match_finite_differences(case):
    """The first-order backward as a function of (g_out, x, W), checked numerically.

    ``gradcheck`` compares the backward of :class:`_ConvGrads` (the second derivative
    the products use) with finite differences of its forward (in random directions,
    ``fast_mode``).
    """
    dims, c_in, c_out, kernel, stride, padding, dilation, groups, bias = case
    generator = torch.Generator().manual_seed(0)
    conv = (
        [stride] * dims,
        [padding] * dims,
        [dilation] * dims,
        False,
        [0] * dims,
        groups,
    )
    x = torch.randn(2, c_in, *[4] * dims, dtype=torch.float64, generator=generator)
    w_shape = (c_out, c_in // groups, *[kernel] * dims)
    weight = torch.randn(*w_shape, dtype=torch.float64, generator=generator)
    out = torch.ops.aten.convolution(x, weight, None, *conv)
    grad = torch.randn(out.shape, dtype=torch.float64, generator=generator)
    inputs = tuple(t.requires_grad_() for t in (grad, x, weight))
    bias_shape = [c_out] if bias else None

    def grads(g, x, w):
        return tuple(
            t for t in _ConvGrads.apply(g, x, w, bias_shape, conv) if t is not None
        )

    assert torch.autograd.gradcheck(grads, inputs, fast_mode=True)


@pytest.mark.parametrize("case", HIDDEN, ids=["conv1d", "conv2d-groups", "conv3d"])
def test_hessian_products_through_a_hidden_convolution_are_exact(case):
    dims, c_in, c_out, kernel, stride, padding, dilation, groups, bias = case
    conv_type = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[dims]
    torch.manual_seed(0)
    model = nn.Sequential(
        conv_type(1, c_in, 2),
        nn.Tanh(),  # the hidden convolution's input needs a gradient
        conv_type(c_in, c_out, kernel, stride, padding, dilation, groups, bias),
        nn.ReLU(),
        nn.Flatten(),
        nn.LazyLinear(3),
    ).double()
    x = torch.randn(3, 1, *[5 if dims < 3 else 4] * dims, dtype=torch.float64)
    y = torch.randint(0, 3, (3,))
    model(x)  # materializes the lazy layer
    params = list(model.parameters())
    output, gradient = _gradient_graph(model, x, y, lean=True)
    assert "_HiddenConvBackward" in _graph_nodes(output)
    vector = torch.randn(sum(p.numel() for p in params), dtype=torch.float64)
    exact = hessian(model, nn.CrossEntropyLoss(), x, y) @ vector
    torch.testing.assert_close(hvp_operator(gradient, params, 1.0)(vector), exact)


def test_without_the_hidden_route_products_are_autograds_bit_for_bit():
    model, x, y = _problem("cnn", torch.float32)
    params = list(model.parameters())
    _, gradient = _gradient_graph(model, x, y, lean=False)
    with LeanDoubleBackward(hidden_convolutions=False):
        output = model(x)
    assert "_HiddenConvBackward" not in _graph_nodes(output)
    loss = nn.functional.cross_entropy(output, y)
    lean_gradient = torch.autograd.grad(loss, params, create_graph=True)
    vector = torch.randn(sum(p.numel() for p in params))
    product = hvp_operator(gradient, params, 1.0)(vector)
    assert torch.equal(hvp_operator(lean_gradient, params, 1.0)(vector), product)
