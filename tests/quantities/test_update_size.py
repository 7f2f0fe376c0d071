import pytest
import torch

from cockpit import _flat_buffers
from tests.quantities.tracking import assert_per_layer, tracked_run


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("buckets", ["one", "several"])
def test_update_size_is_the_step_taken(
    problem, tmp_path, optimizer, monkeypatch, buckets
):
    if buckets == "several":  # a large network's snapshots: a bucket per parameter
        monkeypatch.setattr(_flat_buffers, "BUCKET_ELEMENTS", 1)
    run, refs = tracked_run(
        problem, tmp_path, ["update_size"], steps=3, optimizer=optimizer
    )
    for step in range(2):
        before, after = refs[step].params, refs[step + 1].params
        diffs = {n: (after[n] - p).reshape(-1) for n, p in before.items()}
        expected = {n: d.norm() for n, d in diffs.items()}
        expected["total"] = torch.cat(list(diffs.values())).norm()
        assert_per_layer(run, "update_size", step, expected)
