import math

import pytest

from tests import reference
from tests.quantities.tracking import everything, linear_cockpit, logged, tracked_run
from tests.reference import layers_and_total


@pytest.mark.parametrize("together", [False, True], ids=["alone", "with-all"])
def test_noise_scale_total_and_per_layer(problem, tmp_path, together):
    name = "gradient_noise_scale"
    run, refs = tracked_run(
        problem, tmp_path, everything(problem) if together else [name], steps=3
    )
    flagged = 0
    for step, ref in enumerate(refs):
        for layer, gn in layers_and_total(ref.grads).items():
            n, g = gn.shape[0], gn.mean(0)
            true_sq_norm = g @ g - reference.trace_covariance(gn) / n
            got = logged(run, name, step, None if layer == "total" else layer)
            if true_sq_norm > 0:
                expected = float(reference.gradient_noise_scale(gn))
                assert got == pytest.approx(expected, rel=1e-7), (step, layer)
            else:  # noise swamps the signal: non-finite with a reason, never clipped
                assert math.isnan(got), (step, layer, got)
                flagged += 1
        total = layers_and_total(ref.grads)["total"]
        assert logged(run, f"{name}.trace_cov", step) == pytest.approx(
            float(reference.trace_covariance(total)), rel=1e-8
        )
    assert flagged < 3 * len(layers_and_total(refs[0].grads))


def test_nonpositive_signal_is_logged_with_reason(tmp_path):
    """Two samples with opposite gradients: G2 < 0, so B_simple is undefined."""
    import torch

    import cockpit

    model, loss_fn, ck = linear_cockpit(
        tmp_path, ["gradient_noise_scale"], (1, 1), bias=False
    )
    x = torch.tensor([[1.0], [-1.0]], dtype=torch.float64)
    with ck.track():
        loss_fn(model(x), torch.tensor([[1.0], [1.0]], dtype=torch.float64)).backward()
    ck.close()
    run = cockpit.load(ck.run_dir)
    assert math.isnan(run.scalar("gradient_noise_scale").iloc[0])
    lines = (ck.run_dir / "steps.jsonl").read_text()
    assert "G2 <= 0" in lines and '"gradient_noise_scale.total"' in lines
