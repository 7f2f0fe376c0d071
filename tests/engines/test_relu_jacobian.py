"""ReLU Jacobians in one fused kernel (float64, tiny models).

:class:`~cockpit.engines._relu_jacobian.FusedReLUDerivatives` must give BackPACK's
``ReLUDerivatives`` values bit for bit (the same mask, a product by 1 or 0), with
several columns, sub-sampled, at exact zeros of the input and through an in-place
ReLU, and the GGN diagonal through it must equal the one from autograd Jacobians.
"""

from __future__ import annotations

import pytest
import torch
from backpack.core.derivatives.relu import ReLUDerivatives
from backpack.extensions import DiagGGNExact, DiagGGNMC, SqrtGGNExact
from torch import nn

from cockpit.engines._derivatives import cheaper_derivatives
from cockpit.engines._relu_jacobian import FusedReLUDerivatives
from cockpit.engines._savefield import module_table
from tests import reference_curvature
from tests.engines.extension_run import run


def relu_module(inplace: bool, shape=(4, 3, 5)) -> nn.ReLU:
    """A ReLU with BackPACK's stored input and output, exact zeros in the input."""
    torch.manual_seed(0)
    x = torch.randn(*shape, dtype=torch.float64)
    x[0, 0, :2] = 0.0
    module = nn.ReLU(inplace=inplace)
    module.input0 = x
    module.output = module(x)
    return module


@pytest.mark.parametrize("inplace", [False, True], ids=["relu", "relu-inplace"])
@pytest.mark.parametrize("subsampling", [None, [0, 2]], ids=["all", "subsampled"])
@pytest.mark.parametrize("columns", [1, 3])
def test_fused_jacobian_equals_backpacks(inplace, subsampling, columns):
    module = relu_module(inplace)
    n = module.input0.shape[0] if subsampling is None else len(subsampling)
    mat = torch.randn(columns, n, *module.input0.shape[1:], dtype=torch.float64)
    expected = ReLUDerivatives().jac_t_mat_prod(
        module, None, None, mat, subsampling=subsampling
    )
    fused = FusedReLUDerivatives().jac_t_mat_prod(
        module, None, None, mat, subsampling=subsampling
    )
    assert torch.equal(fused, expected)
    assert (fused == 0).any() and (fused == mat).any()  # both gates occur


def test_jacobian_is_the_autograd_vjp_of_relu():
    """Against ``torch.func.vjp`` of ``relu`` for each column."""
    module = relu_module(inplace=False)
    x = module.input0
    mat = torch.randn(2, *x.shape, dtype=torch.float64)
    _, vjp = torch.func.vjp(torch.relu, x)
    expected = torch.stack([vjp(column)[0] for column in mat])
    fused = FusedReLUDerivatives().jac_t_mat_prod(module, None, None, mat)
    torch.testing.assert_close(fused, expected, rtol=0, atol=0)


def mlp(inplace: bool) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(6, 5),
        nn.ReLU(inplace=inplace),
        nn.Linear(5, 4),
        nn.ReLU(),
        nn.Linear(4, 3),
    ).double()


def data():
    torch.manual_seed(1)
    return torch.randn(7, 6, dtype=torch.float64), torch.randint(0, 3, (7,))


@pytest.mark.parametrize("inplace", [False, True], ids=["relu", "relu-inplace"])
def test_ggn_diagonal_through_fused_relus_equals_autograds(inplace):
    x, y = data()
    model = mlp(inplace)
    ours = run(model, x, y, DiagGGNExact, cheaper=True)
    ggn = reference_curvature.ggn(mlp(False), nn.CrossEntropyLoss(), x, y)
    expected = reference_curvature.unflatten(model, ggn.diagonal())
    for name, value in expected.items():
        torch.testing.assert_close(ours[name], value, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("inplace", [False, True], ids=["relu", "relu-inplace"])
@pytest.mark.parametrize(
    "make_extension",
    [lambda: DiagGGNMC(mc_samples=2), lambda: SqrtGGNExact(subsampling=[1, 4])],
    ids=["diag_ggn_mc", "sqrt_ggn_exact-subsampled"],
)
def test_extensions_give_backpacks_values_bit_for_bit(inplace, make_extension):
    x, y = data()
    torch.manual_seed(2)
    before = run(mlp(inplace), x, y, make_extension, cheaper=False)
    torch.manual_seed(2)
    after = run(mlp(inplace), x, y, make_extension, cheaper=True)
    for name in before:
        assert torch.equal(after[name], before[name]), name


@pytest.mark.parametrize("make_extension", [DiagGGNExact, DiagGGNMC, SqrtGGNExact])
def test_curvature_extensions_take_the_fused_relu(make_extension):
    extension = cheaper_derivatives(make_extension())
    assert type(module_table(extension)[nn.ReLU].derivatives) is FusedReLUDerivatives
