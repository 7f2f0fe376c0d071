"""``input_scale`` against the moments of the inputs, computed in float64."""

from __future__ import annotations

import pytest

from tests.quantities.tracking import everything, logged, tracked_run


@pytest.mark.parametrize("together", [False, True], ids=["alone", "with-all"])
def test_input_scale_is_the_moments_of_the_input(problem, tmp_path, together):
    quantities = everything(problem) if together else ["input_scale"]
    run, _ = tracked_run(problem, tmp_path, quantities, steps=2)
    for step in range(2):
        x, _ = problem.batch(step)
        if not x.is_floating_point():
            # Token ids have no scale: nothing is logged.
            assert "input_scale" not in set(run.scalars.quantity)
            continue
        x = x.double()
        expected = {
            "input_scale": x.square().mean().sqrt(),
            "input_scale.mean": x.mean(),
            "input_scale.std": x.std(correction=0),
            "input_scale.absmax": x.abs().max(),
        }
        for key, value in expected.items():
            assert logged(run, key, step) == pytest.approx(float(value), rel=1e-6)
