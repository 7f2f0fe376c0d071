"""Read run directories: incrementally for live views, or whole into pandas.

:class:`LogReader` is the one reader of ``steps.jsonl``: it reads from a byte offset
on, so a live view parses only what was appended; it leaves a last line without its
newline (still being written, or the writer died mid-line) for a later call, skips a
corrupt line with a :class:`CorruptLogWarning` and goes on, and refuses a run in a
newer major format version.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from cockpit.exceptions import CorruptLogWarning, LogFormatError
from cockpit.logs._format import check_version, decode_line
from cockpit.logs.flatten import records_to_frames
from cockpit.logs.schema import ERROR, META_FILE, STEPS_FILE

__all__ = ["LogReader", "Run", "load", "records_to_frames"]


def _not_a_run(run_dir: Path) -> LogFormatError:
    runs = []
    if run_dir.is_dir():
        runs = sorted(p.name for p in run_dir.iterdir() if (p / META_FILE).is_file())
    hint = f" It holds the runs: {', '.join(runs)}." if runs else ""
    return LogFormatError(
        f"Expected a run directory containing {META_FILE} and {STEPS_FILE}, got "
        f"{run_dir}; pass one run directory, e.g. runs/<name>.{hint}"
    )


class LogReader:
    """Read one run directory, returning only what is new on each call.

    Args:
        run_dir: The run directory.

    Attributes:
        run_dir: The run directory.
        offset: Bytes of ``steps.jsonl`` consumed so far; only complete lines count.

    """

    def __init__(self, run_dir: str | os.PathLike[str]) -> None:
        self.run_dir = Path(run_dir)
        self.offset = 0
        self._lines_read = 0

    def meta(self) -> dict[str, Any]:
        """Read ``meta.json``.

        Raises:
            LogFormatError: If it is missing, not a JSON object, or in a newer major
                format version.

        """
        path = self.run_dir / META_FILE
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise _not_a_run(self.run_dir) from None
        except OSError as err:
            raise LogFormatError(f"Cannot read {path}: {err}.") from err
        try:
            meta = json.loads(text)
        except ValueError as err:
            raise LogFormatError(
                f"{path} is not valid JSON ({err}); the run directory is damaged."
            ) from None
        if not isinstance(meta, dict):
            raise LogFormatError(
                f"{path} must hold a JSON object, got {type(meta).__name__}; the run "
                "directory is damaged."
            )
        check_version(meta, self.run_dir)
        return meta

    def unread_bytes(self) -> int:
        """Bytes of ``steps.jsonl`` after :attr:`offset`; 0 if there is no such file."""
        try:
            return max((self.run_dir / STEPS_FILE).stat().st_size - self.offset, 0)
        except FileNotFoundError:
            return 0

    def read_new(self) -> list[dict[str, Any]]:
        """Return the records completed since the last call, in file order."""
        return [record for chunk in self.chunks() for record in chunk]

    def chunks(
        self, size: int | None = None, progress: Callable[[int], object] | None = None
    ) -> Iterator[list[dict[str, Any]]]:
        """The records completed since the last call, ``size`` at a time.

        :attr:`offset` moves on as lines are read, so a loop stopped early goes on
        where it stopped at the next call.

        Args:
            size: Records per chunk; ``None`` for one chunk of all of them.
            progress: Called with the bytes read for each chunk.

        Yields:
            Lists of decoded records, in file order; none if nothing is new.

        """
        path = self.run_dir / STEPS_FILE
        try:
            file = path.open("rb")
        except FileNotFoundError:
            return
        records: list[dict[str, Any]] = []
        read = 0
        with file:
            file.seek(self.offset)
            for raw in file:
                if not raw.endswith(b"\n"):
                    break  # still being written: left for a later call
                self.offset += len(raw)
                self._lines_read += 1
                read += len(raw)
                record = _decode_or_warn(raw, self._lines_read, path)
                if record is not None:
                    records.append(record)
                if size is not None and len(records) >= size:
                    if progress is not None:
                        progress(read)
                    read = 0
                    yield records
                    records = []
        if progress is not None and read:
            progress(read)
        if records:
            yield records


def _decode_or_warn(raw: bytes, number: int, path: Path) -> dict[str, Any] | None:
    """Decode line ``number`` of ``path``; ``None`` for a blank or corrupt one.

    A corrupt line raises a :class:`CorruptLogWarning` naming it; reading goes on.
    """
    if not raw.strip():
        return None
    try:
        return decode_line(raw.decode("utf-8"))
    except ValueError as err:
        warnings.warn(
            f"Skipped corrupt line {number} of {path}: {err}",
            CorruptLogWarning,
            stacklevel=4,
        )
        return None


@dataclass
class Run:
    """One run, read whole.

    Attributes:
        path: The run directory.
        meta: Content of ``meta.json``.
        scalars: Columns ``step, quantity, layer, value``; layer ``None`` is the
            total over the model.
        histograms: Columns ``step, quantity, layer, edges, y_edges, counts,
            sample_size, total``; ``y_edges`` is ``None`` for 1D histograms.
        errors: Records the writer could not log, each with an ``ERROR`` string.

    """

    path: Path
    meta: dict[str, Any]
    scalars: pd.DataFrame
    histograms: pd.DataFrame
    errors: list[dict[str, Any]] = field(default_factory=list)

    def scalar(self, quantity: str, layer: str | None = None) -> pd.Series:
        """Values of one quantity by step.

        Args:
            quantity: Quantity name, e.g. ``"loss"`` or ``"alpha.mean"``.
            layer: Parameter name; ``None`` for the total over the model.

        Returns:
            Float series indexed by ``step``, named after the quantity.

        Raises:
            KeyError: If the run has no such quantity, or not for that layer.

        """
        frame = self.scalars[self.scalars["quantity"] == quantity]
        if frame.empty:
            known = ", ".join(sorted(self.scalars["quantity"].unique()))
            raise KeyError(
                f"No scalar quantity {quantity!r} in {self.path}. Known: {known}."
            )
        layers = frame["layer"]
        rows = frame[layers.isna() if layer is None else layers == layer]
        if rows.empty:
            named = ", ".join(sorted(layers.dropna().unique()))
            raise KeyError(
                f"{quantity!r} in {self.path} has no values for layer {layer!r}. "
                f"Layers: {named or 'none'}; layer=None gives the total."
            )
        return pd.Series(
            rows["value"].to_numpy(),
            index=pd.Index(rows["step"].to_numpy(), name="step"),
            name=quantity,
        )


def load(run_dir: str | os.PathLike[str]) -> Run:
    """Read a whole run directory into pandas.

    Args:
        run_dir: One run directory, e.g. ``runs/<name>``.

    Returns:
        The run.

    Raises:
        LogFormatError: If ``run_dir`` holds no ``meta.json`` or one in a newer
            major format version.

    """
    reader = LogReader(run_dir)
    meta = reader.meta()
    records = reader.read_new()
    scalars, histograms = records_to_frames(records)
    errors = [record for record in records if ERROR in record]
    return Run(Path(run_dir), meta, scalars, histograms, errors)
