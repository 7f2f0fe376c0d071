import pytest
from dash import no_update

from cockpit.app import callbacks, redraw
from cockpit.app.layout import WHOLE_MODEL, graph_id
from cockpit.app.server import create_app
from cockpit.app.store import RunStore
from cockpit.app.throttle import Throttle
from cockpit.instruments import PLACEHOLDER_NAME, REGISTRY, View
from tests.app.test_store import append
from tests.instruments.synthetic import write_run


@pytest.fixture
def logdir(tmp_path):
    write_run(tmp_path / "full-run", steps=6)
    write_run(tmp_path / "economy-run", steps=4, curvature=False)
    return tmp_path


@pytest.fixture
def store(logdir):
    return RunStore(logdir)


def find(component, component_id):
    """The component with ``component_id`` in a layout tree."""
    if getattr(component, "id", None) == component_id:
        return component
    children = getattr(component, "children", None)
    for child in children if isinstance(children, list) else [children]:
        if child is not None and not isinstance(child, str):
            found = find(child, component_id)
            if found is not None:
                return found
    return None


def texts(children):
    return [child.children for child in children]


def test_first_poll_selects_the_newest_run_and_reads_only_it(store):
    version, selection, messages, status = callbacks.poll(store, None, "")
    assert version["version"] == store.version
    assert selection == ["economy-run"]  # written last
    assert messages == []
    assert status.startswith("2 runs")
    assert store.state("economy-run").opened
    assert not store.state("full-run").opened  # listed from meta.json alone
    options, count = callbacks.run_options(store, selection, "")
    assert [o["value"] for o in options] == ["economy-run", "full-run"]
    labels = [o["label"] for o in options]
    assert labels == ["economy-run (finished, step 3)", "full-run (finished)"]
    assert count == ""


def test_later_polls_send_nothing_unless_something_changed(store, logdir):
    shown, *_ = callbacks.poll(store, None, "")
    assert callbacks.poll(store, ["economy-run"], "", shown) == (no_update,) * 4
    append(logdir / "economy-run", 4, curvature=False)
    version, selection, _, _ = callbacks.poll(store, ["economy-run"], "", shown)
    assert version["version"] > shown["version"]
    assert selection is no_update
    options, _ = callbacks.run_options(store, ["economy-run"], None)
    assert "step 4" in options[0]["label"]


def test_selecting_a_run_reads_it(store, logdir):
    shown, *_ = callbacks.poll(store, None, "")
    version, *_ = callbacks.poll(store, ["full-run"], "", shown)
    assert version["version"] > shown["version"]
    assert store.state("full-run").data.last_step == 5


def test_new_data_waits_for_the_gap(store, logdir):
    shown, *_ = callbacks.poll(store, None, "")
    append(logdir / "economy-run", 4, curvature=False)
    assert (
        callbacks.poll(store, ["economy-run"], "", shown, gap_s=60) == (no_update,) * 4
    )
    version, *_ = callbacks.poll(store, ["economy-run"], "", {**shown, "at": 0.0}, 60)
    assert version["version"] > shown["version"]


def test_a_second_page_catches_up(store):
    callbacks.poll(store, None, "")
    version, *_ = callbacks.poll(store, ["full-run"], "", {})
    assert version["version"] == store.version


def test_throttle_gap():
    throttle = Throttle(shortest_s=1.0)
    assert throttle.gap() == 1.0
    throttle.record(0.1, redraw=1)
    assert throttle.gap() == 1.0
    for version in range(2, 22):
        throttle.record(0.8, version)
    assert throttle.gap() == pytest.approx(2.4, rel=1e-3)


def test_throttle_adds_up_the_pieces_of_one_redraw():
    throttle = Throttle(shortest_s=0.1, factor=2.0)
    for _ in range(4):
        throttle.record(0.25, redraw=7)
    assert throttle.gap() == pytest.approx(2.0)  # 2 x (4 x 0.25)
    throttle.record(0.5, redraw=8)  # the first redraw's total is the redraw time
    assert throttle.gap() == pytest.approx(2.0)
    throttle.record(0.0, redraw=9)  # 0.7 x 1.0 + 0.3 x 0.5
    assert throttle.gap() == pytest.approx(2 * 0.85)


def test_query_string_preselects_and_refuses(store):
    search = "?run=full-run&run=economy-run&run=../etc&run=/etc/passwd"
    _, selection, messages, _ = callbacks.poll(store, None, search)
    assert selection == ["full-run", "economy-run"]
    shown = " ".join(texts(messages))
    assert "Refused run name '../etc'" in shown
    assert "Refused run name '/etc/passwd'" in shown


def test_broken_run_is_flagged(store, logdir):
    (logdir / "full-run" / "meta.json").write_text("{")
    _, selection, messages, _ = callbacks.poll(store, None, "")
    options, _ = callbacks.run_options(store, selection, None)
    label = next(o["label"] for o in options if o["value"] == "full-run")
    assert label.startswith("⚠ full-run")
    assert any("full-run: LogFormatError" in text for text in texts(messages))


def test_many_notices_are_summarized(store, logdir):
    with (logdir / "economy-run" / "steps.jsonl").open("a") as file:
        file.write("garbage\n" * 5)
    _, _, messages, _ = callbacks.poll(store, None, "")
    shown = texts(messages)
    assert len(shown) == 4
    assert shown[-1] == "economy-run: ... and 2 more"


def test_toggle_pause():
    assert callbacks.toggle_pause(0) == (False, "Pause")
    assert callbacks.toggle_pause(None) == (False, "Pause")
    assert callbacks.toggle_pause(1) == (True, "Resume")
    assert callbacks.toggle_pause(2) == (False, "Pause")


def test_view_from_controls():
    assert callbacks.view(WHOLE_MODEL, None, None, "auto", "linear") == View()
    chosen = callbacks.view("0.bias", 3, "10", "log", "log")
    assert chosen == View(layer="0.bias", steps=(3, 10), y_scale="log", x_log=True)
    assert callbacks.view(None, "x", "", "weird", None) == View()


def test_layer_options(store):
    store.poll()
    options = callbacks.layer_options(store, ["full-run"])
    assert options[0] == {"label": "whole model", "value": WHOLE_MODEL}
    assert [o["value"] for o in options[1:]] == [
        "0.weight",
        "0.bias",
        "2.weight",
        "2.bias",
    ]
    assert callbacks.layer_options(store, None) == options[:1]


def test_figure_cache_redraws_only_what_changed(store, logdir):
    store.poll()
    cache = callbacks.FigureCache({key: cls() for key, cls in REGISTRY.items()})
    runs = store.runs(["economy-run"])
    figures, keys = cache.figures(runs, View(), None)
    assert no_update not in figures
    placeholder = figures[list(REGISTRY).index("hess_max_ev")]
    assert placeholder.layout.meta == PLACEHOLDER_NAME
    again, same = cache.figures(runs, View(), keys)
    assert again == [no_update] * len(REGISTRY) and same == keys
    append(logdir / "economy-run", 4, curvature=False)
    store.poll()
    figures, _ = cache.figures(runs, View(), keys)
    redrawn = {
        key for key, f in zip(REGISTRY, figures, strict=True) if f is not no_update
    }
    assert "loss" in redrawn and "grad_norm" in redrawn
    assert "hess_max_ev" not in redrawn  # still no curvature: the placeholder stays
    figures, _ = cache.figures(runs, View(y_scale="log"), keys)
    assert no_update not in figures


def test_a_fresh_page_gets_every_figure(store):
    store.poll()
    cache = callbacks.FigureCache({key: cls() for key, cls in REGISTRY.items()})
    runs = store.runs(["full-run"])
    cache.figures(runs, View(), None)
    figures, _ = cache.figures(runs, View(), {})
    assert no_update not in figures


def test_app_layout_has_a_graph_per_instrument(logdir):
    app = create_app(logdir)
    layout = str(app.layout)
    for key in REGISTRY:
        assert graph_id(key) in layout
    for group in ("step_size", "gradients", "curvature", "performance", "overhead"):
        assert f"group-{group}" in layout
    assert app.server.config["cockpit_store"].logdir == logdir.resolve()
    graph = find(app.layout, "alpha-graph")
    assert graph.config["toImageButtonOptions"] == {
        "format": "png",
        "filename": "alpha",
    }


def test_only_new_data_waits_for_a_section_out_of_view(store):
    store.poll()
    in_view = ["group-compare", "group-step_size"]
    runs = store.runs(["full-run"])
    shown = redraw.scene(runs, View())
    assert redraw.deferred("group-performance", in_view, shown, shown)
    assert not redraw.deferred("group-step_size", in_view, shown, shown)
    # a new selection or view, a section never drawn, an unknown view: drawn now
    other_runs = redraw.scene(store.runs(["full-run", "economy-run"]), View())
    other_view = redraw.scene(runs, View(y_scale="log"))
    for wanted in (other_runs, other_view):
        assert wanted != shown
        assert not redraw.deferred("group-performance", in_view, shown, wanted)
    assert not redraw.deferred("group-performance", in_view, None, shown)
    assert not redraw.deferred("group-performance", None, shown, shown)
