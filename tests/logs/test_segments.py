"""The writer keeps the columnar cache as it writes: a first open decodes no JSON."""

import itertools
import shutil
import time

import pandas as pd
import pytest

from cockpit.app.store import RunStore
from cockpit.logs import LogReader, RunWriter, _columns, _format, load
from cockpit.logs._segments import SegmentWriter
from cockpit.logs.flatten import records_to_frames
from tests.logs.test_columns import record


@pytest.fixture
def decoded_lines(monkeypatch):
    """Counts the lines of ``steps.jsonl`` the readers decode."""
    count = [0]
    decode = _format.decode_line

    def counting(line):
        count[0] += 1
        return decode(line)

    for module in ("cockpit.logs.reader", "cockpit.logs._appender"):
        monkeypatch.setattr(f"{module}.decode_line", counting)
    return count


def write(run_dir, steps, segment_bytes, close=True):
    writer = RunWriter(run_dir, {"run_name": run_dir.name})
    writer._appender._segments = SegmentWriter(run_dir, segment_bytes)
    for step in steps:
        writer.submit(record(step))
    writer.flush()
    if close:
        writer.close()
    else:  # the writer sorts lines for the cache when idle, after the flush
        deadline = time.monotonic() + 30
        while writer._appender._segments.pending:
            assert time.monotonic() < deadline, "the cache did not catch up"
            time.sleep(0.01)
    return writer


def segments(run_dir):
    names = (run_dir / _columns.COLUMNS_DIR).glob("*.arrow")
    return sorted(tuple(map(int, p.stem.split("-"))) for p in names)


def from_json(run_dir, tmp_path):
    """The frames decoded from the JSON alone (a copy without the cache)."""
    copy = tmp_path / "json-only"
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns(".columns"))
    return records_to_frames(LogReader(copy).read_new())


def assert_same(run, frames):
    pd.testing.assert_frame_equal(run.scalars, frames[0])
    pd.testing.assert_frame_equal(run.histograms, frames[1])


def test_segments_chain_over_the_whole_log_and_load_decodes_no_line(
    tmp_path, monkeypatch, decoded_lines
):
    monkeypatch.setattr(_columns, "MIN_SEGMENT_BYTES", 1)
    run_dir = tmp_path / "run"
    write(run_dir, range(40), segment_bytes=3000)
    found = segments(run_dir)
    size = (run_dir / "steps.jsonl").stat().st_size
    assert len(found) > 3
    assert found[0][0] == 0 and found[-1][1] == size
    assert all(a[1] == b[0] for a, b in itertools.pairwise(found))
    assert all(end - start >= 3000 for start, end in found[:-1])
    expected = from_json(run_dir, tmp_path)
    decoded_lines[0] = 0
    assert_same(load(run_dir), expected)
    assert decoded_lines[0] == 0


def test_a_killed_writer_leaves_segments_of_a_prefix_and_load_decodes_the_rest(
    tmp_path, decoded_lines
):
    run_dir = tmp_path / "run"
    writer = write(run_dir, range(32), segment_bytes=3000, close=False)
    last_end = segments(run_dir)[-1][1]
    tail = (run_dir / "steps.jsonl").read_bytes()[last_end:].count(b"\n")
    assert tail > 0
    expected = from_json(run_dir, tmp_path)
    decoded_lines[0] = 0
    assert_same(load(run_dir), expected)
    assert decoded_lines[0] == tail  # only the lines after the segments
    writer.close()


def test_the_store_reads_the_writers_segments(tmp_path, decoded_lines):
    run_dir = tmp_path / "logs" / "run"
    write(run_dir, range(30), segment_bytes=3000)
    decoded_lines[0] = 0
    store = RunStore(tmp_path / "logs")
    store.poll()
    state = store.state("run")
    reference = records_to_frames(LogReader(run_dir).read_new())[0]
    series = state.data.series("grad_norm", "0.weight")
    rows = reference[
        (reference["quantity"] == "grad_norm") & (reference["layer"] == "0.weight")
    ]
    assert series.values.tolist() == rows["value"].tolist()
    assert state.reader.unread_bytes() == 0


def test_a_short_run_keeps_no_segment_and_a_faulty_one_stops_them(tmp_path):
    run_dir = tmp_path / "run"
    write(run_dir, range(5), segment_bytes=2**20)
    assert not (run_dir / _columns.COLUMNS_DIR).exists()
    other = tmp_path / "other"
    writer = RunWriter(other, {"run_name": "other"})
    segment_writer = SegmentWriter(other, 3000)
    writer._appender._segments = segment_writer
    (other / _columns.COLUMNS_DIR).write_text("a file where the folder would be")
    for step in range(30):
        writer.submit(record(step))
    writer.close()
    assert not segment_writer.active
    assert_same(load(other), from_json(other, tmp_path))


def test_overlapping_chains_the_furthest_is_read(tmp_path, monkeypatch, decoded_lines):
    monkeypatch.setattr(_columns, "MIN_SEGMENT_BYTES", 1)
    run_dir = tmp_path / "run"
    write(run_dir, range(40), segment_bytes=3000)
    writers = segments(run_dir)
    reader = LogReader(run_dir)  # a reader's segment from 0 to mid-way
    records = reader.read_new(max_bytes=writers[1][1] + 10)
    assert _columns.write_segment(reader, 0, 0, records, []) is not None
    assert reader.offset not in {end for _, end in writers}
    expected = from_json(run_dir, tmp_path)
    decoded_lines[0] = 0
    assert_same(load(run_dir), expected)
    assert decoded_lines[0] == 0


def test_a_store_reading_the_cache_a_part_per_poll_reads_it_all(tmp_path, monkeypatch):
    """A poll that stops at its budget of cached bytes leaves the JSON after it to
    the next poll: decoding it would leave a reader's segment across the writer's,
    and the polls after it would decode the rest of the run's JSON."""
    monkeypatch.setattr("cockpit.app.store.SEGMENT_BYTES", 5000)
    monkeypatch.setattr(_columns, "MIN_SEGMENT_BYTES", 1)
    run_dir = tmp_path / "logs" / "run"
    write(run_dir, range(60), segment_bytes=3000)
    written = segments(run_dir)
    store = RunStore(tmp_path / "logs")
    polls = 0
    while not polls or store.state("run").reader.unread_bytes():
        store.poll()
        polls += 1
    assert polls > 2
    assert segments(run_dir) == written  # no segment of decoded JSON


def test_after_a_segment_the_rest_of_a_closed_log_is_one_however_short(tmp_path):
    """Else ``load`` joins cached and decoded rows: a copy of the whole frame."""
    run_dir = tmp_path / "run"
    write(run_dir, range(40), segment_bytes=3000)
    found = segments(run_dir)
    size = (run_dir / "steps.jsonl").stat().st_size
    assert found[-1][1] == size
    assert found[-1][1] - found[-1][0] < _columns.MIN_SEGMENT_BYTES


def test_a_short_log_alone_is_left_to_the_json(tmp_path):
    run_dir = tmp_path / "run"
    write(run_dir, range(5), segment_bytes=2**20)
    assert segments(run_dir) == []
