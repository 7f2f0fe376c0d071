import numpy as np
import pytest
import torch

from cockpit import _flat_buffers, _stacked_views
from cockpit.stats.alpha import alpha_from_fit, fit_quadratic
from tests import reference
from tests.problems import NARROW
from tests.quantities.tracking import everything, logged, tracked_run
from tests.spies import record_returns


def _expected_alpha(refs, step):
    s = {n: refs[step + 1].params[n] - p for n, p in refs[step].params.items()}
    direction = torch.cat([d.reshape(-1) for d in s.values()])
    tau = direction.norm()
    slopes = [reference.flat(refs[t].grads) @ direction / tau for t in (step, step + 1)]
    return reference.alpha(
        float(tau), [refs[step].losses, refs[step + 1].losses], slopes
    )


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("together", [False, True], ids=["alone", "with-all"])
@pytest.mark.parametrize("buckets", ["one", "several"])
def test_alpha_against_normal_equations(
    problem, tmp_path, optimizer, together, monkeypatch, buckets
):
    if buckets == "several":  # a large network's snapshots: a bucket per parameter
        monkeypatch.setattr(_flat_buffers, "BUCKET_ELEMENTS", 1)
    quantities = everything(problem) if together and optimizer == "sgd" else ["alpha"]
    run, refs = tracked_run(problem, tmp_path, quantities, steps=3, optimizer=optimizer)
    for step in range(2):
        assert logged(run, "alpha", step) == pytest.approx(
            _expected_alpha(refs, step), rel=1e-6, abs=1e-9
        )
    assert run.scalar("alpha").index.tolist() == [0, 1]


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_alpha_of_layers_in_group_stacks(tmp_path, monkeypatch, optimizer):
    """Equal layers project the step as one strided view of its flat buffer."""
    views = record_returns(monkeypatch, _stacked_views, "stacked_views")
    run, refs = tracked_run(NARROW, tmp_path, ["alpha"], steps=3, optimizer=optimizer)
    for step in range(2):
        assert logged(run, "alpha", step) == pytest.approx(
            _expected_alpha(refs, step), rel=1e-6, abs=1e-9
        )
    assert any(len(v) > 1 and not v.is_contiguous() for v in views)


def test_fit_matches_least_squares_on_a_known_parabola():
    """Exact observations of q(x) = 1 - 2x + x^2 (minimum at 1): the fit recovers it."""
    tau = 1.5
    coeffs = fit_quadratic(
        tau, (1.0, 1 - 2 * tau + tau**2), (-2.0, -2 + 2 * tau), (0.1, 0.2), (0.3, 0.4)
    )
    np.testing.assert_allclose(coeffs, [1.0, -2.0, 1.0], atol=1e-12)
    assert alpha_from_fit(tau, coeffs) == pytest.approx(tau / 1.0 - 1)
    assert alpha_from_fit(tau, np.array([0.0, 1.0, -1.0])) == -1.0


def test_alpha_gauge_points():
    """Alpha is 0 at the valley's minimum, -1 without a step, +1 at the mirror point."""
    coeffs = np.array([0.0, -2.0, 1.0])  # minimum at x = 1
    assert alpha_from_fit(1.0, coeffs) == pytest.approx(0.0)
    assert alpha_from_fit(2.0, coeffs) == pytest.approx(1.0)
    assert alpha_from_fit(0.0, coeffs) == pytest.approx(-1.0)
