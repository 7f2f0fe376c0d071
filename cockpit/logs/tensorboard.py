"""Log records as TensorBoard summaries: ``cockpit export`` and the tracker's mirror.

Both write through :class:`TensorBoardWriter`, so a run exported after training and
one mirrored while it trained hold the same events. A record is flattened exactly as
``cockpit.load`` flattens it (``cockpit.logs.flatten``), and each row gets a tag:

- the quantity's dotted path with ``/`` separators: ``loss``, ``loss/variance``,
  ``kfac_block/condition/0.weight``;
- a per-layer value adds the parameter name (``grad_norm/0.weight``) and the
  whole-model value of such a quantity adds ``total`` (``grad_norm/total``);
- 1D histograms (``grad_hist_1d``) become TensorBoard histograms with the logged
  edges and counts; TensorBoard has no 2D histograms, so ``grad_hist_2d`` is left out.

Values logged as ``null`` (non-finite) are written as NaN, not dropped. The
``tensorboard`` package is imported only when a :class:`TensorBoardWriter` is made.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from cockpit.exceptions import ConfigurationError
from cockpit.logs.flatten import flatten_rows
from cockpit.logs.schema import TIME

__all__ = ["TOTAL_TAG", "HistogramPoint", "ScalarPoint", "TensorBoardWriter", "points"]

TOTAL_TAG = "total"
"""Last tag part of a whole-model value whose quantity also has per-layer values."""


@dataclass(frozen=True)
class ScalarPoint:
    """One scalar: ``tag`` at ``step``; NaN where the log holds ``null``."""

    tag: str
    step: int
    value: float


@dataclass(frozen=True)
class HistogramPoint:
    """One 1D histogram: ``edges`` ``[B + 1]`` and (weighted) ``counts`` ``[B]``."""

    tag: str
    step: int
    edges: np.ndarray
    counts: np.ndarray


def _tag(quantity: str, layer: str | None, layered: set[str]) -> str:
    base = quantity.replace(".", "/")
    if layer is not None:
        return f"{base}/{layer}"
    return f"{base}/{TOTAL_TAG}" if quantity in layered else base


def points(record: dict[str, Any]) -> tuple[list[ScalarPoint], list[HistogramPoint]]:
    """The scalars and 1D histograms of one decoded log record, with their tags.

    Args:
        record: A record as ``LogReader.read_new`` returns it.

    Returns:
        ``(scalars, histograms)``; both empty for an error record.

    """
    rows, hists = flatten_rows([record])
    layered = {row[1] for row in [*rows, *hists] if row[2] is not None}
    scalars = [
        ScalarPoint(_tag(quantity, layer, layered), step, float(value))
        for step, quantity, layer, value in rows
    ]
    histograms = [
        HistogramPoint(
            _tag(quantity, layer, layered),
            step,
            np.asarray(edges, dtype=float),
            np.nan_to_num(np.asarray(counts, dtype=float), nan=0.0),
        )
        for step, quantity, layer, edges, y_edges, counts, *_ in hists
        if y_edges is None and edges is not None and counts is not None
    ]
    return scalars, histograms


def _import_tensorboard() -> tuple[ModuleType, ModuleType, ModuleType]:
    """The event writer and proto modules, or a ConfigurationError saying what to do."""
    try:
        return (
            importlib.import_module("tensorboard.summary.writer.event_file_writer"),
            importlib.import_module("tensorboard.compat.proto.event_pb2"),
            importlib.import_module("tensorboard.compat.proto.summary_pb2"),
        )
    except ImportError as err:
        raise ConfigurationError(
            f"Writing TensorBoard event files needs the 'tensorboard' package ({err}). "
            "Install it with: pip install tensorboard"
        ) from None


class TensorBoardWriter:
    """Write log records as TensorBoard event files into one directory.

    The event file is created on the first :meth:`write`, so a writer made on the
    training thread touches the disk only from the thread that writes.

    Args:
        logdir: Directory of the event files (a TensorBoard run); created if needed.
        flush_secs: Seconds between flushes of TensorBoard's own writer thread.

    Raises:
        ConfigurationError: If the ``tensorboard`` package is not installed.

    """

    def __init__(self, logdir: str | os.PathLike[str], flush_secs: float = 2.0):
        self.logdir = Path(logdir)
        self._files, self._events, self._summaries = _import_tensorboard()
        self._flush_secs = flush_secs
        self._writer: Any = None
        self.scalars_written = 0
        self.histograms_written = 0

    def __str__(self) -> str:
        return f"TensorBoard event files in {self.logdir}"

    def write(self, record: dict[str, Any]) -> None:
        """Add the scalars and 1D histograms of one decoded record."""
        scalars, histograms = points(record)
        if not scalars and not histograms:
            return
        if self._writer is None:
            self._writer = self._files.EventFileWriter(
                os.fspath(self.logdir), flush_secs=self._flush_secs
            )
        wall_time = float(record.get(TIME) or 0.0)
        for point in scalars:
            value = self._summaries.Summary.Value(
                tag=point.tag, simple_value=point.value
            )
            self._add(wall_time, point.step, value)
        for hist in histograms:
            value = self._summaries.Summary.Value(tag=hist.tag, histo=self._proto(hist))
            self._add(wall_time, hist.step, value)
        self.scalars_written += len(scalars)
        self.histograms_written += len(histograms)

    def _add(self, wall_time: float, step: int, value: Any) -> None:
        summary = self._summaries.Summary(value=[value])
        event = self._events.Event(wall_time=wall_time, step=step, summary=summary)
        self._writer.add_event(event)

    def _proto(self, hist: HistogramPoint) -> Any:
        """TensorBoard's histogram: bucket ``i`` spans ``(limit[i-1], limit[i]]``.

        With ``min`` the first edge and ``bucket_limit`` the right edges, TensorBoard
        draws exactly the logged bins; sums use the bin centers.
        """
        centers = 0.5 * (hist.edges[:-1] + hist.edges[1:])
        return self._summaries.HistogramProto(
            min=float(hist.edges[0]),
            max=float(hist.edges[-1]),
            num=float(hist.counts.sum()),
            sum=float((hist.counts * centers).sum()),
            sum_squares=float((hist.counts * centers**2).sum()),
            bucket_limit=hist.edges[1:].tolist(),
            bucket=hist.counts.tolist(),
        )

    def flush(self) -> None:
        """Write what TensorBoard's writer thread holds to disk."""
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        """Flush and close the event file; idempotent."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
