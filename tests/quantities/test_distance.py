import pytest
import torch

from cockpit import _flat_buffers
from tests.quantities.tracking import assert_per_layer, tracked_run


@pytest.mark.parametrize("large", [False, True], ids=["flat", "per-parameter"])
def test_distance_from_initial_parameters(problem, tmp_path, monkeypatch, large):
    if large:  # a network above the bucket bound: a difference per parameter
        monkeypatch.setattr(_flat_buffers, "BUCKET_ELEMENTS", 1)
    run, refs = tracked_run(problem, tmp_path, ["distance"], steps=3)
    start = refs[0].params
    for step, ref in enumerate(refs):
        diffs = {n: (p - start[n]).reshape(-1) for n, p in ref.params.items()}
        expected = {n: d.norm() for n, d in diffs.items()}
        expected["total"] = torch.cat(list(diffs.values())).norm()
        assert_per_layer(run, "distance", step, expected)
    assert float(expected["total"]) > 0
