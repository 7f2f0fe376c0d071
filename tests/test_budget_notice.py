"""The line logged once when the overhead budget cannot be kept.

The control is driven with made-up wall times (as in ``test_budget_tracking.py``),
so the costs behind the line and the suggested ``replay_samples`` are worked out by
hand; a default Cockpit on a small BatchNorm model, whose exact batch replay costs
many plain steps, logs the line once.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

import cockpit
from cockpit._budget import BudgetControl
from cockpit._budget_notice import over_budget_line, samples_that_fit
from tests.test_budget_tracking import PER_SAMPLE_Q, USES, drive


def calibrated(per_sample_seconds: float) -> BudgetControl:
    """A control through its calibration: plain steps 1 s, fixed 0.01 s."""
    control = BudgetControl(0.05, USES, dict.fromkeys(USES, 0))

    def modelled(tracked):
        fixed = 0.01 if tracked else 0.0
        return fixed + (per_sample_seconds if tracked & PER_SAMPLE_Q else 0.0)

    drive(control, range(control.start), modelled)
    return control


def test_a_per_sample_pass_too_dear_for_the_longest_interval_is_over_budget():
    # Allowed: 0.05 / 0.95 s per step, so 50 / 19 = 2.63 s per tracked step at
    # the longest interval; everything costs 0.01 + 5 s. The per-sample pass must
    # lose 5.01 - 50/19 = 2.378 s of its 5: M = floor(32 * 2.622 / 5) = 16.
    control = calibrated(5.0)
    assert control.over_budget
    assert control.intervals == dict.fromkeys(USES, 50)
    assert samples_that_fit(control, 32) == 16
    line = over_budget_line(control, 32, batch_replay=True)
    assert "budget of 5% cannot be kept" in line
    assert "the per-sample pass 5000.0 ms" in line
    assert "the fixed part 10.0 ms" in line
    assert "all 32 samples" in line and "about M = 16 would fit" in line
    # Not on the batch replay: no replay_samples to suggest.
    plain = over_budget_line(control, 32, batch_replay=False)
    assert "replay_samples" not in plain and "Raise budget=" in plain


def test_the_suggested_subsample_is_at_least_one_and_less_than_the_batch():
    # 200 s of per-sample pass would have to lose 197.4 s: 32 * 2.62 / 200 < 1.
    assert samples_that_fit(calibrated(200.0), 32) == 1
    assert samples_that_fit(calibrated(5.0), None) is None


def test_a_plan_within_the_budget_is_not_over_it():
    control = calibrated(0.5)  # every 25th step fits (test_budget_tracking)
    assert not control.over_budget


def _batchnorm_mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 3)
    )


def _said(tmp_path, caplog, **options) -> tuple[list[str], str]:
    """Default Cockpit on the BatchNorm MLP through its calibration and 3 steps:
    the warning lines of the ``cockpit`` logger, and ``meta.json``."""
    model, loss_fn = _batchnorm_mlp(), nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(32, 8, generator=gen), torch.randint(3, (32,), generator=gen)
    ck = cockpit.Cockpit(model, loss_fn, optimizer, logdir=tmp_path, **options)
    with caplog.at_level(logging.WARNING, logger="cockpit"):
        for _ in range(ck._budget.start + 3):
            optimizer.zero_grad()
            with ck.track():
                loss_fn(model(x), y).backward()
            optimizer.step()
    ck.close()
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    return lines, (ck.writer.run_dir / "meta.json").read_text()


def test_a_default_cockpit_on_a_batchnorm_model_says_so_once(tmp_path, caplog):
    """The exact batch replay differentiates every one of the 32 samples through the
    whole batch: many plain steps per tracked step, over 5 % even every 50th."""
    lines, meta = _said(tmp_path, caplog)
    said = [line for line in lines if "cannot be kept" in line]
    assert len(said) == 1, lines
    assert "replay_samples=M" in said[0] and "all 32 samples" in said[0]
    assert '"over_budget": true' in meta


def test_a_given_subsample_is_not_suggested_again(tmp_path, caplog):
    lines, _ = _said(tmp_path, caplog, replay_samples=4)
    assert not [line for line in lines if "replay_samples=M" in line]
