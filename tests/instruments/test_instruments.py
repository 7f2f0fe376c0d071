import time

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from cockpit.instruments import GROUPS, PLACEHOLDER_NAME, REGISTRY, RunData, View
from cockpit.logs.reader import records_to_frames
from cockpit.presets import how_to_fill
from tests.instruments.synthetic import records, run_data, through_json

CURVATURE = GROUPS["curvature"][1]
IDS = list(REGISTRY)


@pytest.fixture(scope="module")
def full():
    return run_data("full-run", steps=60, seed=0)


@pytest.fixture(scope="module")
def economy():
    return run_data("economy-run", steps=40, seed=1, curvature=False)


def is_placeholder(figure: go.Figure) -> bool:
    return figure.layout.meta == PLACEHOLDER_NAME


def texts(figure: go.Figure) -> str:
    notes = " ".join(a.text or "" for a in figure.layout.annotations)
    return f"{figure.layout.title.text} {notes}"


def x_values(figure: go.Figure) -> np.ndarray:
    """The steps of all traces over steps (not histograms or per-layer bars)."""
    parts = []
    for trace in figure.data:
        if isinstance(trace, go.Scatter) and trace.x is not None:
            x = np.asarray(trace.x)
            if x.dtype.kind in "iu":
                parts.append(x.astype(float))
    return np.concatenate(parts) if parts else np.empty(0)


@pytest.mark.parametrize("instrument_id", IDS)
def test_draws_a_run_with_every_quantity(instrument_id, full):
    instrument = REGISTRY[instrument_id]()
    figure = instrument.figure([full], View())
    assert not is_placeholder(figure)
    assert len(figure.data) > 0
    assert instrument.title in figure.layout.title.text
    assert figure.layout.height == instrument.height
    figure.to_json()  # serializable, as Dash sends it


@pytest.mark.parametrize("instrument_id", CURVATURE)
def test_curvature_placeholder_names_quantity_and_preset(instrument_id, economy):
    instrument = REGISTRY[instrument_id]()
    figure = instrument.figure([economy], View())
    assert is_placeholder(figure)
    assert len(figure.data) == 0
    text = texts(figure)
    assert instrument.quantities[0] in text
    assert "economy-run" in text
    preset = "business" if instrument_id in ("hess_trace", "tic") else "full"
    assert f"preset='{preset}'" in text


@pytest.mark.parametrize("instrument_id", IDS)
def test_every_placeholder_says_how_to_fill_it(instrument_id):
    bare = RunData("bare-run")  # started, nothing logged yet
    instrument = REGISTRY[instrument_id]()
    figure = instrument.figure([bare], View())
    assert is_placeholder(figure)
    assert len(figure.data) == 0
    text = texts(figure)
    assert f"No {' / '.join(instrument.quantities)} in bare-run." in text
    assert how_to_fill(instrument.quantities[0]) in text


def test_early_stopping_placeholder_says_it_is_requested_by_name():
    bare = RunData("bare")
    bare.extend(*records_to_frames([{"step": 0, "values": {"loss": 1.0}}]))
    figure = REGISTRY["early_stopping"]().figure([bare], View())
    assert "quantities=['early_stopping'] (plain SGD only)" in texts(figure)


def test_no_selected_run():
    figure = REGISTRY["loss"]().figure([], View())
    assert is_placeholder(figure)
    assert "No run selected" in texts(figure)


@pytest.mark.parametrize("instrument_id", IDS)
def test_runs_overlay_with_one_legend_group_each(instrument_id, full):
    other = run_data("second-run", steps=30, seed=2)
    figure = REGISTRY[instrument_id]().figure([full, other], View())
    groups = {trace.legendgroup for trace in figure.data if trace.legendgroup}
    if instrument_id in ("grad_hist_2d",):
        assert "full-run" in figure.layout.title.text  # shows the first run only
    else:
        assert {"full-run", "second-run"} <= groups


def test_run_colors_are_distinct_and_stable(full):
    other = run_data("second-run", steps=30, seed=2)
    figure = REGISTRY["loss"]().figure([full, other], View())
    lines = {
        t.legendgroup: t.line.color
        for t in figure.data
        if t.mode == "lines" and t.name.endswith(" loss")
    }
    assert lines["full-run"] != lines["second-run"]
    again = REGISTRY["grad_norm"]().figure([full, other], View())
    assert lines["second-run"] in {
        t.line.color for t in again.data if t.legendgroup == "second-run"
    }


def test_missing_data_of_one_run_is_noted(full, economy):
    figure = REGISTRY["hess_max_ev"]().figure([full, economy], View())
    assert not is_placeholder(figure)
    assert "No hess_max_ev in economy-run" in texts(figure)


def test_a_quantity_absent_by_meta_shows_its_reason():
    """Asked for but not defined (``meta.json``'s ``absent``): the reason, no hint."""
    why = "it is defined for plain SGD only, but the optimizer is Adam"
    adam = RunData("adam-run", meta={"absent": {"early_stopping": why}})
    bare = RunData("bare-run")
    for run in (adam, bare):
        run.extend(*records_to_frames([{"step": 0, "values": {"loss": 1.0}}]))
    figure = REGISTRY["early_stopping"]().figure([adam], View())
    assert is_placeholder(figure)
    assert f"early_stopping is not tracked in adam-run: {why}." in texts(figure)
    assert "Request it with" not in texts(figure)
    both = REGISTRY["early_stopping"]().figure([adam, bare], View())
    assert "not tracked in adam-run" in texts(both)
    assert "No early_stopping in bare-run." in texts(both)
    assert "Request it with" in texts(both)


def test_header_shows_the_newest_value(full):
    figure = REGISTRY["loss"]().figure([full], View())
    newest = full.series("loss").values[-1]
    assert f"full-run {newest:.4g} @ 59" in figure.layout.title.text


def test_raw_points_and_moving_average(full):
    figure = REGISTRY["mean_gsnr"]().figure([full], View())
    raw, average = figure.data
    assert raw.mode == "markers" and "0.3" in raw.marker.color
    assert average.mode == "lines"
    assert len(raw.x) == len(average.x) == 60
    assert np.std(np.diff(average.y)) < np.std(np.diff(raw.y))


def test_layer_selection(full):
    instrument = REGISTRY["grad_norm"]()
    whole = instrument.figure([full], View())
    layer = instrument.figure([full], View(layer="0.bias"))
    assert "(layer 0.bias)" in layer.layout.title.text
    np.testing.assert_allclose(
        layer.data[0].y, full.series("grad_norm", "0.bias").values
    )
    assert not np.allclose(whole.data[0].y, layer.data[0].y)
    heatmap = next(t for t in whole.data if isinstance(t, go.Heatmap))
    assert list(heatmap.y) == full.layers("grad_norm")


def test_step_range(full):
    figure = REGISTRY["distance"]().figure([full], View(steps=(10, 20)))
    steps = x_values(figure)
    assert steps.min() == 10 and steps.max() == 20


def test_scales(full):
    instrument = REGISTRY["grad_norm"]()
    assert instrument.figure([full], View()).layout.yaxis.type == "log"
    assert (
        instrument.figure([full], View(y_scale="linear")).layout.yaxis.type == "linear"
    )
    assert instrument.figure([full], View(x_log=True)).layout.xaxis.type == "log"
    alpha = REGISTRY["alpha"]().figure([full], View(y_scale="log"))
    assert alpha.layout.yaxis2.type == "linear"  # alpha is negative at times


def test_downsampling_keeps_a_spike_and_stays_fast():
    steps = 100_000
    values = 1.0 + 0.01 * np.sin(np.arange(steps) / 100)
    values[54_321] = 1e3
    frame = {
        "step": np.arange(steps),
        "quantity": ["grad_norm"] * steps,
        "layer": [None] * steps,
        "value": values,
    }
    run = RunData.from_frames("long", pd.DataFrame(frame))
    start = time.perf_counter()
    figure = REGISTRY["grad_norm"]().figure([run], View())
    elapsed = time.perf_counter() - start
    raw = figure.data[0]
    assert len(raw.x) <= 1502
    assert 54_321 in raw.x
    assert max(raw.y) == 1e3
    assert elapsed < 2.0


def test_alpha_distributions_and_key(full):
    figure = REGISTRY["alpha"]().figure([full], View())
    names = [t.name for t in figure.data]
    assert "full-run all steps" in names
    assert "full-run last 10 %" in names
    key = next(t for t in figure.data if t.text is not None)
    assert list(key.x) == [-1.0, 0.0, 1.0]
    assert list(key.text) == ["start", "valley floor", "opposite side"]


def test_hess_max_ev_marks_unconverged_and_stability_line(full):
    figure = REGISTRY["hess_max_ev"]().figure([full], View())
    crosses = next(t for t in figure.data if t.name == "full-run not converged")
    assert list(crosses.x) == [s for s in range(60) if s % 7 == 0]
    limit = next(t for t in figure.data if t.name == "full-run 2/lr")
    assert limit.y[0] == pytest.approx(20.0)
    assert limit.y[-1] == pytest.approx(40.0)


def test_kfac_block_bars_the_condition_over_the_nonzero_spectrum(full):
    figure = REGISTRY["kfac_block"]().figure([full], View())
    condition = next(t for t in figure.data if t.name == "full-run nonzero_condition")
    assert list(condition.y) == [100.0, 200.0, 300.0, 400.0]
    bars = [t for t in figure.data if isinstance(t, go.Bar)]
    assert len(bars) == 2


def test_ggn_top_eigen_with_and_without_curvature_noise(full):
    figure = REGISTRY["ggn_top_eigen"]().figure([full], View())
    names = {t.name for t in figure.data}
    assert {"full-run λ1", "full-run λ2", "full-run λ3"} <= names
    assert {"full-run curvature SNR", "full-run slope SNR"} <= names
    bare = RunData("bare")
    bare.extend(
        *records_to_frames([{"step": 0, "values": {"ggn_top_eigen": {"1": 2.0}}}])
    )
    figure = REGISTRY["ggn_top_eigen"]().figure([bare], View())
    assert "No curvature_noise logged" in texts(figure)


def test_ggn_top_eigen_draws_directions_not_the_solver_fields():
    """``method="lanczos"`` also logs iterations, converged and residual."""
    lanczos = {"1": 3.0, "2": 1.5, "10": 0.1, "iterations": 12, "converged": True}
    run = RunData("lanczos")
    run.extend(*records_to_frames([{"step": 0, "values": {"ggn_top_eigen": lanczos}}]))
    figure = REGISTRY["ggn_top_eigen"]().figure([run], View())
    lines = list(dict.fromkeys(t.name for t in figure.data if " λ" in (t.name or "")))
    assert lines == ["lanczos λ1", "lanczos λ2", "lanczos λ10"]


def test_loss_band_and_user_metrics(full):
    figure = REGISTRY["loss"]().figure([full], View())
    names = {t.name for t in figure.data}
    assert {"full-run loss", "full-run valid_loss", "full-run valid_accuracy"} <= names
    accuracy = next(t for t in figure.data if t.name == "full-run valid_accuracy")
    assert accuracy.yaxis == "y2"
    assert list(accuracy.x) == [0, 10, 20, 30, 40, 50]
    assert any(t.fill == "toself" for t in figure.data)


def test_early_stopping_line_at_zero(full):
    figure = REGISTRY["early_stopping"]().figure([full], View())
    assert any(shape.y0 == 0 and shape.y1 == 0 for shape in figure.layout.shapes)


def test_gradient_tests_regions(full):
    figure = REGISTRY["gradient_tests"]().figure([full], View())
    regions = [t for t in figure.data if t.fill == "toself"]
    assert len(regions) == 3
    assert any(shape.y0 == 1 for shape in figure.layout.shapes)


def test_histograms(full):
    one = REGISTRY["grad_hist_1d"]().figure([full], View(steps=(None, 30)))
    heatmap = next(t for t in one.data if isinstance(t, go.Heatmap))
    assert max(heatmap.x) == 30
    two = REGISTRY["grad_hist_2d"]().figure([full], View(layer="2.weight"))
    assert "layer 2.weight" in two.layout.title.text
    assert "step 59" in two.layout.title.text


def test_lr_and_overhead(full):
    lr = REGISTRY["lr"]().figure([full], View())
    assert lr.data[0].mode == "lines"
    assert lr.data[0].y[-1] == pytest.approx(0.05)
    overhead = REGISTRY["overhead"]().figure([full], View())
    assert "ms @ 59" in overhead.layout.title.text
    assert "tracker share of the step (median)" in overhead.layout.title.text


@pytest.mark.parametrize("instrument_id", IDS)
def test_a_step_range_without_data(instrument_id, full):
    figure = REGISTRY[instrument_id]().figure([full], View(steps=(1000, 2000)))
    assert REGISTRY[instrument_id].title in figure.layout.title.text
    assert x_values(figure).size == 0 or x_values(figure).min() >= 1000


def test_layer_heat_map_keeps_a_spike():
    steps = 50_000
    frame = pd.DataFrame(
        {
            "step": np.arange(steps),
            "quantity": "grad_norm",
            "layer": "0.weight",
            "value": np.ones(steps),
        }
    )
    frame.loc[12_345, "value"] = 1e4
    run = RunData.from_frames("long", frame)
    figure = REGISTRY["grad_norm"]().figure([run], View(y_scale="linear"))
    heatmap = next(t for t in figure.data if isinstance(t, go.Heatmap))
    assert len(heatmap.x) <= 300
    assert np.nanmax(np.asarray(heatmap.z, dtype=float)) == 1e4


def test_overhead_shows_the_budget_and_its_plan(full):
    plan = {
        "budget": 0.05,
        "planned_at": 62,
        "intervals": {"loss": 1, "grad_norm": 10, "alpha": 50, "norm_test": 10},
    }
    scalars, histograms = records_to_frames(through_json(records(60, 0, True)))
    budgeted = RunData.from_frames("budgeted", scalars, histograms, {"budget": plan})
    figure = REGISTRY["overhead"]().figure([budgeted], View())
    title = figure.layout.title.text
    assert "budget 5 % (planned at step 62)" in title
    assert "every 1: loss; every 10: grad_norm, norm_test; every 50: alpha" in title
    share = next(t for t in figure.data if "measured share" in t.name)
    assert min(share.y) >= 4.0 and max(share.y) <= 5.0  # percent: 0.04-0.05 logged
    assert "budget 5 %" in texts(figure)
    plain = REGISTRY["overhead"]().figure([full], View())
    assert "no overhead budget (fixed schedules)" in plain.layout.title.text
    from matplotlib.figure import Figure

    cell = Figure().subfigures(1, 1)
    REGISTRY["overhead"]().draw_report(cell, budgeted, View())
    bottom = cell.axes[1].get_title(loc="left")
    assert bottom.startswith("budget 5 % (planned at step 62): every 1: loss")
    budget_lines = [
        line for line in cell.axes[1].lines if set(line.get_ydata()) == {5.0}
    ]
    assert len(budget_lines) == 1
    assert [text.get_text() for text in cell.axes[1].texts] == ["budget 5 %"]


def test_overhead_says_when_even_the_sparsest_plan_is_over_budget():
    plan = {
        "budget": 0.05,
        "planned_at": 262,
        "intervals": {"loss": 50, "alpha": 50},
        "over_budget": True,
        "planned_share": 0.738,
        "plain_step_ms": 0.619,
    }
    scalars, histograms = records_to_frames(through_json(records(60, 0, True)))
    run = RunData.from_frames("tiny", scalars, histograms, {"budget": plan})
    title = REGISTRY["overhead"]().figure([run], View()).layout.title.text
    assert "Over budget: even this plan costs 73.8 % of a 0.619 ms step" in title
    assert "raise budget= or track fewer quantities" in title
    from matplotlib.figure import Figure

    cell = Figure().subfigures(1, 1)
    REGISTRY["overhead"]().draw_report(cell, run, View())
    assert "Over budget" not in cell.axes[1].get_title(loc="left")
    assert [text.get_text() for text in cell.axes[1].texts] == [
        "budget 5 %: over budget, raise budget= or track fewer quantities"
    ]
