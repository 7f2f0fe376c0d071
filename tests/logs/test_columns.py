"""The columnar cache beside ``steps.jsonl``: same frames, and only while it matches."""

import json

import numpy as np
import pandas as pd
import pytest

from cockpit.exceptions import CorruptLogWarning
from cockpit.logs import LogReader, RunWriter, _columns, load
from cockpit.logs.flatten import records_to_frames


@pytest.fixture(autouse=True)
def small_segments(monkeypatch):
    """Keep what every read decodes, however short (the default is 1 MiB)."""
    monkeypatch.setattr(_columns, "MIN_SEGMENT_BYTES", 1)


def record(step, scale=1.0):
    rng = np.random.default_rng(step)
    per_layer = {"0.weight": float(rng.normal()) * scale, "0.bias": None}
    return {
        "step": step,
        "time": 1.7e9 + step,
        "values": {
            "loss": float("nan") if step == 3 else 1.0 / (step + 1) * scale,
            "grad_norm": {"total": float(rng.random()), "per_layer": per_layer},
            "alpha": {"total": -0.5, "variance": float(rng.random())},
            "grad_hist_1d": {
                "edges": [0.0, 0.5 * scale, 1.0],
                "counts": [int(c) for c in rng.integers(0, 9, 2)],
                "sample_size": 7,
                "total": 7,
                "per_layer": {"0.weight": {"counts": [1, step]}},
            },
            "grad_hist_2d": {
                "x_edges": [0.0, 1.0, 2.0],
                "y_edges": [-1.0, 0.0, 1.0],
                "counts": [[1, 2], [3, step]],
                "sample_size": 6,
                "total": 6,
            },
        },
    }


def write(run_dir, steps, scale=1.0):
    """The run, written without the writer's own cache: these tests are the readers'."""
    with RunWriter(run_dir, {"run_name": run_dir.name}, columns=False) as writer:
        for step in steps:
            writer.submit(record(step, scale))


def from_json(run_dir):
    """The frames straight from the JSON lines, never from a cache."""
    return records_to_frames(LogReader(run_dir).read_new())


def assert_same(run, run_dir):
    scalars, histograms = from_json(run_dir)
    pd.testing.assert_frame_equal(run.scalars, scalars)
    pd.testing.assert_frame_equal(run.histograms, histograms)


def segments(run_dir):
    return sorted(p.name for p in (run_dir / _columns.COLUMNS_DIR).glob("*.arrow"))


def test_second_load_reads_the_cache_and_gives_the_same_frames(tmp_path):
    run_dir = tmp_path / "run"
    write(run_dir, range(30))
    first = load(run_dir)
    size = (run_dir / "steps.jsonl").stat().st_size
    assert segments(run_dir) == [f"0-{size}.arrow"]
    second = load(run_dir)
    assert_same(first, run_dir)
    assert_same(second, run_dir)
    assert np.isnan(second.scalar("loss")[3])
    assert second.scalar("grad_norm", "0.bias").isna().all()
    assert second.histograms["y_edges"].iloc[-1] == [-1.0, 0.0, 1.0]


def test_the_cache_is_used_not_just_written(tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    write(run_dir, range(10))
    load(run_dir)
    calls = []
    monkeypatch.setattr(
        LogReader, "read_new", lambda self, *a: calls.append(self.offset) or []
    )
    run = load(run_dir)
    assert calls == [(run_dir / "steps.jsonl").stat().st_size]
    assert run.scalar("loss").index.tolist() == list(range(10))


def test_appended_steps_extend_the_cache(tmp_path):
    run_dir = tmp_path / "run"
    write(run_dir, range(10))
    load(run_dir)
    size = (run_dir / "steps.jsonl").stat().st_size
    with (run_dir / "steps.jsonl").open("a") as steps:
        for step in range(10, 15):
            steps.write(json.dumps(record(step)) + "\n")
    grown = load(run_dir)
    end = (run_dir / "steps.jsonl").stat().st_size
    assert segments(run_dir) == sorted([f"0-{size}.arrow", f"{size}-{end}.arrow"])
    assert_same(grown, run_dir)
    assert_same(load(run_dir), run_dir)
    assert grown.scalar("loss").index.tolist() == list(range(15))


def test_a_rewritten_log_is_read_from_the_json(tmp_path):
    run_dir = tmp_path / "run"
    write(run_dir, range(10))
    load(run_dir)
    steps = run_dir / "steps.jsonl"
    text = steps.read_text()
    # Same length, other numbers: only the checksum can tell.
    steps.write_text(text.replace('"total":-0.5', '"total":-0.7'))
    assert len(steps.read_text()) == len(text)
    run = load(run_dir)
    assert run.scalar("alpha").eq(-0.7).all()
    assert_same(run, run_dir)


def test_a_truncated_log_drops_the_cache_past_its_end(tmp_path):
    run_dir = tmp_path / "run"
    write(run_dir, range(10))
    load(run_dir)
    steps = run_dir / "steps.jsonl"
    lines = steps.read_text().splitlines(keepends=True)
    steps.write_text("".join(lines[:4]))
    run = load(run_dir)
    assert run.scalar("loss").index.tolist() == [0, 1, 2, 3]
    assert_same(run, run_dir)


def test_corrupt_lines_and_error_records_come_back_from_the_cache(tmp_path):
    run_dir = tmp_path / "run"
    write(run_dir, range(5))
    with (run_dir / "steps.jsonl").open("a") as steps:
        steps.write('{"step": 5, "values": {\n')
        steps.write('{"step": 6, "time": 0, "values": {}, "error": "boom"}\n')
    for _ in range(2):  # the JSON, then the cache
        with pytest.warns(CorruptLogWarning, match="corrupt line 6 of"):
            run = load(run_dir)
        assert [e["error"] for e in run.errors] == ["boom"]
    assert segments(run_dir)


def test_damaged_segments_are_ignored(tmp_path):
    run_dir = tmp_path / "run"
    write(run_dir, range(10))
    load(run_dir)
    (path,) = (run_dir / _columns.COLUMNS_DIR).glob("*.arrow")
    path.write_bytes(b"not arrow at all")
    assert_same(load(run_dir), run_dir)


def test_without_pyarrow_or_a_writable_folder_it_reads_the_json(tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    write(run_dir, range(10))
    (run_dir / _columns.COLUMNS_DIR).write_text("a file where the folder would be")
    assert_same(load(run_dir), run_dir)
    monkeypatch.setattr(_columns, "_pyarrow", lambda: None)
    other = tmp_path / "other"
    write(other, range(10))
    assert_same(load(other), other)
    assert not (other / _columns.COLUMNS_DIR).exists()


def test_short_reads_keep_no_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(_columns, "MIN_SEGMENT_BYTES", 2**20)
    run_dir = tmp_path / "run"
    write(run_dir, range(10))
    load(run_dir)
    assert not (run_dir / _columns.COLUMNS_DIR).exists()


def test_a_cache_written_while_training_covers_only_whole_lines(tmp_path):
    run_dir = tmp_path / "run"
    writer = RunWriter(run_dir, {"run_name": "run"}, columns=False)
    for step in range(5):
        writer.submit(record(step))
    writer.flush()
    with (run_dir / "steps.jsonl").open("a") as steps:
        steps.write('{"step": 5, "val')  # a line being written
    assert load(run_dir).scalar("loss").index.tolist() == [0, 1, 2, 3, 4]
    ((start, end),) = [
        map(int, name.removesuffix(".arrow").split("-")) for name in segments(run_dir)
    ]
    assert (start, (run_dir / "steps.jsonl").read_bytes()[end - 1 : end]) == (0, b"\n")
    writer.close()


@pytest.mark.parametrize(
    "damage",
    [
        {"columns": {"step": ["not", "ints"]}},
        {"metadata": {b"errors": b'"a string, not records"'}},
        {"metadata": {b"warnings": b"[1, 2]"}},
        {"metadata": {b"scalar_rows": b"99999999"}},
    ],
)
def test_segments_of_the_wrong_shape_are_ignored(tmp_path, damage):
    """A segment whose checksum matches but whose content is not what readers write
    (crafted, or from another version) is read from the JSON instead."""
    import pyarrow as pa
    import pyarrow.ipc

    run_dir = tmp_path / "run"
    write(run_dir, range(10))
    load(run_dir)
    (path,) = (run_dir / _columns.COLUMNS_DIR).glob("*.arrow")
    table = pa.ipc.open_file(pa.memory_map(str(path))).read_all()
    for name, values in damage.get("columns", {}).items():
        column = pa.array(values + [values[-1]] * (table.num_rows - len(values)))
        table = table.set_column(table.schema.get_field_index(name), name, column)
    meta = {**table.schema.metadata, **damage.get("metadata", {})}
    table = table.replace_schema_metadata(meta)
    path.unlink()
    with (
        pa.OSFile(str(path), "wb") as file,
        pa.ipc.new_file(file, table.schema) as sink,
    ):
        sink.write_table(table)
    run = load(run_dir)
    assert_same(run, run_dir)
    assert run.errors == []
