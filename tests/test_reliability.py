"""I/O faults while training, SIGTERM, restarts and readable warnings (issue 15).

A full disk is tested for real (``RLIMIT_FSIZE``) in ``tests/logs/test_crash.py``;
here the run directory turns read-only or vanishes under a training in this process.
"""

import errno
import json
import shutil
import signal
import tempfile
import warnings

import pytest
import torch
from torch import nn

import cockpit
from cockpit.exceptions import CockpitWarning, LogDirError, NonFiniteWarning


def make(logdir, model=None, **kwargs):
    torch.manual_seed(0)
    model = model or nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3))
    loss_fn = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    if "quantities" not in kwargs:
        kwargs.setdefault("preset", "economy")  # every step, not the budget's plan
    ck = cockpit.Cockpit(model, loss_fn, optimizer, logdir=logdir, **kwargs)
    return model, loss_fn, optimizer, ck


def train(model, loss_fn, optimizer, ck, steps):
    inputs = model[0].in_features
    for _ in range(steps):
        optimizer.zero_grad()
        with ck.track():
            loss_fn(model(torch.randn(8, inputs)), torch.randint(0, 3, (8,))).backward()
        optimizer.step()


def read_only(monkeypatch, run_dir):
    """``meta.json`` cannot be replaced any more, as in a read-only directory."""
    mkstemp = tempfile.mkstemp

    def refuse(*args, dir=None, **kwargs):
        if dir is not None and str(dir) == str(run_dir):
            raise PermissionError(errno.EACCES, "Permission denied", str(dir))
        return mkstemp(*args, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", refuse)


def test_read_only_directory_when_engines_move_does_not_stop_training(
    tmp_path, monkeypatch
):
    model, loss_fn, optimizer, ck = make(tmp_path, run_name="ro")
    train(model, loss_fn, optimizer, ck, 2)
    read_only(monkeypatch, ck.run_dir)
    ck.engines.changed = True  # an engine moved at this step: meta.json is rewritten
    with pytest.warns(CockpitWarning) as record:
        train(model, loss_fn, optimizer, ck, 3)
        ck.close()
    (fault,) = [str(w.message) for w in record if "meta.json" in str(w.message)]
    assert "could not write" in fault and "Permission denied" in fault
    # The steps still reach steps.jsonl, which stays open for appending.
    assert sorted(set(cockpit.load(ck.run_dir).scalar("loss").index)) == list(range(5))


def test_vanished_logdir_is_reported_once_and_close_does_not_raise(tmp_path):
    logdir = tmp_path / "logs"
    model, loss_fn, optimizer, ck = make(logdir, run_name="gone")
    train(model, loss_fn, optimizer, ck, 3)
    ck.writer.flush()
    shutil.rmtree(logdir)
    with pytest.warns(CockpitWarning) as record:
        train(model, loss_fn, optimizer, ck, 5)
        ck.close()
    messages = [str(w.message) for w in record]
    (gone,) = [m for m in messages if "deleted" in m]
    # Step 2's record waited for optimizer.step() until step 3's track(): the first
    # record written into the deleted file is step 2's or step 3's.
    assert "from step 2 on" in gone or "from step 3 on" in gone
    assert str(ck.run_dir) in gone
    assert not logdir.exists(), "a deleted log directory is not created again"


def test_restarting_a_run_name_is_refused(tmp_path):
    model, loss_fn, optimizer, ck = make(tmp_path, run_name="same")
    train(model, loss_fn, optimizer, ck, 2)
    ck.close()
    with pytest.raises(LogDirError, match=r"already exists\. Choose another run name"):
        make(tmp_path, run_name="same")
    assert json.loads((tmp_path / "same" / "meta.json").read_text())["status"] == (
        "finished"
    ), "the old run is left as it was"


def test_sigterm_handler_is_installed_only_where_none_is(tmp_path):
    def own(signum, frame):
        pass

    previous = signal.signal(signal.SIGTERM, own)
    try:
        *_, ck = make(tmp_path, run_name="own")
        assert signal.getsignal(signal.SIGTERM) is own
        ck.close()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        *_, ck = make(tmp_path, run_name="default")
        assert signal.getsignal(signal.SIGTERM) not in (own, signal.SIG_DFL)
        ck.close()
    finally:
        signal.signal(signal.SIGTERM, previous)


def deep_zero_mlp(depth: int = 12) -> nn.Module:
    """Zero weights: every layer's gradient tests are 0/0 at every step."""
    layers: list[nn.Module] = []
    for _ in range(depth):
        layers += [nn.Linear(5, 5), nn.Tanh()]
    model = nn.Sequential(*layers, nn.Linear(5, 3))
    for param in model.parameters():
        nn.init.zeros_(param)
    return model


def test_nonfinite_warnings_stay_few_and_short(tmp_path):
    model, loss_fn, optimizer, ck = make(tmp_path, model=deep_zero_mlp())
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        train(model, loss_fn, optimizer, ck, 20)
        ck.close()
    nonfinite = [str(w.message) for w in record if w.category is NonFiniteWarning]
    assert all(len(line) < 200 for line in nonfinite), nonfinite
    *first, summary = nonfinite
    assert first and all(line.startswith("step 0: ") for line in first)
    assert len(first) <= 3, "one per quantity, not one per step"
    assert any(" more" in line for line in first), "names a few paths, counts the rest"
    assert summary.endswith("see meta.json (nonfinite_counts)")
    counts = json.loads((ck.run_dir / "meta.json").read_text())["nonfinite_counts"]
    assert counts["norm_test"]["steps"] == 20
    assert counts["norm_test"]["first_step"] == 0
    assert counts["norm_test"]["values"] % 20 == 0
    # Every step is alike: step 0's values are named, the 19 later steps' counted.
    total = sum(count["values"] for count in counts.values())
    assert summary.startswith(f"{total * 19 // 20} more non-finite values in 19 steps")
