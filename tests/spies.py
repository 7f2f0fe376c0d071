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
