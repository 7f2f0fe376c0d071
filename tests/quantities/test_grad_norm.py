import pytest

from tests.quantities.tracking import assert_per_layer, everything, tracked_run
from tests.reference import layers_and_total


@pytest.mark.parametrize("together", [False, True], ids=["alone", "with-all"])
def test_grad_norm_total_and_per_layer(problem, tmp_path, together):
    run, refs = tracked_run(
        problem, tmp_path, everything(problem) if together else ["grad_norm"]
    )
    for step, ref in enumerate(refs):
        expected = {k: g.mean(0).norm() for k, g in layers_and_total(ref.grads).items()}
        assert_per_layer(run, "grad_norm", step, expected)
