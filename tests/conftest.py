"""Shared fixtures: the tiny problems of ``problems.py``."""

from __future__ import annotations

import pytest

from tests.problems import PROBLEMS, Problem


@pytest.fixture(params=PROBLEMS, ids=[p.name for p in PROBLEMS])
def problem(request: pytest.FixtureRequest) -> Problem:
    return request.param


CHAIN_PROBLEMS = [p for p in PROBLEMS if p.chain]


@pytest.fixture(params=CHAIN_PROBLEMS, ids=[p.name for p in CHAIN_PROBLEMS])
def chain_problem(request: pytest.FixtureRequest) -> Problem:
    """Problems whose forward pass is a chain of modules (BackPACK second order)."""
    return request.param
