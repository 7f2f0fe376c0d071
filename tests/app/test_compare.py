import numpy as np
import pandas as pd

from cockpit.app.compare import compare_figure, quantity_options
from cockpit.instruments import PLACEHOLDER_NAME, RunData, View
from cockpit.instruments._figures import AVERAGE


def run(name, losses, layer_values=None):
    rows = [(step, "loss", None, value) for step, value in enumerate(losses)]
    for step, value in enumerate(layer_values or []):
        rows.append((step, "grad_norm", "0.weight", value))
    frame = pd.DataFrame(rows, columns=["step", "quantity", "layer", "value"])
    return RunData.from_frames(name, frame)


def averages(figure):
    return {t.name: t for t in figure.data if t.meta == AVERAGE}


def test_one_average_per_run_legend_sorted_by_newest_value():
    runs = [run("high", [3.0, 2.0, 2.5]), run("low", [1.0, 0.5, 0.25])]
    figure = compare_figure(runs, "loss", View())
    lines = averages(figure)
    assert set(lines) == {"high", "low"}
    np.testing.assert_array_equal(lines["low"].x, [0, 1, 2])
    assert lines["low"].legendrank < lines["high"].legendrank
    title = figure.layout.title.text
    assert "lowest 0.25 (low)" in title and "highest 2.5 (high)" in title


def test_runs_without_the_quantity_are_named_and_all_missing_is_a_placeholder():
    runs = [run("a", [1.0, 2.0]), run("b", [])]
    figure = compare_figure(runs, "loss", View())
    assert set(averages(figure)) == {"a"}
    assert "Not logged by: b" in figure.layout.annotations[-1].text
    empty = compare_figure(runs, "hess_trace", View())
    assert empty.layout.meta == PLACEHOLDER_NAME
    assert "No selected run logged hess_trace" in empty.layout.annotations[0].text
    assert compare_figure([], "loss", View()).layout.meta == PLACEHOLDER_NAME


def test_the_selected_layer_of_a_per_layer_quantity():
    runs = [run("a", [1.0], layer_values=[5.0, 6.0])]
    figure = compare_figure(runs, "grad_norm", View(layer="0.weight"))
    np.testing.assert_array_equal(averages(figure)["a"].x, [0, 1])
    names = [o["value"] for o in quantity_options(runs)]
    assert names == ["grad_norm", "loss"]
