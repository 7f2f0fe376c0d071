"""``mean_gsnr`` and ``early_stopping`` (one stats module: element-wise variances)."""

import pytest

from cockpit import _flat_buffers
from cockpit.quantities import REGISTRY
from cockpit.stats import signal_to_noise
from tests import reference
from tests.quantities.tracking import (
    assert_per_layer,
    check_per_layer_reference,
    tracked_run,
)
from tests.reference import layers_and_total

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
