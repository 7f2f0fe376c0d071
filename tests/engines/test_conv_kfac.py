"""KFAC's ``Conv2d`` input factor on the patch route against ``F.unfold``, in float64.

``A = (1/N) sum_n unfold(x_n) unfold(x_n)^T`` on every 2D geometry of
``tests/engines/conv_cases.py`` (stride, padding, "same", dilation); off the patch
route (grouped, reflected padding) BackPACK's own factor is kept.
"""

from __future__ import annotations

import pytest
import torch
from backpack.extensions import KFAC
from backpack.extensions.secondorder.hbp.conv2d import HBPConv2d
from torch import nn

from cockpit.engines._conv_kfac import PatchKFACConv2d, symmetric_product
from cockpit.engines.curvature import kronecker_extension
from tests.engines.conv_cases import CONVOLUTIONS, N

CONV2D = [c for c in CONVOLUTIONS if c[0] not in ("conv1d", "transpose")]


def unfolded_covariance(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """The reference: ``F.unfold`` of the zero-padded input, one sample at a time."""
    padded = nn.functional.pad(x, conv._reversed_padding_repeated_twice)
    total = 0
    for sample in padded:
        columns = nn.functional.unfold(
            sample.unsqueeze(0), conv.kernel_size, conv.dilation, 0, conv.stride
        )[0]
        total = total + columns @ columns.T
    return total / x.shape[0]


@pytest.mark.parametrize(
    "make_conv, shape", [c[1:] for c in CONV2D], ids=[c[0] for c in CONV2D]
)
def test_input_factor(make_conv, shape):
    torch.manual_seed(0)
    conv = make_conv().double()
    conv.input0 = torch.randn(N, *shape, dtype=torch.float64)
    ext = KFAC()
    (got,) = PatchKFACConv2d()._factors_from_input(ext, conv)
    if conv.groups == 1 and conv.padding_mode == "zeros":
        expected = unfolded_covariance(conv, conv.input0)
    else:  # off the patch route: BackPACK's factor, untouched
        expected = HBPConv2d()._factors_from_input(ext, conv)[0]
    torch.testing.assert_close(got, expected)


@pytest.mark.parametrize("rows", [1, 5, 7, 12])
def test_symmetric_product_in_blocks(rows):
    matrix = torch.randn(rows, 9, dtype=torch.float64)
    for block_rows in (1, 2, 3, 100):
        got = symmetric_product(matrix, block_rows)
        torch.testing.assert_close(got, matrix @ matrix.T)


def test_kronecker_extensions_take_the_patch_route():
    for name in ("kfac", "kflr"):
        modules = kronecker_extension(name)._BackpropExtension__module_extensions
        assert isinstance(modules[nn.Conv2d], PatchKFACConv2d)
