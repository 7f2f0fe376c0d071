"""Recording what a function returns while a test runs the code that calls it."""

from __future__ import annotations

from typing import Any

import pytest


def record_returns(monkeypatch: pytest.MonkeyPatch, owner: Any, name: str) -> list:
    """Wrap ``owner.name`` for the test; the list it fills with each call's return."""
    returned: list = []
    original = getattr(owner, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        returned.append(original(*args, **kwargs))
        return returned[-1]

    monkeypatch.setattr(owner, name, wrapper)
    return returned


def record_submitted(ck: Any) -> list:
    """Keep every item a Cockpit hands its writer, in order; they are written too."""
    submitted: list = []
    submit = ck.writer.submit

    def keep(item: Any) -> None:
        submitted.append(item)
        submit(item)

    ck.writer.submit = keep
    return submitted
