"""Log records straight to columns: the rows of ``records_to_frames``, without frames.

The live dashboard reads every record of a run once; building the long pandas frames
first and then splitting them by quantity and layer costs about six times as much as
sorting each number into its column directly (a run of 100,000 steps of the
``economy`` preset has eight million numbers). The rules are those of
``cockpit.logs.records_to_frames`` (tested against it): numbers become rows, a dict's
``total`` and ``per_layer`` give the layer ``None`` and per-layer rows, other keys
become dotted quantities, and dicts with ``edges`` or ``x_edges`` are histograms.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["Columns", "HistogramRow", "flatten"]

Columns = dict[tuple[str, str | None], tuple[list[int], list[float]]]
"""``(quantity, layer) -> (steps, values)``, in the order the keys first appear."""
HistogramRow = tuple[int, str, str | None, Any, Any, Any]
"""``(step, quantity, layer, edges, y_edges, counts)``; ``y_edges`` only for 2D."""

_NUMBERS = (int, float)


_Column = tuple[list[int], list[float]]


class _Sink:
    def __init__(self) -> None:
        self.columns: Columns = {}
        self.histograms: list[HistogramRow] = []
        # quantity -> layer -> column, the same lists as in ``columns``: per-layer
        # numbers are most of a record, and two string lookups cost less than
        # building and hashing a key tuple for each.
        self._by_layer: dict[str, dict[str | None, _Column]] = {}

    def layers(self, quantity: str) -> dict[str | None, _Column]:
        layers = self._by_layer.get(quantity)
        if layers is None:
            layers = self._by_layer[quantity] = {}
        return layers

    def column(self, quantity: str, layer: str | None) -> _Column:
        layers = self.layers(quantity)
        column = layers.get(layer)
        if column is None:
            column = layers[layer] = self.columns[(quantity, layer)] = ([], [])
        return column

    def number(self, step: int, quantity: str, layer: str | None, value: Any) -> None:
        steps, values = self.column(quantity, layer)
        steps.append(step)
        values.append(math.nan if value is None else float(value))

    def histogram(
        self,
        step: int,
        quantity: str,
        layer: str | None,
        hist: dict[str, Any],
        parent: dict[str, Any] | None = None,
    ) -> None:
        # Per-layer histograms may share their edges with the whole-model one.
        edges = {**parent, **hist} if parent else hist
        if "x_edges" in edges:
            row = (step, quantity, layer, edges.get("x_edges"), edges.get("y_edges"))
        else:
            row = (step, quantity, layer, edges.get("edges"), None)
        self.histograms.append((*row, hist.get("counts")))

    def value(self, step: int, quantity: str, value: Any) -> None:
        if value is None or isinstance(value, _NUMBERS):
            self.number(step, quantity, None, value)
        elif isinstance(value, dict):
            if "edges" in value or "x_edges" in value:
                self.histogram(step, quantity, None, value)
                per_layer = value.get("per_layer")
                for layer, hist in _items(per_layer):
                    if isinstance(hist, dict):
                        self.histogram(step, quantity, layer, hist, value)
            else:
                self.fields(step, quantity, value)

    def fields(self, step: int, quantity: str, value: dict[str, Any]) -> None:
        for key, item in value.items():
            if key == "total" and (item is None or isinstance(item, _NUMBERS)):
                self.number(step, quantity, None, item)
            elif key == "per_layer" and isinstance(item, dict):
                layers = self.layers(quantity)
                for layer, entry in item.items():
                    if type(entry) is float:  # the common case, inlined
                        column = layers.get(layer) or self.column(quantity, layer)
                        column[0].append(step)
                        column[1].append(entry)
                    elif entry is None or isinstance(entry, _NUMBERS):
                        self.number(step, quantity, layer, entry)
                    elif isinstance(entry, dict) and (
                        "edges" in entry or "x_edges" in entry
                    ):
                        self.histogram(step, quantity, layer, entry)
            else:
                self.value(step, f"{quantity}.{key}", item)


def _items(value: object) -> list[tuple[str, Any]]:
    return list(value.items()) if isinstance(value, dict) else []


def flatten(records: list[dict[str, Any]]) -> tuple[Columns, list[HistogramRow]]:
    """Sort the numbers and histograms of log records by quantity and layer.

    Args:
        records: Decoded records, as ``LogReader.read_new`` returns them; those with
            ``"error"`` give nothing.

    Returns:
        The scalar columns (``None`` values as NaN) and the histogram rows, in record
        order.

    """
    sink = _Sink()
    for record in records:
        if "error" in record:
            continue
        step = record["step"]
        for quantity, value in _items(record.get("values")):
            sink.value(step, quantity, value)
    return sink.columns, sink.histograms
