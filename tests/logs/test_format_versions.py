"""Every reader gives back what the tracker logged (format 3.0), and reads 1.0 and 2.0.

The tracker's values are caught as the writer gets them (the materialized record,
before encoding); the readers' are decoded from the log: ``LogReader``,
``cockpit.load`` (from the JSON and from the columnar cache), the dashboard's store
and the report's ``read_run``.
"""

import base64
import copy
import json
import math
import shutil
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import cockpit
from cockpit.app.store import RunStore
from cockpit.instruments._reading import read_run
from cockpit.logs import LogReader, _appender, _columns
from cockpit.logs.flatten import flatten_rows
from tests.test_reliability import train

FIXTURES = Path(__file__).parent / "fixtures"


def _train(logdir: Path, monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """Three ``full`` steps of a float32 MLP; the records as the writer got them."""
    logged = []
    encode = _appender.encode_record

    def caught(record, notes=None):
        logged.append(copy.deepcopy(record))
        return encode(record, notes)

    monkeypatch.setattr(_appender, "encode_record", caught)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 3))
    loss_fn = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    ck = cockpit.Cockpit(
        model, loss_fn, optimizer, logdir=logdir, run_name="run", preset="full"
    )
    train(model, loss_fn, optimizer, ck, steps=3)
    ck.close()
    monkeypatch.undo()
    return logged


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    monkeypatch = pytest.MonkeyPatch()
    logdir = tmp_path_factory.mktemp("logs")
    return logdir / "run", _train(logdir, monkeypatch)


def _by_key(histograms):
    return {(row[0], row[1], row[2]): row for row in histograms}


def _assert_same_float32(decoded, logged):
    """Edges (or ``None``) with the same float32 values: the tracker binned with those."""
    assert (decoded is None) == (logged is None)
    if logged is not None:
        assert np.array_equal(np.float32(decoded), np.float32(logged))


def _assert_counts_rounded(decoded, logged):
    """Integer counts within 1 of the logged estimates, with their sum."""
    decoded, logged = np.asarray(decoded), np.asarray(logged, dtype=np.float64)
    assert np.array_equal(decoded, np.round(decoded))
    assert decoded.shape == logged.shape
    assert np.abs(decoded - logged).max() < 1
    assert abs(decoded.sum() - logged.sum()) <= 0.5


def test_the_log_is_format_3_and_packs_the_histograms_and_names(trained):
    run_dir, _ = trained
    assert json.loads((run_dir / "meta.json").read_text())["format_version"] == "3.0"
    text = (run_dir / "steps.jsonl").read_text()
    assert '"bits":' in text and '"f32:' in text and '"layers":' in text
    assert '"packed":' not in text


def test_the_reader_gives_back_every_record_as_logged(trained):
    """Exactly, notes included, where counts and edges are already as they read."""
    run_dir, logged = trained
    records = LogReader(run_dir).read_new()
    assert any("notes" in record for record in logged)
    for got, want in zip(records, logged, strict=True):
        assert got.get("notes") == want.get("notes")
        assert got["values"].keys() == want["values"].keys()


def test_the_reader_gives_back_the_logged_values(trained):
    run_dir, logged = trained
    records = LogReader(run_dir).read_new()
    assert [r["step"] for r in records] == [r["step"] for r in logged]
    decoded_scalars, decoded_hists = flatten_rows(records)
    logged_scalars, logged_hists = flatten_rows(logged)
    assert len(decoded_scalars) == len(logged_scalars) > 50
    for got, want in zip(decoded_scalars, logged_scalars, strict=True):
        assert got[:3] == want[:3]
        assert got[3] == want[3] or (math.isnan(got[3]) and math.isnan(want[3]))
    assert {r[1] for r in logged_hists} == {"grad_hist_1d", "grad_hist_2d"}
    got, want = _by_key(decoded_hists), _by_key(logged_hists)
    assert got.keys() == want.keys()
    for key, row in want.items():
        _assert_same_float32(got[key][3], row[3])
        _assert_same_float32(got[key][4], row[4])
        _assert_counts_rounded(got[key][5], row[5])


def _load_histograms(run_dir):
    frame = cockpit.load(run_dir).histograms
    return {
        (r.step, r.quantity, r.layer): (r.edges, r.y_edges, r.counts)
        for r in frame.itertuples()
    }


def test_load_and_the_columnar_cache_give_the_decoded_histograms(
    trained, tmp_path, monkeypatch
):
    run_dir = tmp_path / "run"
    shutil.copytree(trained[0], run_dir)
    expected = {
        key: (row[3], row[4], row[5])
        for key, row in _by_key(flatten_rows(LogReader(run_dir).read_new())[1]).items()
    }
    monkeypatch.setattr(_columns, "MIN_SEGMENT_BYTES", 0)
    assert _load_histograms(run_dir) == expected
    assert list((run_dir / ".columns").glob("*.arrow"))
    assert _load_histograms(run_dir) == expected  # from the cache


def test_the_store_and_the_report_read_the_packed_histograms(trained):
    run_dir, logged = trained
    _, logged_hists = flatten_rows(logged)
    store = RunStore(run_dir.parent)
    store.poll()
    state = store.state("run")
    assert state.error is None and not state.notices
    for data in (state.data, read_run(run_dir)):
        for step, quantity, layer, edges, y_edges, counts, *_ in logged_hists:
            (shown,) = [h for h in data.histograms(quantity, layer) if h.step == step]
            _assert_same_float32(shown.edges, edges)
            _assert_same_float32(shown.y_edges, y_edges)
            _assert_counts_rounded(shown.counts, counts)


def _fixture_copy(tmp_path, name="format_1_0"):
    run_dir = tmp_path / name
    shutil.copytree(FIXTURES / name, run_dir)
    return run_dir


def test_a_format_1_0_log_reads_as_its_json_says(tmp_path):
    run_dir = _fixture_copy(tmp_path)
    assert json.loads((run_dir / "meta.json").read_text())["format_version"] == "1.0"
    lines = (run_dir / "steps.jsonl").read_text().splitlines()
    plain = [json.loads(line) for line in lines]
    assert '"packed"' not in "".join(lines)
    assert LogReader(run_dir).read_new() == plain
    run = cockpit.load(run_dir)
    scalars, histograms = flatten_rows(plain)
    assert len(run.scalars) == len(scalars) > 50
    np.testing.assert_array_equal(run.scalars["value"], [r[3] for r in scalars])
    assert run.histograms["counts"].tolist() == [r[5] for r in histograms]
    assert {r[1] for r in histograms} == {"grad_hist_1d", "grad_hist_2d"}


@pytest.mark.parametrize("name", ["format_1_0", "format_2_0"])
def test_the_store_reads_an_older_log(tmp_path, name):
    _fixture_copy(tmp_path, name)
    store = RunStore(tmp_path)
    store.poll()
    state = store.state(name)
    assert state.error is None and not state.notices
    assert len(state.data.histograms("grad_hist_2d")) == 3


def _format_2_0_unpacked(line):
    """A format 2.0 line's record, unpacked here as format 2.0 documents it."""
    record = json.loads(line)

    def unpack(tree):
        for key, item in tree.items():
            if key == "counts" and isinstance(item, dict):
                planes = zlib.decompress(base64.b64decode(item["packed"]))
                size = math.prod(item["shape"])
                by_plane = np.frombuffer(planes, np.uint8).reshape(8, size)
                counts = np.ascontiguousarray(by_plane.T).view("<u8")
                tree[key] = counts.reshape(item["shape"]).astype(np.int64).tolist()
            elif key.endswith("edges") and isinstance(item, dict):
                dtype = {32: np.float32, 64: np.float64}[item["float"]]
                low, high, bins = dtype(item["from"]), dtype(item["to"]), item["bins"]
                steps = np.arange(bins, dtype=dtype) / dtype(bins)
                edges = np.append(low + (high - low) * steps, high)
                tree[key] = edges.astype(np.float64).tolist()
            elif isinstance(item, dict):
                unpack(item)

    unpack(record["values"])
    return record


def test_a_format_2_0_log_reads_as_its_json_says(tmp_path):
    run_dir = _fixture_copy(tmp_path, "format_2_0")
    assert json.loads((run_dir / "meta.json").read_text())["format_version"] == "2.0"
    lines = (run_dir / "steps.jsonl").read_text().splitlines()
    assert '"packed"' in lines[0] and "notes" in lines[0]
    plain = [_format_2_0_unpacked(line) for line in lines]
    assert LogReader(run_dir).read_new() == plain
    run = cockpit.load(run_dir)
    scalars, histograms = flatten_rows(plain)
    np.testing.assert_array_equal(run.scalars["value"], [r[3] for r in scalars])
    assert run.histograms["counts"].tolist() == [r[5] for r in histograms]
