"""``mean_gsnr`` and ``early_stopping`` (one stats module: element-wise variances)."""

import pytest
import torch

from cockpit import _flat_buffers, _scratch
from cockpit.quantities import REGISTRY, _chunked
from cockpit.stats import signal_to_noise
from tests import reference
from tests.problems import NARROW
from tests.quantities.tracking import (
    assert_per_layer,
    check_per_layer_reference,
    tracked_run,
)
from tests.reference import layers_and_total
from tests.spies import record_returns

NAMES = ["mean_gsnr", "early_stopping"]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("together", [False, True], ids=["alone", "with-all"])
def test_in_training(problem, tmp_path, name, together):
    check_per_layer_reference(problem, tmp_path, name, together)


@pytest.mark.parametrize("bound", [1, 16], ids=["layer-by-layer", "some-together"])
def test_mean_gsnr_in_chunks_of_layers(problem, tmp_path, monkeypatch, bound):
    """A large network's ratios are formed a chunk of layers at a time: the same means.

    With a bound of 1 element every layer is a chunk of its own; with 16, small
    layers (biases) share one and a larger layer is alone.
    """
    monkeypatch.setattr(_flat_buffers, "BUCKET_ELEMENTS", bound)
    sizes = [p.numel() for p in problem.make()[0].parameters()]
    assert len(_flat_buffers.chunks(sizes, bound)) > 1
    check_per_layer_reference(problem, tmp_path, "mean_gsnr", together=False)


@pytest.mark.parametrize("name", NAMES)
def test_eps_is_configurable(problem, tmp_path, name):
    quantity = REGISTRY[name](eps=0.5)
    run, refs = tracked_run(problem, tmp_path, {name: quantity}, steps=1)
    gn = layers_and_total(refs[0].grads)["total"]
    assert_per_layer(run, name, 0, {"total": getattr(reference, name)(gn, eps=0.5)})


@pytest.mark.parametrize("name", NAMES)
def test_formula_on_per_sample_gradients(problem, name):
    model, loss_fn = problem.make()
    gn = reference.flat(reference.per_sample_grads(model, loss_fn, *problem.batch(0)))
    formula = {
        "mean_gsnr": lambda *args: signal_to_noise.gsnr(*args).mean(),
        "early_stopping": signal_to_noise.early_stopping,
    }[name]
    got = formula(gn.mean(0), (gn**2).sum(0), gn.shape[0])
    assert float(got) == pytest.approx(float(getattr(reference, name)(gn)), rel=1e-9)


def test_gsnr_in_given_buffers_is_the_same_bits():
    """``out`` (the reused buffers), also aliasing the arguments, changes no bit."""
    gen = torch.Generator().manual_seed(0)
    grad = torch.randn(1000, generator=gen) * 1e-2
    sum_sq = 8 * grad**2 + torch.rand(1000, generator=gen) * 1e-4
    sum_sq[:10] = 0.0  # a variance that rounds below 0: clamped
    expected = signal_to_noise.gsnr(grad, sum_sq, 8, 1e-5)
    buffers = (torch.full_like(grad, float("nan")), torch.empty_like(sum_sq))
    given = signal_to_noise.gsnr(grad, sum_sq, 8, 1e-5, out=buffers)
    assert given.data_ptr() == buffers[0].data_ptr()
    assert torch.equal(given, expected)
    copies = (grad.clone(), sum_sq.clone())
    assert torch.equal(signal_to_noise.gsnr(*copies, 8, 1e-5, out=copies), expected)


def test_scratch_buffers_are_reused_grown_and_released():
    cpu = torch.device("cpu")
    first = _scratch.scratch(0, 100, cpu, torch.float32)
    again = _scratch.scratch(0, 60, cpu, torch.float32)
    assert again.data_ptr() == first.data_ptr() and again.shape == (60,)
    other = _scratch.scratch(1, 100, cpu, torch.float32)  # another slot: its own
    assert other.data_ptr() != first.data_ptr()
    doubles = _scratch.scratch(0, 100, cpu, torch.float64)  # another dtype: its own
    assert doubles.dtype == torch.float64 and doubles.data_ptr() != first.data_ptr()
    grown = _scratch.scratch(0, 500, cpu, torch.float32)
    assert grown.shape == (500,)
    assert _scratch.scratch(0, 100, cpu, torch.float32).data_ptr() == grown.data_ptr()
    _scratch.release()
    assert _scratch.scratch(0, 100, cpu, torch.float32).data_ptr() != grown.data_ptr()


@pytest.mark.parametrize("bound", [2**22, 16], ids=["buffers", "a stack too large"])
def test_mean_gsnr_of_layers_in_group_stacks(tmp_path, monkeypatch, bound):
    """Equal Linear layers are reduced as stacks: the ratios are formed per stack,
    with no concatenation of the layers (above the bound: in chunks of layers)."""
    monkeypatch.setattr(_flat_buffers, "BUCKET_ELEMENTS", bound)
    taken = record_returns(monkeypatch, _chunked, "stacked_means")
    check_per_layer_reference(NARROW, tmp_path, "mean_gsnr", together=False)
    assert taken and all((t is not None) == (bound == 2**22) for t in taken)


def test_reusable_buffers_only_on_a_cpu_and_within_the_bound(monkeypatch):
    """No buffer is kept off a CPU or above BUCKET_ELEMENTS (a large layer's size)."""
    monkeypatch.setattr(_flat_buffers, "BUCKET_ELEMENTS", 64)
    cpu, meta = torch.device("cpu"), torch.device("meta")
    kept = _scratch.reusable(0, 64, cpu, torch.float32)
    assert kept is not None and kept.shape == (64,)
    assert _scratch.reusable(0, 65, cpu, torch.float32) is None
    assert _scratch.reusable(0, 8, meta, torch.float32) is None
    _scratch.release()
