import json
import math

import numpy as np
import pandas as pd
import pytest

from cockpit.exceptions import CorruptLogWarning, LogFormatError
from cockpit.logs import FORMAT_VERSION, LogReader, RunWriter, load
from cockpit.logs.reader import records_to_frames


def write_run(run_dir, records, meta=None):
    with RunWriter(run_dir, meta or {"run_name": run_dir.name}) as writer:
        for record in records:
            writer.submit(record)
    return writer


def make_run_dir(run_dir, lines, meta=None):
    """A run written by hand, to simulate crashes and damage."""
    run_dir.mkdir(parents=True)
    meta = {"format_version": "1.0", "status": "running", **(meta or {})}
    (run_dir / "meta.json").write_text(json.dumps(meta))
    (run_dir / "steps.jsonl").write_text(lines)


def line(step, **values):
    return json.dumps({"step": step, "values": values}) + "\n"


def test_round_trip_write_load(tmp_path):
    records = [
        {
            "step": step,
            "time": float(step),
            "values": {
                "loss": 1.0 / (step + 1),
                "grad_norm": {
                    "total": 3.0,
                    "per_layer": {"0.weight": 2.0, "0.bias": 1.0},
                },
                "grad_hist_1d": {
                    "edges": [0.0, 0.5, 1.0],
                    "counts": [3, 4],
                    "sample_size": 7,
                    "total": 7,
                },
            },
        }
        for step in range(3)
    ]
    write_run(tmp_path / "run", records)
    run = load(tmp_path / "run")
    assert run.path == tmp_path / "run"
    assert run.meta["status"] == "finished"
    assert run.errors == []
    loss = run.scalar("loss")
    assert loss.index.tolist() == [0, 1, 2]
    assert loss.index.name == "step"
    np.testing.assert_allclose(loss.to_numpy(), [1.0, 0.5, 1.0 / 3.0])
    assert run.scalar("grad_norm").tolist() == [3.0] * 3
    assert run.scalar("grad_norm", layer="0.bias").tolist() == [1.0] * 3
    hist = run.histograms.iloc[-1]
    assert hist["step"] == 2
    assert hist["quantity"] == "grad_hist_1d"
    assert hist["edges"] == [0.0, 0.5, 1.0]
    assert hist["counts"] == [3, 4]
    assert hist["y_edges"] is None
    assert hist["sample_size"] == 7.0


def test_nonfinite_values_load_as_nan(tmp_path):
    write_run(tmp_path / "run", [{"step": 0, "values": {"loss": math.inf}}])
    assert math.isnan(load(tmp_path / "run").scalar("loss").iloc[0])


def test_truncated_last_line_is_picked_up_once_complete(tmp_path):
    make_run_dir(tmp_path / "run", line(0, loss=1.0) + '{"step": 1, "val')
    reader = LogReader(tmp_path / "run")
    assert [r["step"] for r in reader.read_new()] == [0]
    assert reader.offset == len(line(0, loss=1.0))
    assert reader.read_new() == []
    with (tmp_path / "run" / "steps.jsonl").open("a") as file:
        file.write('ues": {"loss": 0.5}}\n')
    assert reader.read_new() == [{"step": 1, "values": {"loss": 0.5}}]


def test_load_skips_a_truncated_last_line(tmp_path):
    make_run_dir(tmp_path / "run", line(0, loss=1.0) + '{"step": 1, "val')
    assert load(tmp_path / "run").scalar("loss").index.tolist() == [0]


def test_corrupt_middle_line_warns_and_the_rest_is_read(tmp_path):
    make_run_dir(tmp_path / "run", line(0, loss=1.0) + "garbage\n" + line(2, loss=0.5))
    reader = LogReader(tmp_path / "run")
    with pytest.warns(CorruptLogWarning, match=r"line 2 of .*steps\.jsonl"):
        records = reader.read_new()
    assert [r["step"] for r in records] == [0, 2]


def test_corrupt_line_numbers_count_across_calls(tmp_path):
    make_run_dir(tmp_path / "run", line(0) + line(1))
    reader = LogReader(tmp_path / "run")
    assert len(reader.read_new()) == 2
    with (tmp_path / "run" / "steps.jsonl").open("a") as file:
        file.write(line(2) + "[1, 2]\n")
    with pytest.warns(CorruptLogWarning, match="line 4 of"):
        assert [r["step"] for r in reader.read_new()] == [2]


def test_invalid_utf8_line_warns(tmp_path):
    make_run_dir(tmp_path / "run", "")
    (tmp_path / "run" / "steps.jsonl").write_bytes(
        b'{"step": \xff}\n' + line(1).encode()
    )
    with pytest.warns(CorruptLogWarning, match="line 1 of"):
        assert [r["step"] for r in LogReader(tmp_path / "run").read_new()] == [1]


def test_incremental_reader_returns_only_new_records(tmp_path):
    writer = RunWriter(tmp_path / "run", {})
    reader = LogReader(tmp_path / "run")
    assert reader.read_new() == []
    writer.submit({"step": 0, "values": {"loss": 1.0}})
    writer.flush()
    assert [r["step"] for r in reader.read_new()] == [0]
    assert reader.read_new() == []
    writer.submit({"step": 1, "values": {"loss": 0.9}})
    writer.submit({"step": 2, "values": {"loss": 0.8}})
    writer.flush()
    assert [r["step"] for r in reader.read_new()] == [1, 2]
    writer.close()
    assert reader.read_new() == []
    assert reader.meta()["status"] == "finished"


def test_missing_steps_file_reads_as_empty(tmp_path):
    assert LogReader(tmp_path).read_new() == []


def test_newer_major_version_is_refused(tmp_path):
    newer = int(FORMAT_VERSION.split(".")[0]) + 1
    make_run_dir(tmp_path / "run", line(0), meta={"format_version": f"{newer}.0"})
    with pytest.raises(LogFormatError, match=rf"format {newer}\.0.*upgrade cockpit"):
        load(tmp_path / "run")


def test_load_of_a_logdir_names_the_runs_inside(tmp_path):
    write_run(tmp_path / "a", [])
    with pytest.raises(
        LogFormatError,
        match=r"containing meta\.json and steps\.jsonl, got .*runs/<name>.*runs: a",
    ):
        load(tmp_path)


def test_load_of_a_missing_directory_is_refused(tmp_path):
    with pytest.raises(LogFormatError, match="pass one run directory"):
        load(tmp_path / "nope")


@pytest.mark.parametrize("text", ["{not json", "[1]"])
def test_damaged_meta_is_refused(tmp_path, text):
    make_run_dir(tmp_path / "run", "")
    (tmp_path / "run" / "meta.json").write_text(text)
    with pytest.raises(LogFormatError, match="damaged"):
        LogReader(tmp_path / "run").meta()


def test_error_records_are_listed_not_flattened(tmp_path):
    make_run_dir(
        tmp_path / "run",
        line(0, loss=1.0)
        + json.dumps({"step": 1, "values": {}, "error": "RuntimeError: x"})
        + "\n",
    )
    run = load(tmp_path / "run")
    assert run.errors == [{"step": 1, "values": {}, "error": "RuntimeError: x"}]
    assert run.scalars["step"].tolist() == [0]


def test_scalar_flattening_rules():
    records = [
        {
            "step": 5,
            "values": {
                "loss": 2.0,
                "missing": None,
                "alpha": {"mean": 0.1, "std": None, "label": "x", "raw": [1, 2]},
                "norm": {"total": 4.0, "per_layer": {"w": 3.0, "b": None}},
                "nested": {"inner": {"total": 1.0, "deep": 2.0}},
            },
        }
    ]
    scalars, histograms = records_to_frames(records)
    assert list(scalars.columns) == ["step", "quantity", "layer", "value"]
    assert scalars["step"].dtype == np.int64
    assert scalars["value"].dtype == np.float64
    assert scalars["layer"].dtype == object
    rows = [
        (s, q, layer, None if math.isnan(v) else v)
        for s, q, layer, v in scalars.itertuples(index=False)
    ]
    assert rows == [
        (5, "loss", None, 2.0),
        (5, "missing", None, None),
        (5, "alpha.mean", None, 0.1),
        (5, "alpha.std", None, None),
        (5, "norm", None, 4.0),
        (5, "norm", "w", 3.0),
        (5, "norm", "b", None),
        (5, "nested.inner", None, 1.0),
        (5, "nested.inner.deep", None, 2.0),
    ]
    assert histograms.empty


def test_histogram_flattening_rules():
    hist_1d = {
        "edges": [0, 1, 2],
        "counts": [1, 2],
        "sample_size": 3,
        "per_layer": {"w": {"counts": [1, 1]}, "b": {"edges": [5, 6], "counts": [4]}},
    }
    hist_2d = {"x_edges": [0, 1], "y_edges": [0, 2], "counts": [[7]], "total": 7}
    records = [{"step": 1, "values": {"h1": hist_1d, "h2": hist_2d}}]
    _, histograms = records_to_frames(records)
    assert list(histograms.columns) == [
        "step",
        "quantity",
        "layer",
        "edges",
        "y_edges",
        "counts",
        "sample_size",
        "total",
    ]
    h1, w, b, h2 = histograms.to_dict("records")
    assert (h1["layer"], h1["edges"], h1["counts"], h1["sample_size"]) == (
        None,
        [0, 1, 2],
        [1, 2],
        3.0,
    )
    assert math.isnan(h1["total"])
    assert (w["layer"], w["edges"], w["counts"]) == ("w", [0, 1, 2], [1, 1])
    assert (b["layer"], b["edges"], b["counts"]) == ("b", [5, 6], [4])
    assert (h2["quantity"], h2["edges"], h2["y_edges"]) == ("h2", [0, 1], [0, 2])
    assert (h2["counts"], h2["total"]) == ([[7]], 7.0)


def test_repeated_steps_keep_all_rows():
    records = [
        {"step": 3, "values": {"loss": 1.0}},
        {"step": 3, "values": {"alpha": 0.2}},
    ]
    scalars, _ = records_to_frames(records)
    assert scalars[["step", "quantity"]].values.tolist() == [[3, "loss"], [3, "alpha"]]


def test_empty_records_give_typed_empty_frames():
    scalars, histograms = records_to_frames([])
    assert scalars.empty
    assert histograms.empty
    assert scalars["step"].dtype == np.int64
    assert scalars["value"].dtype == np.float64
    assert len(histograms.columns) == 8


def test_scalar_lookup_errors_name_what_exists(tmp_path):
    write_run(
        tmp_path / "run",
        [{"step": 0, "values": {"norm": {"per_layer": {"w": 1.0}}, "loss": 1.0}}],
    )
    run = load(tmp_path / "run")
    with pytest.raises(KeyError, match=r"No scalar quantity 'lost'.*Known: loss, norm"):
        run.scalar("lost")
    with pytest.raises(KeyError, match=r"no values for layer None\. Layers: w"):
        run.scalar("norm")
    assert isinstance(run.scalar("norm", "w"), pd.Series)
