"""Conv2d statistics computed one sample at a time agree with the references."""

import pytest

from cockpit.engines import layer_stats
from tests.problems import PROBLEMS
from tests.quantities.test_alpha import _expected_alpha
from tests.quantities.tracking import check_per_layer_reference, logged, tracked_run

UNFOLDING = next(p for p in PROBLEMS if p.name == "cnn-unfold-ce-sum")


@pytest.fixture
def one_sample_chunks(monkeypatch):
    monkeypatch.setattr(layer_stats, "CHUNK_ELEMENTS", 1)


@pytest.mark.parametrize("name", ["norm_test", "inner_product_test", "mean_gsnr"])
def test_per_layer_quantities(one_sample_chunks, tmp_path, name):
    check_per_layer_reference(UNFOLDING, tmp_path, name, together=True)


def test_alpha_projects_by_convolution(one_sample_chunks, tmp_path):
    run, refs = tracked_run(UNFOLDING, tmp_path, ["alpha", "grad_hist_1d"], steps=3)
    for step in range(2):
        assert logged(run, "alpha", step) == pytest.approx(
            _expected_alpha(refs, step), rel=1e-6, abs=1e-9
        )
