"""Fixtures of the engine tests."""

from __future__ import annotations

import pytest

from cockpit.engines import batch_replay

#: Rows per block of the ``"stacked"`` route: no test batch (6 or 8 samples, or a
#: subsample of 3) is a multiple of it, so each run ends on a shorter block.
STACKED_ROWS = 5


@pytest.fixture(params=["vmapped", "looped", "stacked"])
def replay_route(request, monkeypatch) -> str:
    """The batch replay's backward passes: vmapped chunks, or one per cotangent
    with each row reduced as it comes (the CPU's route) or stacked into blocks of
    :data:`STACKED_ROWS` rows first (other devices' route, forced on the CPU).

    The tests' models are far below :data:`~cockpit.engines.batch_replay.LOOP_WIDTH`;
    the threshold is set so that every model takes the route named.
    """
    width = 2**62 if request.param == "vmapped" else 0
    monkeypatch.setattr(batch_replay, "LOOP_WIDTH", width)
    if request.param == "stacked":
        monkeypatch.setattr(
            batch_replay,
            "loop_rows",
            lambda device, rows, width: min(rows, STACKED_ROWS),
        )
    return request.param
