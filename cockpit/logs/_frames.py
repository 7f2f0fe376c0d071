"""Flatten log records into pandas frames: one for scalars, one for histograms."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

__all__ = ["HISTOGRAM_COLUMNS", "SCALAR_COLUMNS", "records_to_frames"]

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


def _is_scalar(value: object) -> bool:
    return value is None or isinstance(value, (int, float))


def _as_float(value: int | float | None) -> float:
    return np.nan if value is None else float(value)


class _Rows:
    """Rows of the scalar and histogram frames, gathered record by record."""

    def __init__(self) -> None:
        self.scalars: list[tuple[Any, ...]] = []
        self.histograms: list[tuple[Any, ...]] = []

    def add_value(self, step: int, quantity: str, value: Any) -> None:
        if _is_scalar(value):
            self.scalars.append((step, quantity, None, _as_float(value)))
        elif isinstance(value, dict):
            if _is_histogram(value):
                self.add_histogram(step, quantity, None, value)
                for layer, hist in _dict(value.get("per_layer")).items():
                    if isinstance(hist, dict):
                        self.add_histogram(step, quantity, layer, hist, value)
            else:
                self.add_dict(step, quantity, value)

    def add_dict(self, step: int, quantity: str, value: dict[str, Any]) -> None:
        for key, item in value.items():
            if key == "total" and _is_scalar(item):
                self.scalars.append((step, quantity, None, _as_float(item)))
            elif key == "per_layer" and isinstance(item, dict):
                for layer, entry in item.items():
                    if _is_scalar(entry):
                        self.scalars.append((step, quantity, layer, _as_float(entry)))
                    elif isinstance(entry, dict) and _is_histogram(entry):
                        self.add_histogram(step, quantity, layer, entry)
            else:
                self.add_value(step, f"{quantity}.{key}", item)

    def add_histogram(
        self,
        step: int,
        quantity: str,
        layer: str | None,
        hist: dict[str, Any],
        parent: dict[str, Any] | None = None,
    ) -> None:
        # Per-layer histograms may share their edges with the whole-model one.
        edges = {**_dict(parent), **hist}
        two_d = "x_edges" in edges
        self.histograms.append(
            (
                step,
                quantity,
                layer,
                edges.get("x_edges") if two_d else edges.get("edges"),
                edges.get("y_edges") if two_d else None,
                hist.get("counts"),
                _as_float(_scalar_or_none(hist.get("sample_size"))),
                _as_float(_scalar_or_none(hist.get("total"))),
            )
        )


def _is_histogram(value: dict[str, Any]) -> bool:
    return "edges" in value or "x_edges" in value


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _scalar_or_none(value: object) -> int | float | None:
    return value if isinstance(value, (int, float)) else None


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

    Numbers become rows of the scalar frame (``None`` as NaN); a dict with ``total``
    and ``per_layer`` gives one row per layer plus a total row (layer ``None``); other
    keys of a dict become dotted quantities (``alpha.mean``). Dicts with ``edges``
    (1D) or ``x_edges`` (2D) become rows of the histogram frame, one for the whole
    model and one per entry of their ``per_layer``. Records with ``"error"`` give no
    rows; repeated steps are kept.

    Args:
        records: Decoded records, as returned by :meth:`LogReader.read_new`.

    Returns:
        ``(scalars, histograms)`` with columns :data:`SCALAR_COLUMNS` and
        :data:`HISTOGRAM_COLUMNS`.

    """
    rows = _Rows()
    for record in records:
        if "error" in record:
            continue
        for quantity, value in _dict(record.get("values")).items():
            rows.add_value(record["step"], quantity, value)
    scalars = _frame(rows.scalars, SCALAR_COLUMNS, ["value"])
    histograms = _frame(rows.histograms, HISTOGRAM_COLUMNS, ["sample_size", "total"])
    return scalars, histograms
