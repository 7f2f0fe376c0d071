"""Format 3.0 leaves out the notes a reader can tell, and every reader puts them back."""

import json
import math

from hypothesis import given, settings
from hypothesis import strategies as st

import cockpit
from cockpit.logs import LogReader, RunWriter, _columns
from cockpit.logs._format import decode_line, encode_record
from cockpit.logs._note_table import NoteTable

PATHS = st.sampled_from(["a", "b.total", "b.per_layer.x", "c"])
NAN = math.nan
REASONS = st.sampled_from(["G2 <= 0", "singular block", "no samples"])


@st.composite
def noted_records(draw):
    """Records whose null values some notes explain, as the tracker logs them."""
    records = []
    for step in range(draw(st.integers(1, 12))):
        nonfinite = draw(st.lists(PATHS, unique=True))
        noted = (
            draw(st.lists(st.sampled_from(nonfinite), unique=True)) if nonfinite else []
        )
        record = {"step": step, "values": {"v": 1.0}}
        if nonfinite:
            record["nonfinite"] = nonfinite
        if draw(st.booleans()):  # a note on a finite value, which nothing predicts
            noted.append("d")
        if noted:
            record["notes"] = {path: draw(REASONS) for path in noted}
        records.append(record)
    return records


@settings(max_examples=200, deadline=None)
@given(noted_records())
def test_notes_read_back_exactly_as_logged(records):
    written, read = NoteTable(), NoteTable()
    for record in records:
        line, _ = encode_record(record, written)
        decoded = decode_line(line)
        read.expand(decoded)
        assert decoded == record


def _repeated_notes(steps):
    notes = {"b.total": "G2 <= 0", "c": "singular block"}
    return [
        {"step": s, "values": {"b": {"total": NAN}, "c": NAN}, "notes": notes}
        for s in range(steps)
    ]


def test_repeated_notes_are_written_once_and_read_on_every_step(tmp_path):
    records = _repeated_notes(5)
    with RunWriter(tmp_path / "run", {}) as writer:
        for record in records:
            writer.submit(record)
    lines = (tmp_path / "run" / "steps.jsonl").read_text().splitlines()
    assert ["notes" in json.loads(line) for line in lines] == [True] + [False] * 4
    for got, want in zip(LogReader(tmp_path / "run").read_new(), records, strict=True):
        assert got["notes"] == want["notes"]


def test_a_record_without_notes_after_noted_ones_reads_without(tmp_path):
    records = _repeated_notes(2)
    records.append({"step": 2, "values": {"b": {"total": NAN}, "c": NAN}})
    with RunWriter(tmp_path / "run", {}) as writer:
        for record in records:
            writer.submit(record)
    last = LogReader(tmp_path / "run").read_new()[-1]
    assert "notes" not in last and last["nonfinite"] == ["b.total", "c"]


def test_a_reader_starting_after_a_segment_gets_the_notes_known_there(
    tmp_path, monkeypatch
):
    monkeypatch.setattr(_columns, "MIN_SEGMENT_BYTES", 0)
    records = _repeated_notes(6)
    run_dir = tmp_path / "run"
    with RunWriter(run_dir, {}, columns=False) as writer:
        for record in records[:3]:
            writer.submit(record)
    cockpit.load(run_dir)  # keeps a segment of the first three lines
    assert list((run_dir / ".columns").glob("*.arrow"))
    with (run_dir / "steps.jsonl").open("a") as file:
        table = NoteTable()
        for record in records:  # the writer's lines for all six, last three appended
            line, _ = encode_record(record, table)
            if record["step"] >= 3:
                file.write(line + "\n")
    reader = LogReader(run_dir)
    (segment,) = _columns.read_segments(reader)
    assert segment.notes == records[0]["notes"]
    later = reader.read_new()
    assert [r["step"] for r in later] == [3, 4, 5]
    assert all(r["notes"] == records[0]["notes"] for r in later)


def test_a_line_encoded_alone_reads_without_notes_after_noted_ones(tmp_path):
    records = _repeated_notes(2)
    unexplained = {"step": 2, "values": {"b": {"total": NAN}, "c": NAN}}
    with RunWriter(tmp_path / "run", {}) as writer:
        for record in records:
            writer.submit(record)
    with (tmp_path / "run" / "steps.jsonl").open("a") as file:
        file.write(encode_record(unexplained)[0] + "\n")  # as a benchmark appends
    last = LogReader(tmp_path / "run").read_new()[-1]
    assert last["step"] == 2 and "notes" not in last
