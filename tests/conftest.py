"""Shared fixtures: the tiny problems of ``problems.py``."""

from __future__ import annotations

import logging

import pytest

from tests.problems import PROBLEMS, Problem


@pytest.fixture(autouse=True)
def _cockpit_lines_reach_caplog(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let ``caplog`` see the ``cockpit`` logger's lines in every test.

    The first Cockpit of a process imports ``cockpit._open_runs``, which adds the
    logger's stderr handler and turns off its propagation to the root logger, where
    ``caplog`` listens. Without this fixture a test that read the engine line from
    ``caplog`` failed when it made the process's first Cockpit, and passed after
    another test had made one. Imported here, the handler exists from the start, and
    propagation is on for the test (restored after it).
    """
    import cockpit._open_runs  # noqa: F401

    monkeypatch.setattr(logging.getLogger("cockpit"), "propagate", True)


@pytest.fixture(params=PROBLEMS, ids=[p.name for p in PROBLEMS])
def problem(request: pytest.FixtureRequest) -> Problem:
    return request.param


CHAIN_PROBLEMS = [p for p in PROBLEMS if p.chain]


@pytest.fixture(params=CHAIN_PROBLEMS, ids=[p.name for p in CHAIN_PROBLEMS])
def chain_problem(request: pytest.FixtureRequest) -> Problem:
    """Problems whose forward pass is a chain of modules (BackPACK second order)."""
    return request.param


#: Problems and engines for curvature against the references: BackPACK (auto on a
#: chain of modules), torch.func chosen by auto (the other models), and torch.func
#: forced on two models BackPACK handles too.
CURVATURE_CASES = [
    *[(p, "auto") for p in PROBLEMS],
    *[(p, "torch.func") for p in PROBLEMS if p.name in ("mlp-ce-mean", "cnn-mse-sum")],
]


@pytest.fixture(
    params=CURVATURE_CASES, ids=[f"{p.name}-{engine}" for p, engine in CURVATURE_CASES]
)
def curvature_case(request: pytest.FixtureRequest) -> tuple[Problem, str]:
    """A problem and the ``engine=`` to track it with."""
    return request.param
