"""Layers of equal shapes reduced together: the same statistics as layer by layer.

A deep MLP of equal widths puts many ``Linear`` layers into one batched reduction
(:func:`~cockpit.engines._linear_factors.from_linear_factor_groups`) and the
per-layer quantities into one formula call over stacked rows; both are checked
against brute-force per-sample gradients from ``torch.func``.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from cockpit import _flat_buffers
from cockpit.engines._linear_factors import (
    Factors,
    from_linear_factor_groups,
    project_layers,
)
from cockpit.engines._sample_request import GroupLayout, field_views, stacked_field
from cockpit.engines.layer_stats import SampleRequest
from cockpit.stats import gradient_tests
from cockpit.stats.batch_size import gradient_noise_scale
from cockpit.stats.moments import moments
from tests import reference
from tests.problems import Problem
from tests.quantities import test_gradient_noise_scale as noise_scale_tests
from tests.quantities.tracking import check_per_layer_reference
from tests.test_cost_per_layer import _Operations


def _deep_mlp() -> nn.Module:
    """Four hidden ``Linear(5, 5)`` layers: two groups of equal shapes (4 weights,
    4 biases) next to the input and output layers."""
    layers: list[nn.Module] = [nn.Linear(4, 5), nn.Tanh()]
    for _ in range(4):
        layers += [nn.Linear(5, 5), nn.Tanh()]
    return nn.Sequential(*layers, nn.Linear(5, 3))


DEEP = Problem("deep-mlp-ce-mean", _deep_mlp, nn.CrossEntropyLoss, (4,), 3)


@pytest.mark.parametrize(
    "name",
    [
        "norm_test",
        "inner_product_test",
        "orthogonality_test",
        "mean_gsnr",
    ],
)
def test_grouped_layers_match_brute_force(tmp_path, name):
    check_per_layer_reference(DEEP, tmp_path, name, together=False)


def test_grouped_noise_scale_matches_brute_force(tmp_path):
    # Its test flags the layers whose G2 <= 0 (logged as non-finite) itself.
    noise_scale_tests.test_noise_scale_total_and_per_layer(DEEP, tmp_path, False)


def test_grouped_layers_with_every_quantity(tmp_path):
    check_per_layer_reference(DEEP, tmp_path, "mean_gsnr", together=True)


def _factors(shapes, n, gen, scale=1):
    """Random float64 factors, and their per-sample gradients ``[N, out * in]``.

    The factors arrive with ``scale`` still to apply (as BackPACK's do). A shape
    ``(out, None)`` is a bias: its factors hold no input, its per-sample gradients
    are ``delta_n``.
    """
    factors, per_sample = [], []
    for d_out, d_in in shapes:
        delta = torch.randn(n, d_out, generator=gen, dtype=torch.float64)
        if d_in is None:
            param = torch.randn(d_out, generator=gen, dtype=torch.float64)
            factors.append(Factors(delta, None, param, scale=scale))
            per_sample.append(delta * scale)
            continue
        x = torch.randn(n, d_in, generator=gen, dtype=torch.float64)
        param = torch.randn(d_out, d_in, generator=gen, dtype=torch.float64)
        factors.append(Factors(delta, x, param, scale=scale))
        outer = torch.einsum("ni,nj->nij", delta * scale, x)
        per_sample.append(outer.reshape(n, -1))
    return factors, per_sample


def _numel(shape: tuple[int, int | None]) -> int:
    return shape[0] * (shape[1] or 1)


@pytest.mark.parametrize("scale", [1, 3.0], ids=["scaled", "scale-pending"])
@pytest.mark.parametrize("budget", [None, 2, 10**6], ids=["no-hist", "sampled", "all"])
def test_group_statistics_equal_per_sample_reductions(budget, scale):
    n = 6
    # 20 x 20 layers and 400 biases are large enough to be sampled (budget 2: the
    # smallest share); the others are taken whole. Biases of equal sizes form groups
    # of their own, apart from the weights.
    shapes = [(20, 20), (5, 3), (400, None), (20, 20), (5, None), (20, 20), (2, 5)]
    shapes += [(400, None), (5, None), (400, 1)]
    gen = torch.Generator().manual_seed(0)
    request = SampleRequest(
        mean_reduction=True,
        sum_sq=True,
        hist_budget=budget,
        with_param_values=True,
        total_params=sum(map(_numel, shapes)),
        generator=lambda device: gen,
    )
    scale = scale if scale == 1 else torch.tensor(scale, dtype=torch.float64)
    factors, per_sample = _factors(shapes, n, gen, scale)
    directions = [torch.randn(_numel(s), dtype=torch.float64) for s in shapes]
    request.directions = {
        id(f.param): d for f, d in zip(factors, directions, strict=True)
    }
    reduced = from_linear_factor_groups(factors, request)
    for f, gn, v, stats in zip(factors, per_sample, directions, reduced, strict=True):
        g = gn.mean(0)
        torch.testing.assert_close(stats.grad, g)
        torch.testing.assert_close(stats.sq_norms, (gn**2).sum(1))
        torch.testing.assert_close(stats.dots, gn @ g)
        torch.testing.assert_close(stats.sum_sq, (gn**2).sum(0))
        torch.testing.assert_close(stats.projection, gn @ v)
        if budget is None:
            assert stats.hist_values is None
            continue
        torch.testing.assert_close(stats.low, gn.min())
        torch.testing.assert_close(stats.high, gn.max())
        drawn = stats.group.get("hist_positions")
        if drawn is None:
            picked, weight = torch.arange(gn.shape[1]), 1.0
        else:
            picked = drawn[stats.index]
            weight = gn.shape[1] / picked.numel()
        torch.testing.assert_close(stats.hist_values, gn[:, picked].reshape(-1))
        params = f.param.reshape(-1)[picked].repeat(n)
        torch.testing.assert_close(stats.hist_params, params)
        assert stats.hist_weight == weight
    drew = ["hist_positions" in stats.group for stats in reduced]
    sampled = [True, False, True, True, False, True, False, True, False, True]
    assert drew == (sampled if budget == 2 else [False] * len(shapes))
    if budget == 2:  # the three 20 x 20 layers drew in one call, independently
        rows = reduced[0].group["hist_positions"]
        assert rows.shape[0] == 3 and not torch.equal(rows[0], rows[1])


def test_formulas_over_stacked_rows_equal_row_by_row():
    gen = torch.Generator().manual_seed(1)
    gn = torch.randn(3, 7, 11, generator=gen, dtype=torch.float64)  # [L, N, D]
    g = gn.mean(1)
    sq_norms, dots, g2 = (
        moments((gn**2).sum(2)),
        moments(torch.einsum("lnd,ld->ln", gn, g)),
        (g**2).sum(1),
    )
    stacked = {
        "norm_test": gradient_tests.norm_test(sq_norms, g2),
        "inner_product_test": gradient_tests.inner_product_test(dots, g2),
        "orthogonality_test": gradient_tests.orthogonality_test(sq_norms, dots, g2),
        "gradient_noise_scale": gradient_noise_scale(sq_norms, g2)[0],
    }
    for name, values in stacked.items():
        brute_force = getattr(reference, name)
        expected = torch.stack([brute_force(layer) for layer in gn])
        torch.testing.assert_close(values, expected, msg=name)


@pytest.mark.parametrize("known", ["all", "some"])
def test_projections_after_the_step_equal_per_sample_products(known):
    """``project_layers``: a group whose every layer has a direction in one product,
    the layers of a group with only some directions, and other projectors, alike."""
    n = 4
    shapes = [(6, 5), (6, 5), (3, 6), (6, 5)]
    gen = torch.Generator().manual_seed(2)
    request = SampleRequest(mean_reduction=True, keep_for_projection=True)
    factors, per_sample = _factors(shapes, n, gen)
    stats = from_linear_factor_groups(factors, request)
    other = torch.randn(n, 9, generator=gen, dtype=torch.float64)
    layers = {f"l{j}": layer for j, layer in enumerate(stats)}
    layers["other"] = SimpleNamespace(project=lambda v: other @ v)
    per_sample = [*per_sample, other]
    names = list(layers) if known == "all" else ["other", "l3", "l2", "l0"]
    directions = {
        name: torch.randn(
            per_sample[list(layers).index(name)].shape[1], generator=gen
        ).double()
        for name in names
    }
    slopes = project_layers(layers, directions)
    assert list(slopes) == names
    for name, v in directions.items():
        expected = per_sample[list(layers).index(name)] @ v
        torch.testing.assert_close(slopes[name], expected, msg=name)


def test_group_rows_are_selected_only_where_read():
    """A group's statistics stay in its stacks: reducing it and taking its fields
    whole (``stacked_field``, ``field_views`` and their norms) dispatches no
    ``select`` and no ``unbind`` beyond the partial projection's; a layer's row, read, is its per-sample reduction, and
    a projection asked of part of a group is that part's alone."""
    n = 5
    shapes = [(6, 5), (6, 5), (6, 5), (3, 6)]
    gen = torch.Generator().manual_seed(4)
    request = SampleRequest(
        mean_reduction=True,
        sum_sq=True,
        hist_budget=0,
        total_params=sum(o * i for o, i in shapes),
        generator=lambda device: gen,
    )
    factors, per_sample = _factors(shapes, n, gen)
    directions = {
        j: torch.randn(30, generator=gen, dtype=torch.float64) for j in (0, 2)
    }
    request.directions = {id(factors[j].param): v for j, v in directions.items()}
    with _Operations() as counted:
        stats = from_linear_factor_groups(factors, request)
        layers = {f"l{j}": layer for j, layer in enumerate(stats)}
        layout = GroupLayout.of(layers)
        sq_norms = stacked_field(layers, "sq_norms", layout)
        grads = field_views(layers, "grad", layout)
        norms = _flat_buffers.norm_rows(grads)
        sizes = _flat_buffers.numels(grads)
    # One unbind: the projections asked of part of a group go onto its layers.
    assert counted.names["aten.unbind.int"] == 1, counted.names
    assert not [name for name in counted.names if "select" in name], counted.names
    expected = torch.stack([(gn**2).sum(1) for gn in per_sample])
    torch.testing.assert_close(sq_norms, expected)
    means = [gn.mean(0) for gn in per_sample]
    torch.testing.assert_close(norms, torch.stack([g.norm() for g in means]))
    assert sizes == [o * i for o, i in shapes]
    for gn, g, layer in zip(per_sample, means, layers.values(), strict=True):
        torch.testing.assert_close(layer.grad, g)
        torch.testing.assert_close(layer.sum_sq, (gn**2).sum(0))
        torch.testing.assert_close(layer.low, gn.min())
        torch.testing.assert_close(layer.hist_values, gn.reshape(-1))
    for j, layer in enumerate(stats):
        if j in directions:
            torch.testing.assert_close(layer.projection, per_sample[j] @ directions[j])
        else:
            assert layer.projection is None
    assert field_views(layers, "projection", layout)["l1"] is None  # per layer
