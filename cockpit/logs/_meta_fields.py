"""The ``meta.json`` fields that readers use, and the types they must have.

The dashboard, the report and the export read a few fields of ``meta.json``; one of
the wrong type (hand-edited, written by another tool, damaged) must not break them, so
:func:`checked_meta` drops it with a :class:`CorruptLogWarning` and the run is read
without it. Other fields pass through unchecked.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable
from typing import Any

from cockpit.exceptions import CorruptLogWarning
from cockpit.logs.schema import META_FILE

__all__ = ["checked_meta"]

#: Latest plausible time, seconds since the epoch (the year 5138).
_LATEST = 1e11


def _text(value: object) -> bool:
    return isinstance(value, str)


def _text_or_none(value: object) -> bool:
    return value is None or isinstance(value, str)


def _time(value: object) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and 0 <= value < _LATEST
    )


def _texts(value: object) -> bool:
    return isinstance(value, dict) and all(isinstance(v, str) for v in value.values())


def _shapes(value: object) -> bool:
    return isinstance(value, dict) and all(
        isinstance(shape, list)
        and all(isinstance(n, int) and not isinstance(n, bool) for n in shape)
        for shape in value.values()
    )


def _object(value: object) -> bool:
    return isinstance(value, dict)


def _budget_plan(value: object) -> bool:
    """``None``, or an overhead budget's plan as the dashboard reads it."""
    if value is None:
        return True
    if not isinstance(value, dict):
        return False
    budget, intervals = value.get("budget"), value.get("intervals")
    return (
        isinstance(budget, (int, float))
        and not isinstance(budget, bool)
        and 0 < budget < 1
        and isinstance(intervals, dict)
        and all(
            isinstance(k, int) and not isinstance(k, bool) and k > 0
            for k in intervals.values()
        )
        and isinstance(value.get("planned_at"), (int, type(None)))
    )


_FIELDS: dict[str, tuple[Callable[[object], bool], str]] = {
    "run_name": (_text, "a string"),
    "status": (_text, "a string"),
    "preset": (_text_or_none, "a string or null"),
    "model": (_text_or_none, "a string or null"),
    "start_time": (_time, "seconds since the epoch, from 0 to 1e11"),
    "end_time": (_time, "seconds since the epoch, from 0 to 1e11"),
    "absent": (_texts, "an object of quantity -> reason strings"),
    "parameters": (_shapes, "an object of parameter name -> shape (integers)"),
    "optimizer": (_object, "an object"),
    "budget": (
        _budget_plan,
        "null or an object with a budget in (0, 1), intervals of quantity -> "
        "positive integer and planned_at an integer or null",
    ),
}


def checked_meta(
    meta: dict[str, Any], run_dir: str | os.PathLike[str]
) -> dict[str, Any]:
    """``meta`` without the fields readers use that have the wrong type.

    Args:
        meta: The decoded ``meta.json``.
        run_dir: The run directory, named in the warning.

    Returns:
        ``meta`` itself if every checked field is well-formed, else a copy without
        the others.

    Warns:
        CorruptLogWarning: Once per call, naming each dropped field and the type it
            should have (not its value).

    """
    bad = [
        key
        for key, (valid, _) in _FIELDS.items()
        if key in meta and not valid(meta[key])
    ]
    if not bad:
        return meta
    expected = "; ".join(f"{key} must be {_FIELDS[key][1]}" for key in bad)
    warnings.warn(
        f"Ignored malformed fields of {os.path.join(run_dir, META_FILE)}: {expected}.",
        CorruptLogWarning,
        stacklevel=3,
    )
    return {key: value for key, value in meta.items() if key not in bad}
