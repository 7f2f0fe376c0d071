"""Log data of one run, indexed for plotting and extended incrementally.

The reader's frames are long (one row per step, quantity and layer); an instrument asks
for one quantity and layer at a time, and the live dashboard adds a few rows every
second. :class:`RunData` keeps each ``(quantity, layer)`` series as numpy arrays, so a
lookup never scans the whole frame and appending costs only what is new. Histograms are
thinned to a bounded number per quantity and layer (the newest is always kept), so a
run of 100,000 steps does not hold 100,000 copies of a 2D histogram.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from cockpit.diagnosis import Alert
from cockpit.logs import Run
from cockpit.logs._columns import HistogramColumn
from cockpit.logs.flatten import flatten_columns

__all__ = ["Histogram", "RunData", "Series"]

_Key = tuple[str, str | None]


@dataclass(frozen=True)
class Series:
    """One quantity of one layer over steps.

    Attributes:
        steps: ``[T]`` integer steps, ascending.
        values: ``[T]`` float values; NaN where the log holds ``null``.

    """

    steps: np.ndarray
    values: np.ndarray

    def __len__(self) -> int:
        return len(self.steps)

    def between(self, low: int | None, high: int | None) -> Series:
        """The part with ``low <= step <= high``; ``None`` leaves a side open."""
        if low is None and high is None:
            return self
        start = 0 if low is None else int(np.searchsorted(self.steps, low, "left"))
        stop = (
            len(self.steps)
            if high is None
            else int(np.searchsorted(self.steps, high, "right"))
        )
        return Series(self.steps[start:stop], self.values[start:stop])

    def finite(self) -> Series:
        """The points with finite values."""
        keep = np.isfinite(self.values)
        return self if keep.all() else Series(self.steps[keep], self.values[keep])


@dataclass(frozen=True)
class Histogram:
    """One logged histogram.

    Attributes:
        step: The step it was logged at.
        edges: ``[B + 1]`` bin edges (of the parameter values for a 2D histogram).
        y_edges: ``[C + 1]`` edges of the gradient axis of a 2D histogram, else None.
        counts: ``[B]`` or ``[B, C]`` (weighted) counts; row ``i`` is the i-th bin of
            ``edges``.

    """

    step: int
    edges: np.ndarray
    y_edges: np.ndarray | None
    counts: np.ndarray


class _Thinned:
    """At most ``cap`` evenly spaced items plus the newest one."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.items: list[Histogram] = []
        self.stride = 1
        self.seen = 0
        self.latest: Histogram | None = None

    def add(self, item: Histogram) -> None:
        self.add_many(1, lambda _: item)

    def add_many(self, count: int, make: Callable[[int], Histogram | None]) -> None:
        """Add ``count`` items, building only those kept and the newest.

        ``make(i)`` gives the i-th, or ``None`` for one to leave out (a damaged
        histogram).
        """
        last_index, last_item = -1, None
        for index in range(count):
            if self.seen % self.stride == 0:
                item = make(index)
                if item is None:
                    continue
                last_index, last_item = index, item
                self.items.append(item)
                if len(self.items) > self.cap:
                    self.items = self.items[::2]
                    self.stride *= 2
            self.seen += 1
        for index in reversed(range(count)):
            newest = last_item if index == last_index else make(index)
            if newest is not None:
                self.latest = newest
                return

    def all(self) -> list[Histogram]:
        if self.latest is None or (self.items and self.items[-1] is self.latest):
            return list(self.items)
        return [*self.items, self.latest]


def _layer(value: Any) -> str | None:
    return (
        None
        if value is None or (isinstance(value, float) and np.isnan(value))
        else value
    )


def _array(value: Any) -> np.ndarray | None:
    """``value`` as a float array; ``None`` if it is missing or not numbers."""
    if value is None:
        return None
    try:
        return np.asarray(value, dtype=float)
    except (TypeError, ValueError, OverflowError):  # a damaged log: left out
        return None


def _fits(edges: np.ndarray, y_edges: np.ndarray | None, counts: np.ndarray) -> bool:
    """Whether the histogram's edges and counts have matching shapes."""
    if edges.ndim != 1 or counts.ndim != (1 if y_edges is None else 2):
        return False
    if y_edges is not None and (
        y_edges.ndim != 1 or len(y_edges) != counts.shape[1] + 1
    ):
        return False
    return len(edges) == counts.shape[0] + 1


def _histogram(step: int, edges: Any, y_edges: Any, counts: Any) -> Histogram | None:
    """The logged lists as a :class:`Histogram`; ``None`` if they do not fit."""
    counts, edges, y_array = _array(counts), _array(edges), _array(y_edges)
    if counts is None or edges is None or not _fits(edges, y_array, counts):
        return None
    return Histogram(step, edges, y_array, counts)


class RunData:
    """The scalars and histograms of one run, by quantity and layer.

    Args:
        name: The run's name, shown in legends.
        meta: Content of the run's ``meta.json``.
        hist_cap: Histograms kept per quantity and layer before thinning.

    Attributes:
        name: The run's name.
        meta: Content of ``meta.json``.
        version: Increases whenever rows are added.
        alerts: The diagnosis's alerts (``cockpit.diagnosis``), set by whoever reads
            the run (the dashboard's store, the report); each panel marks those
            that link to it.

    """

    def __init__(
        self, name: str, meta: dict[str, Any] | None = None, hist_cap: int = 256
    ) -> None:
        self.name = name
        self.meta = meta or {}
        self.version = 0
        self._hist_cap = hist_cap
        self._chunks: dict[_Key, list[Series]] = defaultdict(list)
        self._merged: dict[_Key, Series] = {}
        self._hists: dict[_Key, _Thinned] = {}
        self._layers: dict[str, list[str]] = defaultdict(list)
        self._versions: dict[str, int] = defaultdict(int)
        self._last_step: int | None = None
        self.alerts: list[Alert] = []

    @classmethod
    def from_frames(
        cls,
        name: str,
        scalars: pd.DataFrame,
        histograms: pd.DataFrame | None = None,
        meta: dict[str, Any] | None = None,
    ) -> RunData:
        """Build from the frames of ``cockpit.logs.flatten.records_to_frames``."""
        data = cls(name, meta)
        data.extend(scalars, histograms)
        return data

    @classmethod
    def from_run(cls, run: Run, name: str | None = None) -> RunData:
        """Build from a run read by ``cockpit.load``."""
        label = name or str(run.meta.get("run_name") or run.path.name)
        return cls.from_frames(label, run.scalars, run.histograms, run.meta)

    def extend(
        self, scalars: pd.DataFrame, histograms: pd.DataFrame | None = None
    ) -> None:
        """Add the rows of newly read records."""
        if not scalars.empty:
            self._add_scalars(scalars)
        if histograms is not None and not histograms.empty:
            self._add_histograms(histograms)

    def extend_records(self, records: list[dict[str, Any]]) -> None:
        """Add newly read records (as ``LogReader.read_new`` returns them).

        The same as ``extend(*records_to_frames(records))``, without the frames:
        about six times faster, which counts when a long run is opened.
        """
        columns, histograms = flatten_columns(records)
        for (quantity, layer), (steps, values) in columns.items():
            self._add_column(quantity, layer, steps, values)
        for step, quantity, layer, edges, y_edges, counts, *_ in histograms:
            self._add_histogram(step, quantity, layer, edges, y_edges, counts)

    def extend_columns(
        self,
        columns: dict[_Key, tuple[np.ndarray, np.ndarray]],
        histograms: dict[_Key, HistogramColumn],
    ) -> None:
        """Add numbers and histograms already sorted by quantity and layer.

        Args:
            columns: ``(quantity, layer) -> (steps, values)``, as
                ``cockpit.logs._columns.segment_columns`` returns them.
            histograms: ``(quantity, layer) ->`` histograms decoded on demand:
                only those kept after thinning are.

        """
        for (quantity, layer), (steps, values) in columns.items():
            self._add_column(quantity, layer, steps, values)
        for (quantity, layer), column in histograms.items():
            if not len(column.steps):
                continue

            def make(index: int, column: HistogramColumn = column) -> Histogram | None:
                return _histogram(int(column.steps[index]), *column.row(index))

            thinned = self._hists.setdefault(
                (quantity, layer), _Thinned(self._hist_cap)
            )
            thinned.add_many(len(column.steps), make)
            self._touch(quantity, layer, int(column.steps.max()))

    def _add_column(
        self, quantity: str, layer: str | None, steps: Any, values: Any
    ) -> None:
        chunk = Series(np.asarray(steps, dtype=np.int64), np.asarray(values, float))
        self._chunks[(quantity, layer)].append(chunk)
        self._merged.pop((quantity, layer), None)
        self._touch(quantity, layer, int(chunk.steps.max()))

    def _touch(self, quantity: str, layer: str | None, step: int) -> None:
        self._versions[quantity.split(".", 1)[0]] += 1
        if layer is not None and layer not in self._layers[quantity]:
            self._layers[quantity].append(layer)
        if self._last_step is None or step > self._last_step:
            self._last_step = step
        self.version += 1

    def _add_scalars(self, frame: pd.DataFrame) -> None:
        steps = frame["step"].to_numpy(dtype=np.int64)
        values = frame["value"].to_numpy(dtype=float)
        groups = frame.groupby(["quantity", "layer"], dropna=False, sort=False).indices
        for (quantity, layer), rows in groups.items():
            key = (str(quantity), _layer(layer))
            self._chunks[key].append(Series(steps[rows], values[rows]))
            self._merged.pop(key, None)
            self._touch(key[0], key[1], int(steps[rows].max()))

    def _add_histograms(self, frame: pd.DataFrame) -> None:
        for row in frame.itertuples(index=False):
            self._add_histogram(
                int(row.step),
                str(row.quantity),
                _layer(row.layer),
                row.edges,
                row.y_edges,
                row.counts,
            )

    def _add_histogram(
        self,
        step: int,
        quantity: str,
        layer: str | None,
        edges: Any,
        y_edges: Any,
        counts: Any,
    ) -> None:
        hist = _histogram(step, edges, y_edges, counts)
        if hist is None:
            return
        self._hists.setdefault((quantity, layer), _Thinned(self._hist_cap)).add(hist)
        self._touch(quantity, layer, step)

    def series(self, quantity: str, layer: str | None = None) -> Series:
        """One quantity over steps; empty if the run has none.

        Args:
            quantity: Row name in the scalar frame, e.g. ``"loss"``,
                ``"loss.variance"`` or ``"kfac_block.condition"``.
            layer: Parameter name; ``None`` for the total over the model.

        """
        key = (quantity, layer)
        if key not in self._merged:
            chunks = self._chunks.get(key, [])
            steps = np.concatenate([c.steps for c in chunks] or [np.empty(0, np.int64)])
            values = np.concatenate([c.values for c in chunks] or [np.empty(0)])
            if len(steps) > 1 and np.any(np.diff(steps) < 0):
                order = np.argsort(steps, kind="stable")
                steps, values = steps[order], values[order]
            merged = Series(steps, values)
            if chunks:
                self._chunks[key] = [merged]
            self._merged[key] = merged
        return self._merged[key]

    def histograms(self, quantity: str, layer: str | None = None) -> list[Histogram]:
        """The kept histograms of one quantity and layer, oldest first."""
        thinned = self._hists.get((quantity, layer))
        return sorted(thinned.all(), key=lambda h: h.step) if thinned else []

    def layers(self, quantity: str) -> list[str]:
        """The layers a quantity has per-layer values for, in logged order."""
        return list(self._layers.get(quantity, []))

    def quantities(self) -> list[str]:
        """Every scalar and histogram quantity seen, e.g. ``"loss.variance"``."""
        names = {key[0] for key in self._chunks} | {key[0] for key in self._hists}
        return sorted(names)

    def has(self, quantity: str) -> bool:
        """Whether the run logged ``quantity`` (a log key also counts its parts)."""
        if "." not in quantity:
            return self._versions.get(quantity, 0) > 0
        return any(key[0] == quantity for key in [*self._chunks, *self._hists])

    def version_of(self, quantity: str) -> int:
        """A counter that changes whenever rows of ``quantity`` (or its parts) arrive."""
        return self._versions.get(quantity.split(".", 1)[0], 0)

    @property
    def last_step(self) -> int | None:
        """The largest step logged so far."""
        return self._last_step
