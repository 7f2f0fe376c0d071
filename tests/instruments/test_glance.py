"""Panels that read at a glance (issue 14, item 5): synthetic records in, figures out."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from cockpit.instruments import REGISTRY, RunData, View
from cockpit.instruments._bulk import bulk_limits


def scalars(name: str, columns: dict[str, tuple[np.ndarray, np.ndarray]]) -> RunData:
    """A run from ``{quantity: (steps, values)}``, totals only."""
    parts = [
        pd.DataFrame(
            {"step": steps, "quantity": quantity, "layer": None, "value": values}
        )
        for quantity, (steps, values) in columns.items()
    ]
    return RunData.from_frames(name, pd.concat(parts, ignore_index=True))


def alpha_with_outlier() -> RunData:
    rng = np.random.default_rng(0)
    values = rng.normal(0.0, 0.5, 400)
    values[250] = -2500.0
    return scalars("r", {"alpha": (np.arange(400), values)})


def report_cell(instrument_id: str, run: RunData) -> Figure:
    figure = Figure(figsize=(7, 4), layout="constrained")
    FigureCanvasAgg(figure)
    REGISTRY[instrument_id]().draw_report(figure, run, View(max_points=4000))
    return figure


def test_bulk_limits_leave_out_a_far_outlier_only():
    values = np.linspace(-1.0, 1.0, 200)
    assert bulk_limits(values) is None
    with_outlier = np.append(values, -2500.0)
    assert bulk_limits(with_outlier) == pytest.approx((-1.0, 1.0))
    # A falling loss keeps its start: more than 5 % of the points are high.
    loss = 2.3 * np.exp(-np.arange(500) / 40)
    assert bulk_limits(loss) is None
    # On a log axis the same in decades.
    log_values = np.append(np.logspace(-2, 0, 100), 1e9)
    low, high = bulk_limits(log_values, log=True)
    assert (low, high) == pytest.approx((1e-2, 1.0))


def test_alpha_history_follows_the_bulk_and_marks_the_outlier():
    figure = REGISTRY["alpha"]().figure([alpha_with_outlier()], View())
    low, high = figure.layout.yaxis2.range
    assert -5 < low < -1 and 1 < high < 5
    marks = [t for t in figure.data if t.name == "r outside the axis"]
    assert len(marks) == 1
    assert list(marks[0].x) == [250]
    assert marks[0].y[0] == pytest.approx(low)
    assert marks[0].customdata[0] == -2500.0
    assert marks[0].marker.symbol == "triangle-down"


def test_a_panel_without_outliers_keeps_plotly_autorange():
    rng = np.random.default_rng(1)
    run = scalars("r", {"alpha": (np.arange(300), rng.normal(0, 0.5, 300))})
    figure = REGISTRY["alpha"]().figure([run], View())
    assert figure.layout.yaxis2.range is None
    assert not [t for t in figure.data if "outside the axis" in (t.name or "")]


def test_every_history_panel_follows_the_bulk():
    """A generic lines panel (grad_norm, log axis) clips the spike too."""
    values = 1.0 + 0.1 * np.sin(np.arange(300) / 10)
    values[100] = 1e6
    run = scalars("r", {"grad_norm": (np.arange(300), values)})
    figure = REGISTRY["grad_norm"]().figure([run], View())
    low, high = figure.layout.yaxis.range  # log10 units: the values are 0.9 to 1.1
    assert -0.2 < low < high < 0.2
    assert any(t.name == "r outside the axis" for t in figure.data)


def test_report_history_follows_the_bulk_and_marks_the_outlier():
    figure = report_cell("alpha", alpha_with_outlier())
    history = figure.axes[1]
    low, high = history.get_ylim()
    assert -5 < low < -1 and 1 < high < 5
    marks = [line for line in history.lines if line.get_marker() == "v"]
    assert len(marks) == 1
    assert list(marks[0].get_xdata()) == [250]
    assert marks[0].get_ydata()[0] == pytest.approx(low)


def test_alpha_key_labels_sit_apart():
    figure = REGISTRY["alpha"]().figure([alpha_with_outlier()], View())
    key = next(t for t in figure.data if t.text is not None)
    places = dict(zip(key.text, key.textposition, strict=True))
    assert places["start"].endswith("left")
    assert places["opposite side"].endswith("right")
    cell = report_cell("alpha", alpha_with_outlier())
    labels = {t.get_text(): t for t in cell.axes[0].texts}
    assert labels["start"].get_ha() == "right"
    assert labels["opposite side"].get_ha() == "left"


def test_log_axes_label_every_tick_in_full():
    """plotly labels ticks between decades with a bare digit unless given a format."""
    rng = np.random.default_rng(2)
    run = scalars("r", {"grad_norm": (np.arange(100), rng.uniform(0.01, 10, 100))})
    figure = REGISTRY["grad_norm"]().figure([run], View())
    assert figure.layout.yaxis.type == "log"
    assert figure.layout.yaxis.tickformat == "~s"
    linear = REGISTRY["grad_norm"]().figure([run], View(y_scale="linear"))
    assert linear.layout.yaxis.tickformat is None


def test_batch_size_axis_names_only_what_is_drawn():
    steps = np.arange(50)
    run = scalars(
        "r",
        {
            "gradient_noise_scale": (steps, np.linspace(100, 300, 50)),
            "batch_size": (steps, np.full(50, 64.0)),
        },
    )
    figure = REGISTRY["gradient_noise_scale"]().figure([run], View())
    assert figure.layout.yaxis.title.text == "noise scale / batch size"
    with_cabs = scalars(
        "c",
        {
            "gradient_noise_scale": (steps, np.linspace(100, 300, 50)),
            "cabs": (steps, np.linspace(30, 60, 50)),
            "batch_size": (steps, np.full(50, 64.0)),
        },
    )
    figure = REGISTRY["gradient_noise_scale"]().figure([with_cabs], View())
    assert figure.layout.yaxis.title.text == "noise scale / CABS / batch size"


def test_learning_rate_axis_is_linear_for_a_constant_and_log_for_a_decay():
    steps = np.arange(100)
    constant = scalars("c", {"lr": (steps, np.full(100, 0.05))})
    figure = REGISTRY["lr"]().figure([constant], View())
    assert figure.layout.yaxis.type == "linear"
    decay = scalars("d", {"lr": (steps, 0.1 * 0.9**steps)})
    assert REGISTRY["lr"]().figure([decay], View()).layout.yaxis.type == "log"
    asked = REGISTRY["lr"]().figure([constant], View(y_scale="log"))
    assert asked.layout.yaxis.type == "log"


def test_moving_average_of_a_sparse_quantity_sits_on_its_logged_steps():
    """Every 10th step: the average is one point per logged value, not a step grid."""
    steps = np.arange(0, 2000, 10)
    values = 5.0 + np.sin(steps / 100.0)
    run = scalars("r", {"hess_max_ev": (steps, values)})
    figure = REGISTRY["hess_max_ev"]().figure([run], View())
    average = next(t for t in figure.data if t.meta == "moving average")
    assert list(average.x) == list(steps)
    cell = report_cell("hess_max_ev", run)
    line = next(x for x in cell.axes[0].lines if x.get_gid() == "moving average")
    assert list(line.get_xdata()) == list(steps)


def test_gradient_heat_map_keeps_a_shrinking_distribution_visible():
    """Gradients 1000 times smaller at the end still fill the heat map's height."""
    rng = np.random.default_rng(3)
    run = RunData("r")
    for step in range(40):
        values = rng.standard_t(3, 4000) * 10.0 ** (-step / 13)
        counts, edges = np.histogram(values, bins=32)
        run._add_histogram(step, "grad_hist_1d", None, edges, None, counts)
    figure = REGISTRY["grad_hist_1d"]().figure([run], View())
    heat = next(t for t in figure.data if t.type == "heatmap")
    z = np.asarray(heat.z, dtype=float)  # [bins, steps]
    filled = np.isfinite(z).sum(axis=0)
    assert filled[-1] >= 0.5 * filled[0] > 0
    assert min(heat.y) >= -1 and max(heat.y) <= 1
    assert "scaled per step" in figure.layout.title.text


def kfac_run(keys: dict[str, list[float]]) -> RunData:
    layers = ["0.weight", "0.bias"]
    frame = pd.DataFrame(
        [
            {"step": 0, "quantity": f"kfac_block.{key}", "layer": layer, "value": v}
            for key, values in keys.items()
            for layer, v in zip(layers, values, strict=True)
        ]
    )
    return RunData.from_frames("k", frame)


def test_kfac_panel_shows_the_condition_over_the_nonzero_spectrum():
    run = kfac_run(
        {
            "max_eigenvalue": [2.0, 1.0],
            "condition": [np.nan, np.nan],
            "nonzero_condition": [300.0, 20.0],
        }
    )
    figure = REGISTRY["kfac_block"]().figure([run], View())
    bars = next(t for t in figure.data if t.name == "k nonzero_condition")
    assert list(bars.y) == [300.0, 20.0]
    assert not [t for t in figure.data if t.name == "k singular"]
    titles = [a.text for a in figure.layout.annotations]
    assert "condition, nonzero spectrum (x: none)" in titles
    cell = report_cell("kfac_block", run)
    assert cell.axes[1].get_title(loc="left").startswith("condition, nonzero")
    # A log written before nonzero_condition existed: the plain one, singular marked.
    old = kfac_run({"max_eigenvalue": [2.0, 1.0], "condition": [np.nan, 4.0]})
    figure = REGISTRY["kfac_block"]().figure([old], View())
    singular = next(t for t in figure.data if t.name == "k singular")
    assert list(singular.x) == ["0.weight"]
