"""Records as TensorBoard events: tags, values read back, the writer's mirror."""

import math
import sys
import threading

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import (
    HISTOGRAMS,
    SCALARS,
    EventAccumulator,
)

import cockpit
from cockpit.exceptions import ConfigurationError
from cockpit.logs import RunWriter
from cockpit.logs._format import decode_line, encode_record
from cockpit.logs.tensorboard import TensorBoardWriter, points
from tests.instruments.synthetic import LAYERS, records, step_records


def decoded(record):
    """The record as a reader returns it (non-finite values as None)."""
    return decode_line(encode_record(record)[0])


def accumulate(logdir) -> EventAccumulator:
    events = EventAccumulator(str(logdir), size_guidance={SCALARS: 0, HISTOGRAMS: 0})
    events.Reload()
    return events


def scalars(events, tag) -> dict[int, float]:
    return {event.step: event.value for event in events.Scalars(tag)}


def test_tags_follow_the_log_structure():
    record = decoded(step_records(3)[0])
    found, hists = points(record)
    tags = {point.tag: point.value for point in found}
    assert tags["loss"] == pytest.approx(record["values"]["loss"]["total"])
    assert tags["loss/variance"] == 0.1
    assert tags["grad_norm/total"] == record["values"]["grad_norm"]["total"]
    for layer in LAYERS:
        assert f"grad_norm/{layer}" in tags
    assert tags["lr/total"] == 0.1
    assert tags["lr/group0"] == 0.1
    assert tags["batch_size"] == 32
    assert "kfac_block/condition/0.weight" in tags
    assert "curvature_noise/slope_snr/2" in tags
    # Logged as null (step 3 has no noise scale; a singular factor): NaN, not dropped.
    assert math.isnan(tags["gradient_noise_scale"])
    assert math.isnan(tags["kfac_block/condition/0.bias"])
    assert {point.step for point in found} == {3}
    # Only the 1D histogram: TensorBoard has no 2D histograms.
    (hist,) = hists
    assert hist.tag == "grad_hist_1d"
    np.testing.assert_array_equal(hist.edges, record["values"]["grad_hist_1d"]["edges"])
    np.testing.assert_array_equal(
        hist.counts, record["values"]["grad_hist_1d"]["counts"]
    )


def test_error_records_give_nothing():
    assert points({"step": 1, "time": 0.0, "values": {}, "error": "boom"}) == ([], [])


def test_written_events_read_back_equal(tmp_path):
    logged = [decoded(r) for r in records(12)]
    writer = TensorBoardWriter(tmp_path / "tb")
    for record in logged:
        writer.write(record)
    writer.close()
    events = accumulate(tmp_path / "tb")

    loss = scalars(events, "loss")
    main = [r for r in logged if "loss" in r["values"]]
    assert sorted(loss) == list(range(12))
    for record in main:
        assert loss[record["step"]] == pytest.approx(
            record["values"]["loss"]["total"], rel=1e-6
        )
        layer = record["values"]["grad_norm"]["per_layer"]["2.weight"]
        assert scalars(events, "grad_norm/2.weight")[record["step"]] == pytest.approx(
            layer, rel=1e-6
        )
    # Alpha of step t arrives with step t + 1 and keeps its own step.
    assert sorted(scalars(events, "alpha")) == list(range(11))
    assert sorted(scalars(events, "valid_accuracy")) == [0, 10]
    assert math.isnan(scalars(events, "gradient_noise_scale")[3])

    hists = events.Histograms("grad_hist_1d")
    assert [h.step for h in hists] == list(range(12))
    for event, record in zip(hists, main, strict=True):
        logged_hist = record["values"]["grad_hist_1d"]
        value = event.histogram_value
        assert value.bucket == logged_hist["counts"]
        np.testing.assert_allclose(value.bucket_limit, logged_hist["edges"][1:])
        assert value.min == logged_hist["edges"][0]
        assert value.max == logged_hist["edges"][-1]
        assert value.num == sum(logged_hist["counts"])
        assert event.wall_time == record["time"]
    assert writer.histograms_written == 12


def test_nothing_is_written_before_the_first_record(tmp_path):
    writer = TensorBoardWriter(tmp_path / "tb")
    writer.close()
    assert not (tmp_path / "tb").exists()


def test_missing_tensorboard_is_a_configuration_error(tmp_path, monkeypatch):
    for name in [m for m in sys.modules if m.split(".")[0] == "tensorboard"]:
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ConfigurationError, match="pip install tensorboard"):
        TensorBoardWriter(tmp_path / "tb")


def test_the_run_writer_mirrors_every_record_on_its_thread(tmp_path):
    threads = set()

    class Spy(TensorBoardWriter):
        def write(self, record):
            threads.add(threading.current_thread().name)
            super().write(record)

    mirror = Spy(tmp_path / "run" / "tensorboard")
    writer = RunWriter(tmp_path / "run", {"run_name": "run"}, mirror=mirror)
    for record in records(5):
        writer.submit(record)
    writer.close()
    assert threads == {"cockpit-writer:run"}
    run = cockpit.load(tmp_path / "run")
    events = accumulate(tmp_path / "run" / "tensorboard")
    count = sum(len(events.Scalars(tag)) for tag in events.Tags()["scalars"])
    assert count == len(run.scalars)
    assert len(events.Histograms("grad_hist_1d")) == 5


def test_a_failing_mirror_stops_but_the_log_goes_on(tmp_path):
    class Broken:
        def write(self, record):
            raise RuntimeError("disk full")

        def flush(self):
            raise AssertionError("a stopped mirror is not flushed")

        def close(self):
            raise AssertionError("a stopped mirror is not closed")

        def __str__(self):
            return "the broken mirror"

    writer = RunWriter(tmp_path / "run", {"run_name": "run"}, mirror=Broken())
    for record in records(3):
        writer.submit(record)
    writer.flush()
    writer.close()
    assert writer.drain_notices() == [
        "stopped mirroring the log to the broken mirror: disk full"
    ]
    assert sorted(cockpit.load(tmp_path / "run").scalar("loss").index) == [0, 1, 2]


def test_the_tracker_option_writes_events_while_training(tmp_path):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(4, 6), torch.nn.Tanh(), torch.nn.Linear(6, 3)
    )
    loss_fn = torch.nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    ck = cockpit.Cockpit(
        model,
        loss_fn,
        optimizer,
        logdir=tmp_path,
        run_name="run",
        tensorboard=True,
        preset="economy",
    )
    for step in range(4):
        gen = torch.Generator().manual_seed(step)
        x, y = (
            torch.randn(8, 4, generator=gen),
            torch.randint(0, 3, (8,), generator=gen),
        )
        optimizer.zero_grad()
        with ck.track():
            loss_fn(model(x), y).backward()
        optimizer.step()
        if step == 1:
            ck.writer.flush()
            # Readable while training goes on.
            assert sorted(scalars(accumulate(ck.run_dir / "tensorboard"), "loss")) == [
                0,
                1,
            ]
    ck.close()

    run = cockpit.load(ck.run_dir)
    events = accumulate(ck.run_dir / "tensorboard")
    loss = scalars(events, "loss")
    assert loss == pytest.approx(run.scalar("loss").to_dict(), rel=1e-6)
    assert scalars(events, "grad_norm/0.weight") == pytest.approx(
        run.scalar("grad_norm", "0.weight").to_dict(), rel=1e-6
    )
    assert sorted(scalars(events, "alpha")) == [0, 1, 2]
    assert len(events.Histograms("grad_hist_1d")) == 4


def test_the_tracker_option_needs_tensorboard(tmp_path, monkeypatch):
    torch = pytest.importorskip("torch")
    for name in [m for m in sys.modules if m.split(".")[0] == "tensorboard"]:
        monkeypatch.setitem(sys.modules, name, None)
    model = torch.nn.Linear(4, 3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ConfigurationError, match="pip install tensorboard"):
        cockpit.Cockpit(
            model,
            torch.nn.CrossEntropyLoss(),
            optimizer,
            logdir=tmp_path,
            run_name="run",
            tensorboard=True,
        )
    assert not (tmp_path / "run").exists()
