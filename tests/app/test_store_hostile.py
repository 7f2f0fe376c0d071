"""Damaged and hostile runs under LOGDIR: each stays the problem of its own run; the
dashboard's store shows the other runs, and every valid step of the damaged one."""

import json
import os

import pytest

import cockpit.app.store as store_module
from cockpit.app.store import RunStore
from cockpit.instruments import REGISTRY
from tests.app.test_store import append, logdir  # noqa: F401 (fixture)
from tests.instruments.synthetic import step_records

DEEP = '{"step": 9, "values": {"x": ' + "[" * 100_000 + "]" * 100_000 + "}}\n"


def edit_meta(run_dir, **fields):
    meta = json.loads((run_dir / "meta.json").read_text())
    text = json.dumps({**meta, **fields})
    for raw in fields.values():
        if isinstance(raw, RawJson):
            text = text.replace(json.dumps(str(raw)), str(raw))
    (run_dir / "meta.json").write_text(text)


class RawJson(str):
    """A meta.json value written as is (e.g. a number Python's json cannot hold)."""


def test_absurd_start_time_leaves_every_run_listed(logdir):  # noqa: F811
    edit_meta(logdir / "alpha-run", start_time=RawJson("1" + "0" * 400))
    store = RunStore(logdir)
    store.poll()
    assert sorted(store.names()) == ["alpha-run", "group/nested-run"]
    assert store.state("group/nested-run").data.last_step == 2


@pytest.mark.parametrize("absent", [["loss"], "loss", {"loss": 3}, 7])
def test_wrong_absent_field_blanks_no_panel(logdir, absent):  # noqa: F811
    edit_meta(logdir / "alpha-run", absent=absent)
    store = RunStore(logdir)
    store.poll()
    state = store.state("alpha-run")
    assert "absent" not in state.data.meta
    assert any("Ignored malformed fields" in n and "absent" in n for n in state.notices)
    runs = store.runs(["alpha-run", "group/nested-run"])
    for instrument in REGISTRY.values():
        assert instrument().missing_text(runs)
    store.poll()
    assert len([n for n in state.notices if "malformed" in n]) == 1


def test_deeply_nested_line_loses_no_valid_step(logdir):  # noqa: F811
    with (logdir / "alpha-run" / "steps.jsonl").open("a") as file:
        file.write(DEEP)
    append(logdir / "alpha-run", 5)
    store = RunStore(logdir)
    store.poll()
    state = store.state("alpha-run")
    assert state.error is None
    assert state.data.series("loss").steps.tolist() == [0, 1, 2, 3, 4, 5]
    lines = len((logdir / "alpha-run" / "steps.jsonl").read_text().splitlines())
    deep = lines - len(step_records(5))
    assert any(f"line {deep} of" in n and "depth" in n for n in state.notices)


@pytest.mark.parametrize(
    "values",
    [
        {"grad_hist_1d": {"edges": "abc", "counts": [1, 2]}},
        {"grad_hist_1d": {"edges": [0, 1], "counts": [1, 2, 3]}},
        {"grad_hist_1d": {"edges": [[0, 1], [2]], "counts": [1]}},
        {"grad_hist_2d": {"x_edges": [0, 1], "y_edges": [0], "counts": [[1, 2]]}},
        {"loss": "low", "grad_norm": {"total": [1], "per_layer": [2]}},
    ],
)
def test_records_of_wrong_types_are_left_out_and_the_rest_shown(logdir, values):  # noqa: F811
    with (logdir / "alpha-run" / "steps.jsonl").open("a") as file:
        file.write(json.dumps({"step": 5, "values": values}) + "\n")
    append(logdir / "alpha-run", 6)
    store = RunStore(logdir)
    store.poll()
    state = store.state("alpha-run")
    assert state.error is None
    assert state.data.series("loss").steps.tolist() == [0, 1, 2, 3, 4, 6]


@pytest.mark.parametrize("name", ["steps.jsonl", "meta.json"])
def test_run_files_linked_outside_logdir_are_refused(logdir, tmp_path, name):  # noqa: F811
    secret = tmp_path / "secret.json"
    secret.write_text(
        '{"format_version": "1.0", "run_name": "TOP-SECRET", "step": "TOP-SECRET"}\n'
    )
    target = logdir / "alpha-run" / name
    target.unlink()
    os.symlink(secret, target)
    store = RunStore(logdir)
    store.poll()
    state = store.state("alpha-run")
    assert "symbolic link leading outside" in state.error
    shown = [state.error, *state.notices, json.dumps(state.data.meta)]
    assert not any("TOP-SECRET" in text for text in shown)
    assert state.data.last_step is None
    assert store.state("group/nested-run").data.last_step == 2


def test_a_long_run_fills_in_over_polls_without_holding_up_others(
    logdir,  # noqa: F811
    monkeypatch,
):
    for step in range(5, 30):
        append(logdir / "alpha-run", step)
    small = (logdir / "group" / "nested-run" / "steps.jsonl").stat().st_size
    monkeypatch.setattr(store_module, "POLL_BYTES", small + 1)
    store = RunStore(logdir)
    assert store.poll()
    assert store.state("group/nested-run").data.last_step == 2
    first = store.state("alpha-run").data.last_step
    assert first is not None and first < 10
    polls = 1
    while store.poll():
        polls += 1
    assert store.state("alpha-run").data.series("loss").steps.tolist() == list(
        range(30)
    )
    assert polls >= 4
