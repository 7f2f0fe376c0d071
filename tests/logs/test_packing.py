"""Packed histograms (formats 2.0, 3.0) and float32 digits: exact round trips, refusals."""

import base64
import json
import zlib

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from cockpit._record import OnHost, TensorRecord
from cockpit.logs._format import decode_line, encode_record
from cockpit.logs._packing import (
    MAX_BINS,
    float32_shortest,
    pack_counts,
    pack_edges,
    unpack,
)
from cockpit.quantities.grad_hist_1d import bin_edges

COUNT_ARRAYS = hnp.arrays(
    np.int64,
    st.one_of(
        st.tuples(st.integers(40, 200)),
        st.tuples(st.integers(8, 40), st.integers(8, 40)),
    ),
    elements=st.one_of(st.just(0), st.integers(0, 30), st.integers(0, 2**62)),
)


@settings(max_examples=60, deadline=None)
@given(COUNT_ARRAYS)
def test_counts_unpack_to_the_integers_packed(counts):
    packed = pack_counts(counts.tolist())
    text = json.dumps(packed, separators=(",", ":"))
    listed = json.dumps(counts.tolist(), separators=(",", ":"))
    assert len(text) <= len(listed)  # packed only where shorter
    tree = {"counts": json.loads(text)}
    unpack(tree)
    assert tree["counts"] == counts.tolist()


def test_a_few_counts_stay_a_list_when_packing_is_longer():
    assert pack_counts([1, 2]) == [1, 2]
    assert pack_counts([[1, -2]] * 40) == [[1, -2]] * 40  # negative: not counts


def test_packed_counts_are_json_strings_without_escapes():
    counts = np.random.default_rng(0).integers(0, 10**6, size=(32, 32)).tolist()
    packed = pack_counts(counts)
    assert isinstance(packed, dict)
    text = json.dumps(packed)
    assert "\\" not in text and json.loads(text) == packed


@pytest.mark.parametrize("dtype,bits", [(torch.float32, 32), (torch.float64, 64)])
@pytest.mark.parametrize("bins", [1, 32, 64, 100])
def test_edges_of_the_tracker_pack_to_their_ends_and_unpack_exactly(dtype, bits, bins):
    generator = torch.Generator().manual_seed(bins)
    for _ in range(20):
        low, high = torch.randn(2, generator=generator, dtype=dtype).sort().values
        edges = bin_edges(low, high, bins).numpy()
        logged = float32_shortest(edges) if bits == 32 else edges
        packed = pack_edges(logged.tolist())
        kind, low, high, count = packed.split(":")
        assert (kind, float(low), float(high), int(count)) == (
            f"f{bits}",
            logged[0],
            logged[-1],
            bins,
        )
        assert pack_edges(edges.astype(np.float64).tolist()).endswith(f":{bins}")
        tree = {"edges": packed}
        unpack(tree)
        assert tree["edges"] == edges.astype(np.float64).tolist()  # the tracker's


def test_edges_not_equally_spaced_or_not_float32_stay_a_list():
    assert pack_edges([0.0, 1.0, 3.0]) == [0.0, 1.0, 3.0]
    assert pack_edges([0.0, None]) == [0.0, None]
    near = [0.0, 0.1 + 1e-12, 0.2]  # float32 edges 0, 0.1, 0.2, but not float32
    assert pack_edges(float32_shortest(near).tolist()).startswith("f32:")
    assert pack_edges(near) == near


@settings(max_examples=200, deadline=None)
@given(hnp.arrays(np.float32, st.integers(1, 50)))
def test_float32_shortest_reads_back_the_same_float32_in_9_digits(values):
    shortest = float32_shortest(values)
    assert np.array_equal(shortest.astype(np.float32), values, equal_nan=True)
    for number in shortest[np.isfinite(shortest)].tolist():
        digits = np.format_float_scientific(number, unique=True).split("e")[0]
        assert len(digits.replace("-", "").replace(".", "")) <= 9


@settings(max_examples=200, deadline=None)
@given(
    hnp.arrays(
        np.float32,
        hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=6),
        elements=st.floats(width=32, allow_nan=True, allow_infinity=True),
    )
)
def test_float32_shortest_is_numpys_shortest_decimal_of_each_value(values):
    """Against numpy's own shortest decimal per value (Dragon4), any shape, nan, inf."""
    expected = np.array(
        [float(str(np.float32(v))) for v in values.reshape(-1)], dtype=np.float64
    ).reshape(values.shape)
    shortest = float32_shortest(values)
    assert shortest.shape == values.shape
    assert shortest.dtype == np.float64
    assert np.array_equal(shortest, expected, equal_nan=True)
    numbers = ~np.isnan(expected)  # -0.0 stays -0.0; a NaN's sign is no number's
    assert np.array_equal(np.signbit(shortest[numbers]), np.signbit(expected[numbers]))


def test_statistics_of_float32_tensors_keep_float32_digits_float64_all():
    single = torch.tensor([0.1, 1 / 3], dtype=torch.float32)
    double = torch.tensor([0.1, 1 / 3], dtype=torch.float64)
    record = TensorRecord(0, 0.0, {"a": single, "b": double}).materialize()
    assert record["values"]["a"] == [0.1, 0.33333334]
    assert np.array_equal(np.float32(record["values"]["a"]), single.numpy())
    assert record["values"]["b"] == double.tolist()


def test_a_single_record_writes_float64_statistics_with_float32_digits():
    """A float32 model's float64 statistics: float32's digits where float32 holds them."""
    double = torch.tensor([0.1, 1 / 3, 1e-300, 1e300, 123456789.0], dtype=torch.float64)
    on_host = OnHost(lambda a: {"x": float(a[1]), "tiny": float(a[2])}, (double,))
    values = {"b": double, "c": on_host}
    written = TensorRecord(0, 0.0, values, single=True).materialize()["values"]
    # Outside float32's normal range a value keeps its float64 digits.
    assert written["b"] == [0.1, 0.33333334, 1e-300, 1e300, 123456790.0]
    assert written["c"] == {"x": 0.33333334, "tiny": 1e-300}
    kept = TensorRecord(0, 0.0, values).materialize()["values"]
    assert kept["b"] == double.tolist()
    assert kept["c"] == {"x": 1 / 3, "tiny": 1e-300}


def _packed_line(counts: object) -> str:
    values = {"h": {"edges": [0.0, 1.0], "counts": counts}}
    return json.dumps({"step": 3, "values": values})


@pytest.mark.parametrize(
    "counts, problem",
    [
        ({"shape": [2], "packed": "not base64 ~~~~"}, "do not decode"),
        ({"shape": [2], "packed": "eJw="}, "need 16 bytes, got 0"),
        ({"shape": [2], "packed": "eJxjBAAAAgAC"}, "need 16 bytes, got 1"),
        ({"shape": [2**30], "packed": ""}, "at most"),
        ({"shape": "2", "packed": ""}, "'shape' of one or two"),
        ({"shape": [True], "packed": ""}, "'shape' of one or two"),
        (
            {
                "shape": [1],
                "packed": base64.b64encode(zlib.compress(bytes(2**20))).decode(),
            },
            "need 8 bytes, got 9 or more",
        ),
        ({"shape": [2], "bits": "not base64 ~~~~"}, "do not decode"),
        ({"shape": [2**30], "bits": ""}, "at most"),
        ({"shape": [2], "bits": 3}, "'bits' \\(or 'packed'\\) string"),
        (
            {
                "shape": [1],
                "bits": base64.b64encode(zlib.compress(bytes(2**20))).decode(),
            },
            "need 1 bit lengths, got 2 or more",
        ),
    ],
)
def test_malformed_packed_counts_make_the_line_corrupt(counts, problem):
    with pytest.raises(ValueError, match=problem):
        decode_line(_packed_line(counts))


@pytest.mark.parametrize(
    "edges",
    [
        {"from": 0.0, "to": 1.0, "bins": MAX_BINS + 1, "float": 32},
        {"from": 0.0, "to": 1.0, "bins": 4, "float": [32]},
        {"from": 0.0, "to": None, "bins": 4, "float": 64},
        {"from": -3e38, "to": 3e38, "bins": 4, "float": 32},
        "f32:0.0:1.0",
        "f32:0.0:1.0:4:5",
        "f32:0.0:one:4",
        "f32:0.0:1.0:-4",
        "f64:0.0:1.0:0",
        "f32:nan:1.0:4",
        "f32:-3e38:3e38:4",
    ],
)
def test_malformed_packed_edges_make_the_line_corrupt(edges):
    """Format 2.0's dicts and format 3.0's texts alike."""
    line = json.dumps({"step": 1, "values": {"h": {"edges": edges, "counts": [1]}}})
    with pytest.raises(ValueError, match="edges"):
        decode_line(line)


def test_encode_then_decode_gives_the_histograms_back():
    edges = float32_shortest(bin_edges(torch.tensor(-1.0), torch.tensor(2.0), 32))
    counts = np.arange(32 * 32).reshape(32, 32) % 7
    hist = {"x_edges": edges.tolist(), "y_edges": edges.tolist()}
    record = {
        "step": 0,
        "values": {"h": {**hist, "counts": counts.tolist(), "per_layer": {"a": hist}}},
    }
    record["values"]["h"]["per_layer"]["a"] = {**hist, "counts": counts.T.tolist()}
    line, _ = encode_record(record)
    assert len(line) < 1000
    decoded = decode_line(line)["values"]["h"]
    assert decoded["counts"] == counts.tolist()
    assert np.array_equal(np.float32(decoded["x_edges"]), np.float32(edges))
    assert decoded["per_layer"]["a"] == {"counts": counts.T.tolist()}


def base64_text(data):
    return base64.b64encode(zlib.compress(data)).decode()


JSON_LEAVES = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text()
)


@settings(max_examples=300, deadline=None)
@given(
    st.fixed_dictionaries(
        {},
        optional={
            "shape": st.one_of(JSON_LEAVES, st.lists(JSON_LEAVES, max_size=3)),
            "packed": st.one_of(JSON_LEAVES, st.binary(max_size=64).map(base64_text)),
            "bits": st.one_of(JSON_LEAVES, st.binary(max_size=64).map(base64_text)),
            "from": JSON_LEAVES,
            "to": JSON_LEAVES,
            "bins": JSON_LEAVES,
            "float": JSON_LEAVES,
        },
    ),
    st.sampled_from(["counts", "edges", "x_edges"]),
)
def test_any_packed_value_unpacks_or_makes_the_line_corrupt(packed, key):
    line = json.dumps({"step": 0, "values": {"h": {key: packed, "bins": 1}}})
    try:
        record = decode_line(line)
    except ValueError:
        return
    value = record["values"]["h"][key]
    assert isinstance(value, list)


def test_a_histogram_and_its_per_layer_counts_pack_in_one_text():
    counts = np.arange(6).reshape(2, 3)
    hist = {"x_edges": [0.0, 1.0, 2.0], "y_edges": [0.0, 1.0, 2.0, 3.0]}
    layers = {
        name: {**hist, "counts": (counts * k).tolist()}
        for k, name in [(2, "a"), (3, "b")]
    }
    record = {
        "step": 0,
        "values": {"h": {**hist, "counts": counts.tolist(), "per_layer": layers}},
    }
    line, _ = encode_record(record)
    assert line.count('"bits":') == 1 and '"layers":2' in line
    assert (
        decode_line(line)["values"]["h"]["per_layer"]["b"]["counts"]
        == (counts * 3).tolist()
    )
    assert decode_line(line)["values"]["h"]["counts"] == counts.tolist()


@pytest.mark.parametrize(
    "per_layer",
    [
        {},
        {"a": {}, "b": {}, "c": {}},
        {"a": {"counts": [[1]]}, "b": {}},
        {"a": [], "b": {}},
    ],
)
def test_counts_packed_together_need_their_per_layer_histograms(per_layer):
    hist = {"x_edges": [0.0, 1.0, 2.0], "y_edges": [0.0, 1.0, 2.0, 3.0]}
    layers = {name: {**hist, "counts": [[1, 2, 3], [4, 5, 6]]} for name in ("a", "b")}
    values = {"h": {**hist, "counts": [[0, 1, 2], [3, 4, 5]], "per_layer": layers}}
    packed = json.loads(encode_record({"step": 0, "values": values})[0])
    packed["values"]["h"]["per_layer"] = per_layer
    with pytest.raises(ValueError, match="as many per-layer histograms"):
        decode_line(json.dumps(packed))
