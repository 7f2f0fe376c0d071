import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cockpit.exceptions import LogFormatError
from cockpit.logs import FORMAT_VERSION
from cockpit.logs._format import check_version, decode_line, encode_record
from cockpit.logs.flatten import flatten_rows


def test_encode_is_one_compact_json_line():
    line, nonfinite = encode_record(
        {"step": 3, "time": 1.5, "values": {"loss": 0.25, "name": "x", "ok": True}}
    )
    assert "\n" not in line
    assert " " not in line
    assert json.loads(line) == {
        "step": 3,
        "time": 1.5,
        "values": {"loss": 0.25, "name": "x", "ok": True},
    }
    assert nonfinite == []
    assert "nonfinite" not in json.loads(line)


def test_nonfinite_values_become_null_and_are_listed():
    record = {
        "step": 12,
        "time": 0.0,
        "values": {
            "loss": math.nan,
            "grad_norm": {"total": math.inf, "per_layer": {"0.weight": -math.inf}},
            "grad_hist_1d": {"edges": [0.0, 1.0], "counts": [1.0, 2.0, 3.0, math.nan]},
            "fine": 1.0,
        },
    }
    line, nonfinite = encode_record(record)
    expected = [
        "loss",
        "grad_norm.total",
        "grad_norm.per_layer.0.weight",
        "grad_hist_1d.counts[3]",
    ]
    assert nonfinite == expected
    decoded = json.loads(line)
    assert decoded["nonfinite"] == expected
    assert decoded["values"]["loss"] is None
    assert decoded["values"]["grad_norm"]["per_layer"]["0.weight"] is None
    assert decoded["values"]["grad_hist_1d"]["counts"] == [1.0, 2.0, 3.0, None]
    assert decoded["values"]["fine"] == 1.0


def test_existing_nonfinite_list_is_merged_without_duplicates():
    record = {
        "step": 1,
        "values": {"a": math.nan, "b": math.nan},
        "nonfinite": ["c", "a"],
        "notes": {"c": "skipped: no per-sample gradients"},
    }
    line, nonfinite = encode_record(record)
    decoded = json.loads(line)
    assert nonfinite == ["a", "b"]
    assert decoded["nonfinite"] == ["c", "a", "b"]
    assert decoded["notes"] == {"c": "skipped: no per-sample gradients"}


def test_numpy_scalars_and_arrays_are_converted():
    record = {
        "step": np.int64(5),
        "time": np.float32(2.0),
        "values": {
            "alpha": np.float64(0.5),
            "bad": np.float32("nan"),
            "flag": np.bool_(True),
            "hist": {"counts": np.array([[1.0, np.inf], [2.0, 3.0]])},
            "pair": (1, 2),
        },
    }
    line, nonfinite = encode_record(record)
    decoded = json.loads(line)
    assert decoded["step"] == 5
    assert decoded["values"]["alpha"] == 0.5
    assert decoded["values"]["flag"] is True
    assert decoded["values"]["hist"]["counts"] == [[1.0, None], [2.0, 3.0]]
    assert decoded["values"]["pair"] == [1, 2]
    assert nonfinite == ["bad", "hist.counts[0][1]"]


@pytest.mark.parametrize(
    ("record", "match"),
    [
        ([1, 2], "must be a dict"),
        ({"values": {}}, "integer 'step'"),
        ({"step": True, "values": {}}, "integer 'step'"),
        ({"step": 1, "values": [1.0]}, "'values' must be a dict"),
        ({"step": 1, "time": math.nan, "values": {}}, "outside 'values' at time"),
    ],
)
def test_encode_rejects_malformed_records(record, match):
    with pytest.raises(ValueError, match=match):
        encode_record(record)


def test_encode_rejects_unknown_types_with_a_hint():
    with pytest.raises(TypeError, match=r"Cannot log object at 'a\.b'.*materialize"):
        encode_record({"step": 1, "values": {"a": {"b": object()}}})


def test_decode_round_trips_encode():
    record = {"step": 7, "time": 1.0, "values": {"x": [1, 2.5, None]}}
    line, _ = encode_record(record)
    assert decode_line(line + "\n") == record


@pytest.mark.parametrize(
    ("line", "match"),
    [
        ('{"step": 1', "unexpected end of data"),
        ("[1, 2]", "JSON object"),
        ('{"values": {}}', "integer 'step'"),
        ('{"step": "3"}', "integer 'step'"),
    ],
)
def test_decode_rejects_bad_lines(line, match):
    with pytest.raises(ValueError, match=match):
        decode_line(line)


def test_check_version_accepts_same_and_older_and_newer_minor(tmp_path):
    major = FORMAT_VERSION.split(".")[0]
    for version in (FORMAT_VERSION, "0.3", f"{major}.99"):
        check_version({"format_version": version}, tmp_path)


def test_check_version_refuses_newer_major(tmp_path):
    newer = f"{int(FORMAT_VERSION.split('.')[0]) + 1}.0"
    with pytest.raises(
        LogFormatError, match=rf"format {newer}.*reads format.*upgrade cockpit"
    ):
        check_version({"format_version": newer}, tmp_path)


@pytest.mark.parametrize("version", [None, "1", "one.two", 1.0])
def test_check_version_refuses_missing_or_malformed(tmp_path, version):
    with pytest.raises(LogFormatError, match="no valid 'format_version'"):
        check_version({"format_version": version}, tmp_path)


def test_float64_values_come_back_exactly():
    """A float64 model's statistics are float64: the log keeps every bit."""
    values64 = np.random.default_rng(0).standard_normal(1000)
    record = {"step": 0, "time": 1700000000.123456, "values": {"v": values64}}
    line, _ = encode_record(record)
    decoded = decode_line(line)
    np.testing.assert_array_equal(np.asarray(decoded["values"]["v"]), values64)
    assert decoded["time"] == 1700000000.123456


def test_histogram_counts_are_integers_with_the_same_sum_and_shared_edges_go():
    counts = [[1.4, 2.6], [0.5, 0.5]]
    hist = {
        "x_edges": [0.0, 0.5, 1.0],
        "y_edges": [0.0, 1.0, 2.0],
        "counts": counts,
        "per_layer": {
            "w": {
                "x_edges": [0.0, 0.5, 1.0],
                "y_edges": [0.0, 2.0, 4.0],
                "counts": counts,
            }
        },
    }
    line, _ = encode_record({"step": 0, "values": {"h": hist}})
    written = decode_line(line)["values"]["h"]
    assert written["counts"] == [[1, 3], [1, 0]]
    assert written["per_layer"]["w"] == {
        "y_edges": [0.0, 2.0, 4.0],
        "counts": [[1, 3], [1, 0]],
    }
    (_, histograms) = flatten_rows([{"step": 0, "values": {"h": written}}])
    assert histograms[1][3] == [0.0, 0.5, 1.0]  # the whole model's x edges


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.floats(allow_nan=False, allow_infinity=False), max_size=20),
    st.text(max_size=12),
)
def test_any_finite_float_and_any_text_come_back_exactly(numbers, text):
    """Against the standard library's reading of the line: every float's bits
    (subnormals, -0.0, 17-digit values) and any text, non-ASCII included."""
    record = {"step": 1, "values": {"v": numbers, "note": text}}
    line, _ = encode_record(record)
    read = json.loads(line)["values"]
    assert [math.copysign(1, x) for x in read["v"]] == [
        math.copysign(1, x) for x in numbers
    ]
    assert [float(x).hex() for x in read["v"]] == [x.hex() for x in numbers]
    assert read["note"] == text
    assert decode_line(line)["values"] == {"v": numbers, "note": text}


def test_integers_beyond_64_bits_are_written_too():
    """orjson refuses them; the line takes the standard library's path."""
    record = {"step": 2, "values": {"tokens": 2**70, "small": 3}}
    line, _ = encode_record(record)
    assert json.loads(line)["values"] == {"tokens": 2**70, "small": 3}
