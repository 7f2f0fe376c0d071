"""``cockpit export --tensorboard``: values read back equal the logged ones."""

import math

import pytest
from tensorboard.backend.event_processing.event_accumulator import (
    HISTOGRAMS,
    SCALARS,
    EventAccumulator,
)

import cockpit
from cockpit.app import cli
from tests.instruments.synthetic import LAYERS, write_run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "run"
    write_run(run_dir, steps=25)
    return run_dir


def read_events(logdir):
    events = EventAccumulator(str(logdir), size_guidance={SCALARS: 0, HISTOGRAMS: 0})
    events.Reload()
    return events


def by_step(events, tag):
    return {event.step: event.value for event in events.Scalars(tag)}


def same(read, logged):
    """Equal up to float32 (TensorBoard's simple_value), NaN where null was logged."""
    assert read.keys() == logged.keys()
    for step, value in logged.items():
        if math.isnan(value):
            assert math.isnan(read[step])
        else:
            assert read[step] == pytest.approx(value, rel=1e-6)


def test_export_writes_every_value(run_dir, tmp_path, capsys):
    out = tmp_path / "tb"
    assert cli.main(["export", str(run_dir), "--tensorboard", str(out)]) == 0
    run = cockpit.load(run_dir)
    events = read_events(out / "run")

    same(by_step(events, "loss"), run.scalar("loss").to_dict())
    same(by_step(events, "alpha"), run.scalar("alpha").to_dict())
    same(by_step(events, "grad_norm/total"), run.scalar("grad_norm").to_dict())
    for layer in LAYERS:
        same(
            by_step(events, f"grad_norm/{layer}"),
            run.scalar("grad_norm", layer).to_dict(),
        )
    same(
        by_step(events, "gradient_noise_scale"),
        run.scalar("gradient_noise_scale").to_dict(),
    )
    same(
        by_step(events, "kfac_block/condition/0.bias"),
        run.scalar("kfac_block.condition", "0.bias").to_dict(),
    )
    count = sum(len(events.Scalars(tag)) for tag in events.Tags()["scalars"])
    assert count == len(run.scalars)

    hists = run.histograms[run.histograms["quantity"] == "grad_hist_1d"]
    read = events.Histograms("grad_hist_1d")
    assert [h.step for h in read] == hists["step"].tolist()
    for event, counts, edges in zip(read, hists["counts"], hists["edges"], strict=True):
        assert list(event.histogram_value.bucket) == counts
        assert list(event.histogram_value.bucket_limit) == edges[1:]
    assert events.Tags()["histograms"] == ["grad_hist_1d"]

    out_text = capsys.readouterr().out
    assert f"Exported {len(run.scalars)} scalars and 25 histograms of run" in out_text
    assert f"tensorboard --logdir {out}" in out_text


def test_exporting_twice_is_refused(run_dir, tmp_path, capsys):
    out = tmp_path / "tb"
    assert cli.main(["export", str(run_dir), "--tensorboard", str(out)]) == 0
    assert cli.main(["export", str(run_dir), "--tensorboard", str(out)]) == 2
    assert "already holds TensorBoard events" in capsys.readouterr().err
    assert len(list((out / "run").iterdir())) == 1


def test_not_a_run_exits_with_2(tmp_path, capsys):
    assert cli.main(["export", str(tmp_path), "--tensorboard", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cockpit export: Expected a run directory")


def test_an_unwritable_out_dir_exits_with_2(run_dir, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    assert cli.main(["export", str(run_dir), "--tensorboard", str(blocker)]) == 2
    assert "is not a directory" in capsys.readouterr().err


def test_the_format_flag_is_required(run_dir, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["export", str(run_dir)])
    assert exit_info.value.code == 2
    assert "--tensorboard" in capsys.readouterr().err
