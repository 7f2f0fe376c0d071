"""The recent past of one run, as the rules read it: fed record by record.

Only the newest values of each series are kept (``keep`` records), plus the first
``baseline`` finite values, so a long run costs bounded memory and every new record
costs the same to check.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from collections.abc import Callable
from typing import Any

from cockpit.logs.flatten import flatten_rows
from cockpit.logs.schema import ERROR, NONFINITE, STEP

__all__ = ["History", "first_step_where", "median"]

Key = tuple[str, str | None]
"""``(quantity, layer)``; layer ``None`` is the whole model's value."""


def median(values: list[float]) -> float:
    """The median of the finite ``values``; NaN if there are none."""
    finite = [v for v in values if math.isfinite(v)]
    return statistics.median(finite) if finite else math.nan


def first_step_where(
    pairs: list[tuple[int, float]], holds: Callable[[float], bool]
) -> int:
    """The first step of ``pairs`` whose value ``holds``; else the first step."""
    return next((step for step, value in pairs if holds(value)), pairs[0][0])


class History:
    """The newest values of every scalar series of a run, and its ``meta.json``.

    Args:
        meta: The run's ``meta.json`` (optimizer, parameters, loss).
        keep: Values kept per series; the longest window any rule reads.
        baseline: First finite values kept per series (the start of training).

    Attributes:
        meta: The run's ``meta.json``.
        records: Records added so far.

    """

    def __init__(self, meta: dict[str, Any], keep: int, baseline: int) -> None:
        self.meta = meta
        self.records = 0
        self._keep = keep
        self._baseline = baseline
        self._series: dict[Key, deque[tuple[int, float]]] = {}
        self._first: dict[Key, list[float]] = {}
        self._totals: dict[Key, int] = {}
        self._layers: dict[str, dict[str, None]] = {}

    def add(self, record: dict[str, Any]) -> tuple[set[str], list[str]]:
        """Take one record; return the quantities it held and its non-finite paths."""
        if ERROR in record or not isinstance(record.get(STEP), int):
            return set(), []
        self.records += 1
        scalars, _ = flatten_rows([record])
        touched = set()
        for step, quantity, layer, value in scalars:
            touched.add(quantity)
            key = (quantity, layer)
            series = self._series.get(key)
            if series is None:
                series = self._series[key] = deque(maxlen=self._keep)
                self._first[key] = []
                if layer is not None:
                    self._layers.setdefault(quantity, {})[layer] = None
            series.append((step, value))
            self._totals[key] = self._totals.get(key, 0) + 1
            first = self._first[key]
            if len(first) < self._baseline and math.isfinite(value):
                first.append(value)
        return touched, list(record.get(NONFINITE) or [])

    def last(self, quantity: str, layer: str | None = None, n: int = 1) -> list[float]:
        """The newest ``n`` values (fewer if fewer were logged), oldest first."""
        series = self._series.get((quantity, layer), ())
        return [value for _, value in list(series)[-n:]]

    def last_steps(
        self, quantity: str, layer: str | None = None, n: int = 1
    ) -> list[tuple[int, float]]:
        """The newest ``n`` ``(step, value)`` pairs, oldest first."""
        series = self._series.get((quantity, layer), ())
        return list(series)[-n:]

    def count(self, quantity: str, layer: str | None = None) -> int:
        """How many values of the series are kept (at most ``keep``)."""
        return len(self._series.get((quantity, layer), ()))

    def total(self, quantity: str, layer: str | None = None) -> int:
        """How many values of the series were logged in all."""
        return self._totals.get((quantity, layer), 0)

    def first(self, quantity: str, layer: str | None = None) -> list[float]:
        """The series' first finite values (at most ``baseline``)."""
        return self._first.get((quantity, layer), [])

    def layers(self, quantity: str) -> list[str]:
        """The layers ``quantity`` was logged for, in ``meta.json``'s order."""
        logged = self._layers.get(quantity, {})
        order = list(self.meta.get("parameters") or {})
        return [n for n in order if n in logged] + [n for n in logged if n not in order]

    def window_median(self, quantity: str, n: int, layer: str | None = None) -> float:
        """Median of the newest ``n`` values; NaN until ``n`` were logged."""
        if self.count(quantity, layer) < n:
            return math.nan
        return median(self.last(quantity, layer, n))
