"""Fixtures of the engine tests."""

from __future__ import annotations

import pytest

from cockpit.engines import batch_replay


@pytest.fixture(params=["vmapped", "looped"])
def replay_route(request, monkeypatch) -> str:
    """The batch replay's backward passes: vmapped chunks, or one per cotangent.

    The tests' models are far below :data:`~cockpit.engines.batch_replay.LOOP_WIDTH`;
    the threshold is set so that every model takes the route named.
    """
    width = 0 if request.param == "looped" else 2**62
    monkeypatch.setattr(batch_replay, "LOOP_WIDTH", width)
    return request.param
