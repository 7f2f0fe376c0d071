"""Read a whole run in chunks, with a progress bar, for the report and the export.

``cockpit.load`` decodes every line before it returns; for a log of 100,000 steps
that is a long silent wait and every record in memory at once. Here
``LogReader.chunks`` hands over the records a chunk at a time while a ``tqdm`` bar
counts the bytes read, and :func:`read_run` sorts each chunk into a :class:`RunData`,
which thins histograms, so memory stays bounded however long the run.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tqdm import tqdm

from cockpit.diagnosis import Diagnoser
from cockpit.instruments._data import RunData
from cockpit.logs import LogReader

__all__ = ["bar", "read_chunks", "read_run"]

_CHUNK = 2000


def bar(total: int, desc: str, progress: bool, unit: str = "it") -> tqdm:
    """A ``tqdm`` bar on stderr; shown only if ``progress`` and stderr is a terminal."""
    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        unit_scale=unit == "B",
        disable=None if progress else True,
        leave=False,
    )


def read_chunks(
    reader: LogReader, progress: bool = False
) -> Iterator[list[dict[str, Any]]]:
    """The reader's new records in chunks, in file order.

    Args:
        reader: The run's reader (check the run with ``reader.meta()`` first).
        progress: Show a bar of the bytes read on a terminal.

    Yields:
        Lists of decoded records.

    """
    with bar(reader.unread_bytes(), "reading", progress, "B") as shown:
        yield from reader.chunks(_CHUNK, shown.update)


def read_run(run_dir: str | os.PathLike[str], progress: bool = False) -> RunData:
    """A whole run as :class:`RunData`, read chunk by chunk, with its diagnosis.

    Args:
        run_dir: The run directory.
        progress: Show a progress bar on a terminal.

    Raises:
        LogFormatError: If ``run_dir`` is not a run directory this cockpit can read.

    """
    reader = LogReader(run_dir)
    meta = reader.meta()
    data = RunData(str(meta.get("run_name") or Path(run_dir).name), meta)
    diagnoser = Diagnoser(meta, run=data.name)
    for records in read_chunks(reader, progress):
        data.extend_records(records)
        diagnoser.feed(records)
    data.alerts = diagnoser.alerts
    return data
