"""Shared fixtures: the tiny problems of ``problems.py``."""

from __future__ import annotations

import pytest

from tests.problems import PROBLEMS, Problem


@pytest.fixture(params=PROBLEMS, ids=[p.name for p in PROBLEMS])
def problem(request: pytest.FixtureRequest) -> Problem:
    return request.param
