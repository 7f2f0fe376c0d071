"""``Conv2d`` weights' GGN diagonals on the patch route against autograd and BackPACK.

The patch route (:mod:`cockpit.engines._conv_diag_ggn`) replaces BackPACK's
``F.unfold`` and ``einsum`` at ungrouped, zero-padded ``Conv2d`` weights. In float64
on tiny models of every geometry: the exact GGN diagonal equals the diagonal of the
GGN built from Jacobians (``tests/reference_curvature.py``), and the Monte-Carlo
diagonal equals BackPACK's own on the same sampled labels.
"""

from __future__ import annotations

import copy

import pytest
import torch
from backpack import backpack, extend
from backpack.extensions import DiagGGNExact, DiagGGNMC
from torch import nn

from cockpit.engines import _conv_diag_ggn, layer_stats
from cockpit.engines.curvature import diagonal_extension
from tests import reference_curvature
from tests.engines.conv_cases import CONVOLUTIONS, problem

#: BackPACK backpropagates through every case but ``padding="same"``; it pads with
#: zeros whatever the padding mode, so its diagonal is not the GGN's for "reflect",
#: where the patch route leaves the layer to it (compared with BackPACK below).
#: "groups", "reflect", "conv1d" and "transpose" keep BackPACK's route.
BACKPACK = [c for c in CONVOLUTIONS if c[0] != "same"]
EXACT = [c for c in BACKPACK if c[0] != "reflect"]
OFF_ROUTE = {"groups", "reflect", "conv1d", "transpose"}


def _cases(cases):
    return pytest.mark.parametrize(
        "make_conv, shape", [c[1:] for c in cases], ids=[c[0] for c in cases]
    )


def _backward_input(x):
    """An input that requires grad: BackPACK's module hooks then see every module."""
    return x.detach().requires_grad_()


def _diagonals(model, loss_fn, x, y, extension, seed=0):
    """Every parameter's diagonal after one backward pass with ``extension``.

    On extended copies: BackPACK's hooks would break ``torch.func`` in the reference.
    """
    model, loss_fn = extend(copy.deepcopy(model)), extend(copy.deepcopy(loss_fn))
    torch.manual_seed(seed)  # BackPACK's Monte-Carlo labels
    with backpack(extension):
        loss_fn(model(_backward_input(x)), y).backward()
    return {
        name: getattr(p, extension.savefield).clone()
        for name, p in model.named_parameters()
    }


@pytest.fixture(params=[None, 1], ids=["one-chunk", "chunk-of-1"])
def chunking(request, monkeypatch):
    """Whole batch in one product, or one sample per product."""
    if request.param is not None:
        monkeypatch.setattr(layer_stats, "CHUNK_ELEMENTS", request.param)


@_cases(EXACT)
def test_exact_diagonal_matches_the_ggn_from_jacobians(chunking, make_conv, shape):
    model, loss_fn, x, y = problem(make_conv, shape)
    found = _diagonals(model, loss_fn, x, y, diagonal_extension("ggn_exact"))
    expected = reference_curvature.ggn(model, loss_fn, x, y).diagonal()
    expected = reference_curvature.unflatten(model, expected)
    for name, diagonal in found.items():
        torch.testing.assert_close(diagonal, expected[name].view_as(diagonal))


@_cases(BACKPACK)
@pytest.mark.parametrize("samples", [1, 3])
def test_monte_carlo_diagonal_matches_backpacks(chunking, make_conv, shape, samples):
    """Same sampled labels, so BackPACK's own route is the reference."""
    model, loss_fn, x, y = problem(make_conv, shape)
    patched = diagonal_extension("ggn_mc")
    if samples != 1:
        patched = DiagGGNMC(mc_samples=samples)
        patched.set_module_extension(
            nn.Conv2d, _conv_diag_ggn.PatchDiagGGNConv2d(), overwrite=True
        )
    found = _diagonals(model, loss_fn, x, y, patched, seed=3)
    expected = _diagonals(model, loss_fn, x, y, DiagGGNMC(mc_samples=samples), seed=3)
    assert found.keys() == expected.keys()
    for name, diagonal in found.items():
        torch.testing.assert_close(diagonal, expected[name])


def test_route_taken_where_documented(monkeypatch):
    """Ungrouped zero-padded ``Conv2d`` weights take the patch route, others not."""
    taken = []
    route = _conv_diag_ggn.weight_diagonal

    def record(module, factor):
        taken.append(module)
        return route(module, factor)

    monkeypatch.setattr(_conv_diag_ggn, "weight_diagonal", record)
    for name, make_conv, shape in BACKPACK:
        model, loss_fn, x, y = problem(make_conv, shape)
        taken.clear()
        _diagonals(model, loss_fn, x, y, diagonal_extension("ggn_exact"))
        assert (len(taken) == 1) == (name not in OFF_ROUTE), name


def test_exact_extension_is_backpacks_elsewhere():
    """Only the ``Conv2d`` module extension is replaced."""
    patched = diagonal_extension("ggn_exact")._BackpropExtension__module_extensions
    plain = DiagGGNExact()._BackpropExtension__module_extensions
    assert isinstance(patched[nn.Conv2d], _conv_diag_ggn.PatchDiagGGNConv2d)
    assert {k: type(v) for k, v in patched.items() if k is not nn.Conv2d} == {
        k: type(v) for k, v in plain.items() if k is not nn.Conv2d
    }
