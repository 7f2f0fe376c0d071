"""Damaged and hostile logs: the reader skips what it cannot read, with a warning
naming the line, and returns every valid step; it never crashes, hangs or holds an
over-long line whole."""

import os
import subprocess
import sys
import warnings

import pytest

from cockpit.exceptions import CorruptLogWarning, LogFormatError
from cockpit.logs import LogReader, load
from tests.logs.test_reader import line, make_run_dir

HOSTILE_LINES = {
    "deep nesting": '{"step": 1, "values": {"x": '
    + "[" * 100_000
    + "]" * 100_000
    + "}}",
    "huge integer": '{"step": 1, "values": {"x": ' + "9" * 5000 + "}}",
    "number out of range": '{"step": 1, "values": {"loss": 1e999999}}',
    "step out of int64": '{"step": 18446744073709551615, "values": {}}',
    "not an object": "[1, 2]",
    "NaN literal": '{"step": 1, "values": {"loss": NaN}}',
}


@pytest.mark.parametrize("bad", HOSTILE_LINES.values(), ids=HOSTILE_LINES.keys())
def test_hostile_line_is_skipped_and_named(tmp_path, bad):
    make_run_dir(tmp_path / "run", line(0, loss=1.0) + bad + "\n" + line(2, loss=0.5))
    with pytest.warns(CorruptLogWarning, match=r"Skipped corrupt line 2 of .*steps"):
        run = load(tmp_path / "run")
    assert run.scalar("loss").index.tolist() == [0, 2]


def test_reader_keeps_the_valid_steps_of_a_read_that_met_a_hostile_line(tmp_path):
    bad = HOSTILE_LINES["deep nesting"]
    make_run_dir(tmp_path / "run", line(0, loss=1.0) + bad + "\n")
    reader = LogReader(tmp_path / "run")
    with pytest.warns(CorruptLogWarning):
        first = reader.read_new()
    assert [r["step"] for r in first] == [0]
    with (tmp_path / "run" / "steps.jsonl").open("a") as file:
        file.write(line(2, loss=0.5))
    assert [r["step"] for r in reader.read_new()] == [2]


def test_over_long_line_is_skipped_without_reading_it_whole(tmp_path):
    long = '{"step": 1, "values": {"x": "' + "a" * 5000 + '"}}\n'
    make_run_dir(tmp_path / "run", line(0) + long + line(2))
    reader = LogReader(tmp_path / "run", max_line_bytes=1000)
    with pytest.warns(CorruptLogWarning, match=r"line 2 of .*5,0\d\d bytes, over"):
        assert [r["step"] for r in reader.read_new()] == [0, 2]


def test_over_long_last_line_waits_for_its_newline(tmp_path):
    make_run_dir(tmp_path / "run", line(0) + '{"step": 1, "values": "' + "a" * 3000)
    reader = LogReader(tmp_path / "run", max_line_bytes=1000)
    assert [r["step"] for r in reader.read_new()] == [0]
    with (tmp_path / "run" / "steps.jsonl").open("a") as file:
        file.write('"}\n' + line(2))
    with pytest.warns(CorruptLogWarning, match="line 2 of"):
        assert [r["step"] for r in reader.read_new()] == [2]


def test_a_50_mb_line_costs_little_memory(tmp_path):
    """The issue: a 50 MB line cost about 720 MB; now it is skipped in blocks."""
    run = tmp_path / "run"
    make_run_dir(run, line(0, loss=1.0))
    with (run / "steps.jsonl").open("a") as file:
        file.write('{"step": 1, "values": {"h": [' + "1.5," * 12_500_000 + "1]}}\n")
        file.write(line(2, loss=0.5))
    # VmHWM, not ru_maxrss: the latter keeps the forked parent's peak across exec.
    script = (
        "import re, warnings, cockpit, pandas\n"
        "warnings.simplefilter('ignore')\n"
        "def peak():\n"
        "    status = open('/proc/self/status').read()\n"
        "    return int(re.search(r'VmHWM:\\s+(\\d+)', status).group(1)) // 1024\n"
        "base = peak()\n"
        f"run = cockpit.load({str(run)!r})\n"
        "assert run.scalar('loss').index.tolist() == [0, 2]\n"
        "print(peak() - base)\n"
    )
    grown = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert int(grown.stdout) < 100, f"peak grew by {grown.stdout} MB"


def test_many_corrupt_lines_give_a_bounded_number_of_warnings(tmp_path):
    make_run_dir(tmp_path / "run", "x\n" * 1000 + line(1000))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        records = LogReader(tmp_path / "run").read_new()
    assert [r["step"] for r in records] == [1000]
    messages = [str(w.message) for w in caught]
    assert len(messages) == 21
    assert messages[-1].startswith("Skipped 980 more corrupt lines of")
    assert messages[-1].endswith("lines 21 to 1000.")


def test_read_new_stops_after_max_bytes_and_goes_on_later(tmp_path):
    make_run_dir(tmp_path / "run", "".join(line(step) for step in range(10)))
    reader = LogReader(tmp_path / "run")
    first = reader.read_new(max_bytes=3 * len(line(0)))
    assert [r["step"] for r in first] == [0, 1, 2]
    assert [r["step"] for r in reader.read_new()] == list(range(3, 10))


def test_steps_file_that_is_a_directory_is_refused(tmp_path):
    make_run_dir(tmp_path / "run", "")
    (tmp_path / "run" / "steps.jsonl").unlink()
    (tmp_path / "run" / "steps.jsonl").mkdir()
    with pytest.raises(LogFormatError, match=r"steps\.jsonl is a directory"):
        load(tmp_path / "run")


@pytest.mark.parametrize("name", ["steps.jsonl", "meta.json"])
def test_files_linked_outside_the_root_are_refused(tmp_path, name):
    root = tmp_path / "logs"
    make_run_dir(root / "run", line(0))
    secret = tmp_path / "secret.txt"
    secret.write_text('{"format_version": "1.0", "run_name": "TOP-SECRET"}\n')
    (root / "run" / name).unlink()
    os.symlink(secret, root / "run" / name)
    reader = LogReader(root / "run", root=root)
    with pytest.raises(LogFormatError, match="symbolic link leading outside") as err:
        reader.meta()
        reader.read_new()
    assert "TOP-SECRET" not in str(err.value)


def test_files_linked_inside_the_root_are_read(tmp_path):
    root = tmp_path / "logs"
    make_run_dir(root / "run", line(0))
    make_run_dir(root / "other", "")
    (root / "other" / "steps.jsonl").unlink()
    os.symlink(root / "run" / "steps.jsonl", root / "other" / "steps.jsonl")
    assert len(LogReader(root / "other", root=root).read_new()) == 1


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("start_time", 1e300),
        ("start_time", "yesterday"),
        ("absent", ["loss"]),
        ("absent", "loss"),
        ("absent", {"loss": 3}),
        ("parameters", {"w": "3x3"}),
        ("run_name", {"a": 1}),
        ("budget", 0.05),
        ("budget", {"budget": "5%", "intervals": {}}),
        ("budget", {"budget": 0.05, "intervals": {"loss": "often"}}),
        ("budget", {"budget": 0.05, "intervals": {"loss": 0}}),
    ],
)
def test_malformed_meta_fields_are_dropped_with_a_warning(tmp_path, field, value):
    make_run_dir(tmp_path / "run", line(0), meta={field: value, "model": "Net"})
    with pytest.warns(CorruptLogWarning, match=f"Ignored malformed fields .*{field}"):
        meta = LogReader(tmp_path / "run").meta()
    assert field not in meta
    assert meta["model"] == "Net"


def test_deeply_nested_meta_is_refused_not_a_crash(tmp_path):
    make_run_dir(tmp_path / "run", "")
    (tmp_path / "run" / "meta.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(LogFormatError, match="not valid JSON"):
        load(tmp_path / "run")
