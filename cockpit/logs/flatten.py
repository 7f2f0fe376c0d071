"""Flatten log records into numbers by quantity and layer, and histograms.

The one set of rules every reader shares (``cockpit.load``, the dashboard, the report,
the TensorBoard export), for the layouts ``cockpit.logs.schema`` names:

* a number (``None`` as NaN) is a row of its log key, layer ``None``;
* a dict's :data:`TOTAL` number is the layer ``None`` row and each number of its
  :data:`PER_LAYER` a row of that layer; its other keys become dotted quantities
  (``loss.variance``), flattened by the same rules;
* a dict with :data:`EDGES` (1D) or :data:`X_EDGES` (2D) is a histogram of layer
  ``None``, and each dict of its :data:`PER_LAYER` one of that layer, with the edges
  it leaves out taken from the whole model's; a histogram in the :data:`PER_LAYER` of
  a layered dict is one of that layer;
* anything else is left out, and so are records with :data:`ERROR`.

Two outputs of the same walk: :func:`flatten_rows` gives rows in record order (the
frames of :func:`records_to_frames`, the TensorBoard events), :func:`flatten_columns`
sorts the numbers straight into one column per quantity and layer. The live dashboard
reads every record of a run once, and building the long frames first and splitting
them by quantity and layer costs about six times as much as the columns (a run of
100,000 steps of the ``economy`` preset has eight million numbers).
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from cockpit.logs.schema import (
    COUNTS,
    EDGES,
    ERROR,
    PER_LAYER,
    SAMPLE_SIZE,
    STEP,
    TOTAL,
    VALUES,
    X_EDGES,
    Y_EDGES,
)

__all__ = [
    "HISTOGRAM_COLUMNS",
    "SCALAR_COLUMNS",
    "Columns",
    "HistogramRow",
    "ScalarRow",
    "flatten_columns",
    "flatten_rows",
    "records_to_frames",
]

ScalarRow = tuple[int, str, str | None, float]
"""``(step, quantity, layer, value)``; layer ``None`` is the whole model."""
HistogramRow = tuple[int, str, str | None, Any, Any, Any, float, float]
"""``(step, quantity, layer, edges, y_edges, counts, sample_size, total)``: the
logged lists, ``edges`` along x and ``y_edges`` (else ``None``) for a 2D histogram,
NaN for a missing number."""
Columns = dict[tuple[str, str | None], tuple[list[int], list[float]]]
"""``(quantity, layer) -> (steps, values)``, in the order the keys first appear."""

SCALAR_COLUMNS = ["step", "quantity", "layer", "value"]
HISTOGRAM_COLUMNS = [
    "step",
    "quantity",
    "layer",
    "edges",
    "y_edges",
    "counts",
    "sample_size",
    "total",
]

_NUMBERS = (int, float)


def _as_float(value: object) -> float:
    return float(value) if isinstance(value, _NUMBERS) else math.nan


class _Walk:
    """The rules; a subclass says where the numbers go (:meth:`number`)."""

    def __init__(self) -> None:
        self.histograms: list[HistogramRow] = []

    def records(self, records: list[dict[str, Any]]) -> None:
        for record in records:
            values = record.get(VALUES)
            if ERROR in record or not isinstance(values, dict):
                continue
            step = record[STEP]
            for quantity, value in values.items():
                self.value(step, quantity, value)

    def number(self, step: int, quantity: str, layer: str | None, value: Any) -> None:
        raise NotImplementedError

    def value(self, step: int, quantity: str, value: Any) -> None:
        if value is None or isinstance(value, _NUMBERS):
            self.number(step, quantity, None, value)
        elif isinstance(value, dict):
            if EDGES in value or X_EDGES in value:
                self.histogram(step, quantity, None, value)
                per_layer = value.get(PER_LAYER)
                if isinstance(per_layer, dict):
                    for layer, hist in per_layer.items():
                        if isinstance(hist, dict):
                            self.histogram(step, quantity, layer, hist, value)
            else:
                self.fields(step, quantity, value)

    def fields(self, step: int, quantity: str, value: dict[str, Any]) -> None:
        for key, item in value.items():
            if key == TOTAL and (item is None or isinstance(item, _NUMBERS)):
                self.number(step, quantity, None, item)
            elif key == PER_LAYER and isinstance(item, dict):
                self.per_layer(step, quantity, item)
            else:
                self.value(step, f"{quantity}.{key}", item)

    def per_layer(self, step: int, quantity: str, layers: dict[str, Any]) -> None:
        for layer, entry in layers.items():
            self.layer(step, quantity, layer, entry)

    def layer(self, step: int, quantity: str, layer: str, entry: Any) -> None:
        if entry is None or isinstance(entry, _NUMBERS):
            self.number(step, quantity, layer, entry)
        elif isinstance(entry, dict) and (EDGES in entry or X_EDGES in entry):
            self.histogram(step, quantity, layer, entry)

    def histogram(
        self,
        step: int,
        quantity: str,
        layer: str | None,
        hist: dict[str, Any],
        parent: dict[str, Any] | None = None,
    ) -> None:
        edges = {**parent, **hist} if parent else hist
        if X_EDGES in edges:
            x_edges, y_edges = edges.get(X_EDGES), edges.get(Y_EDGES)
        else:
            x_edges, y_edges = edges.get(EDGES), None
        self.histograms.append(
            (
                step,
                quantity,
                layer,
                x_edges,
                y_edges,
                hist.get(COUNTS),
                _as_float(hist.get(SAMPLE_SIZE)),
                _as_float(hist.get(TOTAL)),
            )
        )


class _Rows(_Walk):
    def __init__(self) -> None:
        super().__init__()
        self.scalars: list[ScalarRow] = []

    def number(self, step: int, quantity: str, layer: str | None, value: Any) -> None:
        self.scalars.append((step, quantity, layer, _as_float(value)))

    def per_layer(self, step: int, quantity: str, layers: dict[str, Any]) -> None:
        scalars = self.scalars
        for layer, entry in layers.items():
            if type(entry) is float:  # the common cases, inlined
                scalars.append((step, quantity, layer, entry))
            elif entry is None:
                scalars.append((step, quantity, layer, math.nan))
            else:
                self.layer(step, quantity, layer, entry)


class _Columns(_Walk):
    def __init__(self) -> None:
        super().__init__()
        self.columns: Columns = {}
        # quantity -> layer -> column, the same lists as in ``columns``: per-layer
        # numbers are most of a record, and two string lookups cost less than
        # building and hashing a key tuple for each.
        self._by_layer: dict[str, dict[str | None, tuple[list[int], list[float]]]] = {}

    def layers(self, quantity: str) -> dict[str | None, tuple[list[int], list[float]]]:
        layers = self._by_layer.get(quantity)
        if layers is None:
            layers = self._by_layer[quantity] = {}
        return layers

    def column(self, quantity: str, layer: str | None) -> tuple[list[int], list[float]]:
        layers = self.layers(quantity)
        column = layers.get(layer)
        if column is None:
            column = layers[layer] = self.columns[(quantity, layer)] = ([], [])
        return column

    def number(self, step: int, quantity: str, layer: str | None, value: Any) -> None:
        steps, values = self.column(quantity, layer)
        steps.append(step)
        values.append(_as_float(value))

    def per_layer(self, step: int, quantity: str, layers: dict[str, Any]) -> None:
        columns = self.layers(quantity)
        for layer, entry in layers.items():
            if type(entry) is float:  # the common case, inlined
                steps, values = columns.get(layer) or self.column(quantity, layer)
                steps.append(step)
                values.append(entry)
            else:
                self.layer(step, quantity, layer, entry)


def flatten_rows(
    records: list[dict[str, Any]],
) -> tuple[list[ScalarRow], list[HistogramRow]]:
    """The numbers and histograms of log records as rows, in record order.

    Args:
        records: Decoded records, as ``LogReader.read_new`` returns them.

    Returns:
        ``(scalars, histograms)``.

    """
    rows = _Rows()
    rows.records(records)
    return rows.scalars, rows.histograms


def flatten_columns(
    records: list[dict[str, Any]],
) -> tuple[Columns, list[HistogramRow]]:
    """The numbers of log records by quantity and layer, and their histogram rows.

    Args:
        records: Decoded records, as ``LogReader.read_new`` returns them.

    Returns:
        ``(columns, histograms)``: each column's numbers in record order, the rows
        of :func:`flatten_rows` sorted by quantity and layer.

    """
    columns = _Columns()
    columns.records(records)
    return columns.columns, columns.histograms


def _frame(
    rows: list[tuple[Any, ...]], columns: list[str], floats: list[str]
) -> pd.DataFrame:
    by_column = list(zip(*rows, strict=True)) or [()] * len(columns)
    data = {}
    for name, values in zip(columns, by_column, strict=True):
        dtype = "float64" if name in floats else object
        data[name] = pd.Series(list(values), dtype="int64" if name == "step" else dtype)
    return pd.DataFrame(data, columns=columns)


def records_to_frames(
    records: list[dict[str, Any]],
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Flatten log records into a scalar frame and a histogram frame.

    Args:
        records: Decoded records, as ``LogReader.read_new`` returns them; repeated
            steps are kept.

    Returns:
        ``(scalars, histograms)``: the rows of :func:`flatten_rows`, with columns
        :data:`SCALAR_COLUMNS` and :data:`HISTOGRAM_COLUMNS`.

    """
    scalars, histograms = flatten_rows(records)
    return (
        _frame(scalars, SCALAR_COLUMNS, ["value"]),
        _frame(histograms, HISTOGRAM_COLUMNS, ["sample_size", "total"]),
    )
