"""Format 3.0 names a record's layers once; readers get the per-layer dicts back."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cockpit.logs._format import decode_line, encode_record

NAMES = st.lists(st.sampled_from(["0.weight", "0.bias", "2.weight", "x"]), unique=True)
NUMBERS = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False), st.integers(-5, 5)
)


@st.composite
def layered_values(draw):
    """Layered quantities and histograms, most over one list of names."""
    common = draw(NAMES)
    values = {}
    for index in range(draw(st.integers(0, 5))):
        names = common if draw(st.booleans()) else draw(NAMES)
        per_layer = {name: draw(NUMBERS) for name in names}
        values[f"q{index}"] = {"total": draw(NUMBERS), "per_layer": per_layer}
    if draw(st.booleans()):
        hist = {"edges": [0.0, 0.5, 2.0], "counts": [1, 2]}
        layers = draw(st.sampled_from([common, []]))
        per_layer = {name: {"counts": [3, 4]} for name in layers}
        values["h"] = {**hist, "per_layer": per_layer}
    return values


@settings(max_examples=200, deadline=None)
@given(layered_values())
def test_records_read_back_with_their_per_layer_dicts(values):
    record = {"step": 1, "values": values}
    decoded = decode_line(encode_record(record)[0])
    assert decoded == json.loads(json.dumps(record))
    assert "layers" not in decoded


def test_names_repeated_are_written_once():
    per_layer = {"0.weight": 1.0, "0.bias": 2.0}
    values = {q: {"total": 3.0, "per_layer": per_layer} for q in ("a", "b", "c")}
    line, _ = encode_record({"step": 0, "values": values})
    assert line.count("0.weight") == 1
    assert json.loads(line)["layers"] == ["0.weight", "0.bias"]
    assert json.loads(line)["values"]["a"]["per_layer"] == [1.0, 2.0]


def test_a_record_that_carries_layers_is_refused():
    with pytest.raises(ValueError, match="must not carry 'layers'"):
        encode_record({"step": 0, "values": {}, "layers": ["a"]})


@pytest.mark.parametrize(
    ("layers", "per_layer", "problem"),
    [
        (["a", "b"], [1.0], "list of 1 values for the record's 2 layers"),
        ("a", [1.0], "list of distinct strings"),
        (["a", "a"], [1.0, 2.0], "list of distinct strings"),
        ([1], [1.0], "list of distinct strings"),
    ],
)
def test_malformed_layers_make_the_line_corrupt(layers, per_layer, problem):
    line = json.dumps(
        {"step": 0, "layers": layers, "values": {"q": {"per_layer": per_layer}}}
    )
    with pytest.raises(ValueError, match=problem):
        decode_line(line)
