"""Convolutions' per-sample statistics from their factors against torch.func, float64.

The BackPACK engine's convolution routes (``Conv2d`` weights reduced from their
input and output gradient after the backward pass with autograd's mini-batch
gradient; every convolution's bias as the factor pair ``(delta_n summed, 1)``;
BackPACK's ``BatchGrad`` for the other weights) on tiny models of every geometry,
compared statistic by statistic with per-sample gradients from ``torch.func``.
"""

from __future__ import annotations

import pytest
import torch
from backpack import backpack
from torch import nn

from cockpit.engines import _conv_factors, backpack_engine, layer_stats
from cockpit.engines._conv_factors import ConvFactors, factor_route
from cockpit.engines.layer_stats import SampleRequest
from tests import reference
from tests.engines.conv_cases import CONVOLUTIONS, N, problem
from tests.spies import record_returns


def _tracked(model, loss_fn, x, y, request):
    """The engine's statistics of every parameter after one backward pass."""
    params = dict(model.named_parameters())
    handles = backpack_engine.attach_hooks(list(model.modules())[1:])
    try:
        with backpack(backpack_engine.PerSampleStats(request)):
            loss_fn(model(x), y).backward()
    finally:
        for handle in handles:
            handle.remove()
    grads = {name: p.grad.reshape(-1) for name, p in params.items()}
    return backpack_engine.collect(params, request, grads)


@pytest.mark.parametrize("keep", [0, None], ids=["by-convolution", "kept"])
@pytest.mark.parametrize(
    "make_conv, shape", [c[1:] for c in CONVOLUTIONS], ids=[c[0] for c in CONVOLUTIONS]
)
def test_statistics_match_per_sample_gradients(monkeypatch, make_conv, shape, keep):
    """Every statistic; the later projection by convolution and on kept gradients."""
    if keep is not None:
        monkeypatch.setattr(_conv_factors, "KEEP_ELEMENTS", keep)
    model, loss_fn, x, y = problem(make_conv, shape)
    generator = torch.Generator().manual_seed(1)
    directions = {
        name: torch.randn(p.numel(), dtype=torch.float64, generator=generator)
        for name, p in model.named_parameters()
    }
    later = {name: torch.randn_like(v) for name, v in directions.items()}
    params = dict(model.named_parameters())
    request = SampleRequest(
        mean_reduction=True,
        sum_sq=True,
        hist_budget=0,
        total_params=sum(p.numel() for p in params.values()),
        directions={id(params[name]): v for name, v in directions.items()},
        keep_for_projection=True,
    )
    found = _tracked(model, loss_fn, x, y, request)
    per_sample = reference.per_sample_grads(model, loss_fn, x, y)
    for name, stats in found.items():
        g_n = per_sample[name].reshape(N, -1)
        g = g_n.mean(0)
        torch.testing.assert_close(stats.grad, g)
        torch.testing.assert_close(stats.sq_norms, (g_n**2).sum(1))
        torch.testing.assert_close(stats.dots, g_n @ g)
        torch.testing.assert_close(stats.sum_sq, (g_n**2).sum(0))
        torch.testing.assert_close(stats.projection, g_n @ directions[name])
        torch.testing.assert_close(stats.project(later[name]), g_n @ later[name])
        torch.testing.assert_close(stats.low, g_n.min())
        torch.testing.assert_close(stats.high, g_n.max())
        expected = g_n.reshape(-1).sort().values
        torch.testing.assert_close(stats.hist_values.sort().values, expected)


def test_factor_route_taken_where_documented(monkeypatch):
    """Ungrouped ``Conv2d`` weights leave factors, the others not."""
    taken = {}
    arrive = ConvFactors.arrive

    def record(module, delta, request, scale):
        taken[id(module)] = True
        return arrive(module, delta, request, scale)

    monkeypatch.setattr(ConvFactors, "arrive", staticmethod(record))
    routes = []
    for _, make_conv, shape in CONVOLUTIONS:
        model, loss_fn, x, y = problem(make_conv, shape)
        _tracked(model, loss_fn, x, y, SampleRequest(mean_reduction=True))
        conv = model[0]
        expected = isinstance(conv, nn.Conv2d) and factor_route(conv)
        assert taken.pop(id(conv), False) == expected
        routes.append(expected)
    assert routes == [True] * 7 + [False, True, False, False]


def test_small_chunks_same_statistics(monkeypatch):
    """One sample per chunk gives the statistics of one chunk for all samples."""
    model, loss_fn, x, y = problem(CONVOLUTIONS[1][1], CONVOLUTIONS[1][2])
    request = SampleRequest(mean_reduction=True, sum_sq=True)
    whole = _tracked(model, loss_fn, x, y, request)["0.weight"]
    model.zero_grad()
    monkeypatch.setattr(layer_stats, "CHUNK_ELEMENTS", 1)
    single = _tracked(model, loss_fn, x, y, request)["0.weight"]
    for field in ("grad", "sq_norms", "dots", "sum_sq"):
        torch.testing.assert_close(getattr(single, field), getattr(whole, field))


def test_kept_where_later_projections_cost_most(monkeypatch):
    """The budget goes to the layers with the most output positions first."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(2, 3, 3),  # T = 36, N D_l = 5 * 54
        nn.Conv2d(3, 4, 3, stride=2),  # T = 4, N D_l = 5 * 108
        nn.Flatten(),
        nn.Linear(16, 3),
    ).double()
    x = torch.randn(N, 2, 8, 8, dtype=torch.float64)
    y = torch.randint(0, 3, (N,))
    projected = []
    conv2d = torch.nn.functional.conv2d

    def count(*args, **kwargs):
        projected.append(args[1].shape)
        return conv2d(*args, **kwargs)

    request = SampleRequest(mean_reduction=True, keep_for_projection=True)
    monkeypatch.setattr(_conv_factors, "KEEP_ELEMENTS", 5 * 54 + 5 * 108 - 1)
    found = _tracked(model, nn.CrossEntropyLoss(), x, y, request)
    monkeypatch.setattr(torch.nn.functional, "conv2d", count)
    for name in ("0.weight", "1.weight"):
        found[name].project(torch.ones(found[name].grad.numel(), dtype=torch.float64))
    assert projected == [torch.Size([4, 3, 3, 3])]


@pytest.mark.parametrize("padding", [(0, 0, 0, 0), (1, 0, 2, 1)])
def test_pad_input_copies_only_where_it_pads(padding):
    """No padding: the input itself (F.pad would copy it); else F.pad's result."""
    x = torch.randn(2, 3, 4, 5, dtype=torch.float64)
    padded = _conv_factors.pad_input(x, padding)
    torch.testing.assert_close(padded, nn.functional.pad(x, padding))
    assert (padded is x) == (not any(padding))


def test_chunks_are_bounded_on_the_cpu_and_whole_batches_elsewhere():
    """The CPU keeps its small chunks; other devices take up to N samples at once."""
    per_sample = 75 * 784  # 3c3d's first convolution: d T patches per sample
    cpu = layer_stats.chunk_samples(torch.device("cpu"), 128, per_sample)
    gpu = layer_stats.chunk_samples(torch.device("cuda"), 128, per_sample)
    assert cpu == layer_stats.CHUNK_ELEMENTS // per_sample < 128
    assert gpu == 128
    huge = layer_stats.DEVICE_CHUNK_ELEMENTS  # one sample is over any bound
    assert layer_stats.chunk_samples(torch.device("cuda"), 128, huge * 2) == 1
    assert layer_stats.chunk_samples(torch.device("cpu"), 3, 1) == 3


@pytest.mark.parametrize("n", [1, 7, 8, 9, 31, 128, 130])
@pytest.mark.parametrize("per_sample", [1, 3, 40_000, 110_592, 180_000, 300_000, 2**22])
def test_convolution_chunks_are_bounded_equal_and_multiples(n, per_sample):
    """Within the bound, as few chunks as it allows, equal up to the last, multiples."""
    cpu = torch.device("cpu")
    bound = _conv_factors.CPU_CHUNK_SCALE * layer_stats.CHUNK_ELEMENTS
    most = max(1, min(n, bound // per_sample))
    chunk = _conv_factors.chunk_samples(cpu, n, per_sample)
    assert 1 <= chunk <= most
    chunks = -(-n // chunk)
    multiple = _conv_factors.CHUNK_MULTIPLE
    # No more chunks than the bound's multiples of CHUNK_MULTIPLE need.
    rounds = 2 * multiple <= most < n
    assert chunks == -(-n // (most - most % multiple if rounds else most))
    if rounds:
        assert chunk % multiple == 0
    assert n - (chunks - 1) * chunk > 0  # the last chunk is not empty


def test_convolution_chunks_of_3c3d():
    """3c3d (N = 128): 4 chunks of 32, five of 24 and one of 8, 8 of 16 samples."""
    cpu = torch.device("cpu")
    sizes = [(75, 784, 64), (576, 144, 96), (864, 36, 128)]  # d, T, p
    chunks = [_conv_factors.chunk_samples(cpu, 128, d * max(t, p)) for d, t, p in sizes]
    assert chunks == [32, 24, 16]


def test_statistics_of_equal_chunks_of_a_multiple(monkeypatch):
    """40 samples in chunks of 16, 16 and 8 (bound 17): the per-sample references."""
    torch.manual_seed(0)
    n = 40
    model = nn.Sequential(
        nn.Conv2d(2, 3, 3), nn.Tanh(), nn.Flatten(), nn.Linear(27, 3)
    ).double()
    x = torch.randn(n, 2, 5, 5, dtype=torch.float64)
    y = torch.randint(0, 3, (n,))
    per_sample = 18 * 9  # d T: the patches are the largest temporary
    scale = _conv_factors.CPU_CHUNK_SCALE
    monkeypatch.setattr(layer_stats, "CHUNK_ELEMENTS", 17 * per_sample // scale)
    chunks = record_returns(monkeypatch, _conv_factors, "chunk_samples")
    request = SampleRequest(mean_reduction=True, sum_sq=True)
    stats = _tracked(model, nn.CrossEntropyLoss(), x, y, request)["0.weight"]
    assert chunks == [16]
    g_n = reference.per_sample_grads(model, nn.CrossEntropyLoss(), x, y)["0.weight"]
    g_n = g_n.reshape(n, -1)
    torch.testing.assert_close(stats.grad, g_n.mean(0))
    torch.testing.assert_close(stats.sq_norms, (g_n**2).sum(1))
    torch.testing.assert_close(stats.dots, g_n @ g_n.mean(0))
    torch.testing.assert_close(stats.sum_sq, (g_n**2).sum(0))
