"""Property-based fuzzing of the reader and the dashboard's store (hypothesis).

Valid records mixed with garbage (random bytes, invalid UTF-8, the hostile lines of
``test_hostile``), appended in random pieces and read at random byte budgets: every
read returns exactly the valid records, in order, never raises and never skips one;
``meta.json`` fields of any JSON type never break a poll or a panel.
"""

import json
import os
import tempfile
import warnings
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cockpit.app.store import RunStore
from cockpit.instruments import REGISTRY
from cockpit.logs import LogReader
from cockpit.logs._format import encode_record
from tests.logs.test_hostile import HOSTILE_LINES

# A longer fuzz run: COCKPIT_FUZZ_EXAMPLES=2000 .venv/bin/python -m pytest tests/logs/test_fuzz.py
FUZZ = settings(
    max_examples=int(os.environ.get("COCKPIT_FUZZ_EXAMPLES", "60")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

finite = st.floats(allow_nan=False, allow_infinity=False, width=32)
records = st.builds(
    lambda step, loss, layers: {
        "step": step,
        "time": 1.0,
        "values": {"loss": loss, "grad_norm": {"total": loss, "per_layer": layers}},
    },
    st.integers(0, 2**40),
    finite | st.just(float("nan")),
    st.dictionaries(st.text(min_size=1, max_size=5), finite, max_size=3),
)
# Never a JSON object: a NUL byte first, or one of the hostile lines (by name: some
# are 200 kB, too long for hypothesis to print).
garbage = st.binary(max_size=200).map(
    lambda raw: b"\x00" + raw.replace(b"\n", b" ")
) | st.sampled_from(sorted(HOSTILE_LINES))
lines = st.lists(st.tuples(st.booleans(), records, garbage), max_size=25)


def quietly(function, *args):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return function(*args)


@FUZZ
@given(lines, st.lists(st.integers(1, 4000), max_size=8), st.integers(1, 5000))
def test_reader_returns_every_valid_record_whatever_the_pieces(items, cuts, budget):
    content = b""
    expected = []
    for valid, record, bad in items:
        if valid:
            content += encode_record(record)[0].encode() + b"\n"
            expected.append(record["step"])
        else:
            raw = bad if isinstance(bad, bytes) else HOSTILE_LINES[bad].encode()
            content += raw + b"\n"
    with tempfile.TemporaryDirectory() as folder:
        run = Path(folder)
        (run / "meta.json").write_text('{"format_version": "1.0"}')
        steps = run / "steps.jsonl"
        steps.write_bytes(b"")
        reader = LogReader(run, max_line_bytes=10_000)
        got = []
        position = 0
        for cut in [*sorted(cuts), len(content)]:
            with steps.open("ab") as file:
                file.write(content[position : max(cut, position)])
            position = max(cut, position)
            got += [r["step"] for r in quietly(reader.read_new, budget)]
        while reader.unread_bytes():
            before = reader.offset
            got += [r["step"] for r in quietly(reader.read_new, budget)]
            assert reader.offset > before  # no hang
        assert got == expected


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=10,
)
meta_fields = st.dictionaries(
    st.sampled_from(
        [
            "start_time",
            "end_time",
            "absent",
            "parameters",
            "run_name",
            "status",
            "preset",
            "model",
            "optimizer",
            "format_version",
        ]
    ),
    json_values,
)


@FUZZ
@given(meta_fields)
def test_store_survives_any_meta_field(fields):
    with tempfile.TemporaryDirectory() as folder:
        logdir = Path(folder)
        for name, meta in (("good", {}), ("odd", fields)):
            (logdir / name).mkdir()
            text = json.dumps({"format_version": "1.0", **meta})
            (logdir / name / "meta.json").write_text(text)
            record = {"step": 1, "values": {"loss": 0.5}}
            (logdir / name / "steps.jsonl").write_text(json.dumps(record) + "\n")
        store = RunStore(logdir)
        store.poll()
        assert sorted(store.names()) == ["good", "odd"]
        assert store.state("good").data.last_step == 1
        odd = store.state("odd")
        assert odd.error is not None or odd.data.last_step == 1
        runs = store.runs(["good", "odd"])
        for instrument in REGISTRY.values():
            instrument().missing_text(runs)
