"""What both integrations refuse before any trainer runs (no framework needed)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cockpit.exceptions import ConfigurationError
from cockpit.integrations._shared import check_window, open_cockpit


def open_on_two_processes(**options) -> None:
    model = nn.Linear(3, 2)
    open_cockpit(
        model,
        nn.MSELoss(),
        torch.optim.SGD(model.parameters(), lr=0.1),
        world_size=2,
        accumulation_steps=1,
        process_group=None,
        options={"logdir": "unused", **options},
    )


@pytest.mark.parametrize("options", [{}, {"preset": "economy", "budget": 0.1}])
def test_the_overhead_budget_is_refused_on_several_processes(options):
    with pytest.raises(ConfigurationError, match=r"2 processes.*Pass preset="):
        open_on_two_processes(**options)


@pytest.mark.parametrize(("batches", "accumulation"), [(4, 2), (6, 3), (5, 1)])
def test_whole_windows_pass(batches, accumulation):
    check_window(batches, accumulation, "trainer")


def test_a_shorter_last_window_says_how_to_fix_it():
    with pytest.raises(
        ConfigurationError, match=r"over 4 micro-batches.*has 10.*covers 2.*multiple"
    ):
        check_window(10, 4, "trainer")
