"""What both integrations refuse before any trainer runs (no framework needed)."""

from __future__ import annotations

import pytest

from cockpit.exceptions import ConfigurationError
from cockpit.integrations._shared import check_window


@pytest.mark.parametrize(("batches", "accumulation"), [(4, 2), (6, 3), (5, 1)])
def test_whole_windows_pass(batches, accumulation):
    check_window(batches, accumulation, "trainer")


def test_a_shorter_last_window_says_how_to_fix_it():
    with pytest.raises(
        ConfigurationError, match=r"over 4 micro-batches.*has 10.*covers 2.*multiple"
    ):
        check_window(10, 4, "trainer")
