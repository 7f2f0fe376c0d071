"""``RunData.extend_records`` gives what ``extend(*records_to_frames(...))`` gives.

The first sorts the flattener's columns into series, the second groups its rows
through pandas frames; they must agree.
"""

import numpy as np
import pytest

from cockpit.instruments import RunData
from cockpit.logs.flatten import records_to_frames
from tests.instruments.synthetic import records, through_json

EDGE_CASES = [
    {
        "step": 0,
        "values": {"loss": None, "flag": True, "name": "text", "sizes": [1, 2]},
    },
    {"step": 1, "error": "could not log", "values": {"loss": 1.0}},
    {"step": 1, "values": "not a dict"},
    {
        "step": 2,
        "values": {
            "a": {"total": {"inner": 1.0}, "per_layer": 3.0},
            "b": {"total": None, "per_layer": {"x": None, "y": "s", "z": [1]}},
            "c": {"deep": {"deeper": {"total": 2.0, "per_layer": {"x": 4}}}},
            "h": {
                "per_layer": {"x": {"edges": [0.0, 1.0], "counts": [3.0]}},
                "total": 5.0,
            },
            "h2": {
                "x_edges": [0.0, 1.0],
                "y_edges": [0.0, 2.0, 4.0],
                "counts": [[1.0, 2.0]],
                "per_layer": {"x": {"counts": [[0.5, 0.5]]}, "y": None},
            },
            "broken": {"edges": [0.0, 1.0], "counts": None},
        },
    },
]


def both(items):
    fast, slow = RunData("fast"), RunData("slow")
    fast.extend_records(items)
    slow.extend(*records_to_frames(items))
    return fast, slow


def assert_same(fast: RunData, slow: RunData) -> None:
    assert fast.quantities() == slow.quantities()
    assert fast.last_step == slow.last_step
    for quantity in slow.quantities():
        assert fast.layers(quantity) == slow.layers(quantity), quantity
        assert fast.version_of(quantity) > 0
        for layer in [None, *slow.layers(quantity)]:
            a, b = fast.series(quantity, layer), slow.series(quantity, layer)
            np.testing.assert_array_equal(a.steps, b.steps)
            np.testing.assert_array_equal(a.values, b.values)
            assert a.steps.dtype == b.steps.dtype and a.values.dtype == b.values.dtype
            hists = zip(
                fast.histograms(quantity, layer),
                slow.histograms(quantity, layer),
                strict=True,
            )
            for h, g in hists:
                assert h.step == g.step
                np.testing.assert_array_equal(h.edges, g.edges)
                np.testing.assert_array_equal(h.counts, g.counts)
                assert (h.y_edges is None) == (g.y_edges is None)
                if h.y_edges is not None:
                    np.testing.assert_array_equal(h.y_edges, g.y_edges)


@pytest.mark.parametrize("curvature", [True, False])
def test_synthetic_runs_match(curvature):
    items = through_json(records(25, seed=1, curvature=curvature))
    assert_same(*both(items))


def test_edge_cases_match():
    fast, slow = both(EDGE_CASES)
    assert_same(fast, slow)
    assert fast.series("flag").values.tolist() == [1.0]
    assert np.isnan(fast.series("loss").values).all()
    assert fast.series("c.deep.deeper", "x").values.tolist() == [4.0]
    assert [h.step for h in fast.histograms("h", "x")] == [2]


def test_extending_in_chunks_matches_one_chunk():
    items = through_json(records(12, curvature=False))
    fast, slow = RunData("fast"), RunData("slow")
    for start in range(0, len(items), 5):
        fast.extend_records(items[start : start + 5])
    slow.extend(*records_to_frames(items))
    assert_same(fast, slow)
