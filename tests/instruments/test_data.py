import numpy as np
import pandas as pd

from cockpit.instruments import RunData
from cockpit.logs.reader import records_to_frames
from tests.instruments.synthetic import LAYERS, run_data, step_records


def frames(records):
    return records_to_frames(records)


def test_series_by_quantity_and_layer():
    run = run_data("a", steps=20)
    loss = run.series("loss")
    assert loss.steps.tolist() == list(range(20))
    assert run.series("grad_norm", "0.bias").steps.tolist() == list(range(20))
    assert run.layers("grad_norm") == list(LAYERS)
    assert run.layers("lr") == ["group0"]
    assert len(run.series("no_such_quantity")) == 0
    assert run.last_step == 19


def test_alpha_logged_late_is_sorted_by_step():
    run = run_data("a", steps=10)
    alpha = run.series("alpha")
    assert alpha.steps.tolist() == list(range(9))


def test_extend_adds_only_new_rows_and_bumps_versions():
    run = RunData("a")
    run.extend(*frames(step_records(0)))
    before = run.version_of("loss")
    curvature = run.version_of("hess_max_ev")
    run.extend(*frames(step_records(1, curvature=False)))
    assert run.series("loss").steps.tolist() == [0, 1]
    assert run.version_of("loss") > before
    assert run.version_of("hess_max_ev") == curvature
    assert run.version_of("hess_max_ev.converged") == curvature


def test_out_of_order_chunks_are_merged_in_step_order():
    run = RunData("a")
    run.extend(*frames([{"step": 5, "values": {"loss": 1.0}}]))
    run.extend(*frames([{"step": 2, "values": {"loss": 2.0}}]))
    series = run.series("loss")
    assert series.steps.tolist() == [2, 5]
    assert series.values.tolist() == [2.0, 5.0 / 5.0]


def test_has_counts_dotted_parts():
    run = run_data("a", steps=3)
    assert run.has("hess_max_ev")
    assert run.has("kfac_block")
    assert run.has("kfac_block.condition")
    assert not run.has("kfac_block.nothing")
    economy = run_data("b", steps=3, curvature=False)
    assert not economy.has("hess_max_ev")


def test_null_values_are_nan_and_dropped_by_finite():
    run = run_data("a", steps=20)
    noise = run.series("gradient_noise_scale")
    assert np.isnan(noise.values[3])
    assert 3 not in noise.finite().steps


def test_between_is_inclusive():
    run = run_data("a", steps=20)
    assert run.series("loss").between(5, 8).steps.tolist() == [5, 6, 7, 8]
    assert run.series("loss").between(None, 1).steps.tolist() == [0, 1]


def test_histograms_are_thinned_but_keep_the_newest():
    run = RunData("a", hist_cap=8)
    for step in range(100):
        record = {
            "step": step,
            "values": {"grad_hist_1d": {"edges": [0.0, 1.0, 2.0], "counts": [step, 1]}},
        }
        run.extend(*frames([record]))
    hists = run.histograms("grad_hist_1d")
    assert len(hists) <= 9
    assert hists[-1].step == 99
    assert hists[0].step == 0
    steps = [h.step for h in hists]
    assert steps == sorted(steps)


def test_2d_histograms_per_layer_inherit_edges():
    run = run_data("a", steps=2)
    whole = run.histograms("grad_hist_2d")[-1]
    layer = run.histograms("grad_hist_2d", "0.weight")[-1]
    assert whole.y_edges is not None
    np.testing.assert_array_equal(layer.edges, whole.edges)
    assert layer.counts.shape == (16, 16)


def test_from_frames_with_empty_frames():
    empty = pd.DataFrame(columns=["step", "quantity", "layer", "value"])
    run = RunData.from_frames("a", empty)
    assert run.quantities() == []
    assert run.last_step is None
