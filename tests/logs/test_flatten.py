"""The one flattener's two outputs agree, and the one reader reads in chunks."""

import math
import subprocess
import sys

import pytest

from cockpit.exceptions import CorruptLogWarning
from cockpit.logs import LogReader
from cockpit.logs.flatten import flatten_columns, flatten_rows
from cockpit.logs.schema import PER_LAYER, STEP, TOTAL, VALUES
from tests.logs.test_reader import line, make_run_dir

RECORDS = [
    {
        STEP: 0,
        VALUES: {
            "loss": {TOTAL: 1.5, "variance": 0.25},
            # A non-float before floats: the columns keep the logged layer order.
            "norm": {TOTAL: 3.0, PER_LAYER: {"b": None, "w": 2.0, "c": 1}},
            "hist": {
                "edges": [0.0, 1.0],
                "counts": [4.0],
                "sample_size": 4,
                PER_LAYER: {"w": {"counts": [3.0], "total": 9}},
            },
        },
    },
    {STEP: 1, VALUES: {"norm": {PER_LAYER: {"w": 4.0, "b": 5.0}}}},
    {STEP: 2, "error": "could not log", VALUES: {"loss": 1.0}},
]


def test_columns_hold_the_rows_by_quantity_and_layer():
    rows, row_hists = flatten_rows(RECORDS)
    columns, column_hists = flatten_columns(RECORDS)
    by_key: dict = {}
    for step, quantity, layer, value in rows:
        steps, values = by_key.setdefault((quantity, layer), ([], []))
        steps.append(step)
        values.append(value)
    assert list(columns) == list(by_key)
    assert list(columns) == [
        ("loss", None),
        ("loss.variance", None),
        ("norm", None),
        ("norm", "b"),
        ("norm", "w"),
        ("norm", "c"),
    ]
    for key, (steps, values) in by_key.items():
        assert columns[key][0] == steps, key
        assert [str(v) for v in columns[key][1]] == [str(v) for v in values], key
    steps, values = columns[("norm", "b")]
    assert steps == [0, 1] and math.isnan(values[0]) and values[1] == 5.0
    assert columns[("norm", "c")] == ([0], [1.0])
    assert column_hists == row_hists
    whole, layer = row_hists
    assert whole[:6] == (0, "hist", None, [0.0, 1.0], None, [4.0])
    assert whole[6] == 4.0 and math.isnan(whole[7])
    assert layer[:6] == (0, "hist", "w", [0.0, 1.0], None, [3.0])
    assert math.isnan(layer[6]) and layer[7] == 9.0


def test_chunks_go_on_where_they_stopped_and_report_bytes(tmp_path):
    text = "".join(line(step, loss=float(step)) for step in range(5))
    make_run_dir(tmp_path / "run", text + '{"step": 5')
    reader = LogReader(tmp_path / "run")
    assert reader.unread_bytes() == len(text) + len('{"step": 5')
    read: list[int] = []
    chunks = reader.chunks(2, read.append)
    assert [r[STEP] for r in next(chunks)] == [0, 1]
    chunks.close()
    assert reader.offset == len(line(0, loss=0.0) + line(1, loss=1.0))
    assert [[r[STEP] for r in c] for c in reader.chunks(2, read.append)] == [
        [2, 3],
        [4],
    ]
    assert sum(read) == len(text) == reader.offset
    with (tmp_path / "run" / "steps.jsonl").open("a") as file:
        file.write(', "values": {}}\nnot json\n')
    with pytest.warns(CorruptLogWarning, match="line 7 of"):
        assert [r[STEP] for r in reader.read_new()] == [5]
    assert reader.unread_bytes() == 0


def test_readers_do_not_import_torch():
    modules = [
        "cockpit.logs.reader",
        "cockpit.logs.flatten",
        "cockpit.logs.tensorboard",
        "cockpit.instruments._reading",
        "cockpit.instruments.report",
        "cockpit.app.export_command",
    ]
    code = (
        f"import sys, importlib; [importlib.import_module(m) for m in {modules!r}];"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'backpack'));"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
