"""``grad_hist_1d`` and ``grad_hist_2d``: exact mode and the subsampled estimate."""

import math

import numpy as np
import pytest
import torch

import cockpit
from tests import reference
from tests.problems import Problem
from tests.quantities.tracking import (
    everything,
    histogram_rows,
    linear_cockpit,
    tracked_run,
)


def _clipped(values, edges):
    """Values on the edges' range: tracker and reference round the extremes apart."""
    return np.clip(values, edges[0], edges[-1])


def _all_elements(ref):
    gn = reference.flat(ref.grads)
    params = torch.cat([p.reshape(-1) for p in ref.params.values()])
    return gn.reshape(-1).numpy(), params.repeat(gn.shape[0]).numpy()


@pytest.mark.parametrize("together", [False, True], ids=["alone", "with-all"])
def test_exact_1d_histogram(problem, tmp_path, together):
    quantities = everything(problem) if together else ["grad_hist_1d"]
    run, refs = tracked_run(problem, tmp_path, quantities, hist_samples=0)
    rows = histogram_rows(run, "grad_hist_1d")
    for step, ref in enumerate(refs):
        row = rows[rows.step == step].iloc[0]
        values, _ = _all_elements(ref)
        edges = np.asarray(row.edges)
        assert edges[0] == pytest.approx(values.min()) and edges[-1] == pytest.approx(
            values.max()
        )
        expected, _ = np.histogram(_clipped(values, edges), bins=edges)
        np.testing.assert_allclose(row.counts, expected)
        assert row.sample_size == row.total == values.size


def test_exact_2d_histogram_total_and_per_layer(problem, tmp_path):
    run, refs = tracked_run(
        problem, tmp_path, ["grad_hist_2d"], steps=1, hist_samples=0
    )
    rows = histogram_rows(run, "grad_hist_2d")
    gradients, params = _all_elements(refs[0])
    total = rows[rows.layer.isna()].iloc[0]
    expected, _, _ = np.histogram2d(
        params, _clipped(gradients, total.y_edges), bins=[total.edges, total.y_edges]
    )
    np.testing.assert_allclose(total.counts, expected)
    n = next(iter(refs[0].grads.values())).shape[0]
    for name, grads in refs[0].grads.items():
        row = rows[rows.layer == name].iloc[0]
        layer_params = refs[0].params[name].reshape(-1).repeat(n).numpy()
        expected, _, _ = np.histogram2d(
            layer_params,
            _clipped(grads.reshape(-1).numpy(), row.y_edges),
            bins=[row.edges, row.y_edges],
        )
        np.testing.assert_allclose(row.counts, expected)


WIDE = Problem(
    "wide",
    lambda: torch.nn.Sequential(
        torch.nn.Linear(60, 50), torch.nn.Tanh(), torch.nn.Linear(50, 4)
    ),
    lambda: torch.nn.CrossEntropyLoss(),
    (60,),
    4,
    batch_size=32,
)


def _position_sampling_variance(ref, edges, budget):
    """Per-bin variance of the estimate: per layer, m positions drawn with replacement,
    all N samples at each, weight D_l / m; layers are independent."""
    total_params = sum(g[0].numel() for g in ref.grads.values())
    variance = np.zeros(len(edges) - 1)
    for grads in ref.grads.values():
        n = grads.shape[0]
        per_position = grads.reshape(n, -1).numpy()
        d_l = per_position.shape[1]
        share = max(math.ceil(budget * d_l / total_params), 1024)
        m = math.ceil(share / n)
        if 2 * m >= d_l:
            continue  # taken whole: exact
        bins = np.clip(
            np.searchsorted(edges, per_position, side="right") - 1, 0, len(edges) - 2
        )
        counts = np.stack([(bins == b).sum(0) for b in range(len(edges) - 1)])
        variance += d_l**2 / m * counts.var(axis=1)
    return variance


def test_subsampled_histogram_estimates_exact_counts(tmp_path):
    """Each bin's estimate lies within 5 standard errors of the exact count."""
    budget = 20_000
    run, refs = tracked_run(
        WIDE, tmp_path, ["grad_hist_1d"], steps=1, hist_samples=budget
    )
    row = histogram_rows(run, "grad_hist_1d").iloc[0]
    values, _ = _all_elements(refs[0])
    assert row.total == values.size > 4 * budget
    assert budget <= row.sample_size < 1.1 * budget
    assert row.edges[0] == pytest.approx(values.min())
    assert row.edges[-1] == pytest.approx(values.max())
    edges = np.asarray(row.edges)
    exact, _ = np.histogram(_clipped(values, edges), bins=edges)
    estimate = np.asarray(row.counts)
    assert estimate.sum() == pytest.approx(values.size, rel=1e-9)
    standard_error = np.sqrt(_position_sampling_variance(refs[0], edges, budget))
    assert np.all(np.abs(estimate - exact) <= 5 * standard_error + 1e-6)
    assert not np.allclose(estimate, exact)  # it really sampled


def test_same_seed_same_sample(tmp_path):
    counts = []
    for run_name in ("a", "b"):
        run, _ = tracked_run(
            WIDE,
            tmp_path,
            ["grad_hist_1d"],
            steps=1,
            hist_samples=5000,
            run_name=run_name,
        )
        counts.append(histogram_rows(run, "grad_hist_1d").iloc[0].counts)
    np.testing.assert_array_equal(counts[0], counts[1])


def test_nan_gradients_do_not_break_histograms(tmp_path):
    model, loss_fn, ck = linear_cockpit(
        tmp_path, ["grad_hist_1d", "grad_hist_2d"], (3, 2)
    )
    x = torch.ones(4, 3, dtype=torch.float64)
    x[0, 0] = math.nan
    with ck.track():
        loss_fn(model(x), torch.zeros(4, 2, dtype=torch.float64)).backward()
    with pytest.warns(cockpit.exceptions.NonFiniteWarning, match="step 0"):
        ck.close()
    lines = (ck.run_dir / "steps.jsonl").read_text()
    assert '"grad_hist_1d.min"' in lines
