"""Read a whole run in chunks, with a progress bar, for the report and the export.

``cockpit.load`` decodes every line before it returns; for a log of 100,000 steps
that is a long silent wait and every record in memory at once. Here the lines are
decoded a chunk at a time, with the same rules as ``LogReader.read_new`` (a last line
without its newline is still being written and is left out; a corrupt line is skipped
with a :class:`CorruptLogWarning`), and a ``tqdm`` bar counts the bytes read.
:func:`read_run` feeds the chunks into a :class:`RunData`, which thins histograms, so
memory stays bounded however long the run.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cockpit.instruments._data import RunData
from tqdm import tqdm

from cockpit.logs import LogReader
from cockpit.logs._format import STEPS_FILE
from cockpit.logs.reader import decode_or_warn, records_to_frames

__all__ = ["bar", "read_chunks", "read_meta", "read_run"]

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


def read_meta(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The run's ``meta.json``.

    Raises:
        LogFormatError: If ``run_dir`` is not a run directory this cockpit can read.

    """
    return LogReader(run_dir).meta()


def read_chunks(
    run_dir: str | os.PathLike[str], progress: bool = False, chunk: int = _CHUNK
) -> Iterator[list[dict[str, Any]]]:
    """The run's complete records, ``chunk`` at a time, in file order.

    Args:
        run_dir: The run directory (check it with :func:`read_meta` first).
        progress: Show a bar of the bytes read on a terminal.
        chunk: Records per chunk.

    Yields:
        Lists of decoded records.

    """
    path = Path(run_dir) / STEPS_FILE
    if not path.is_file():
        return
    records: list[dict[str, Any]] = []
    with (
        path.open("rb") as file,
        bar(path.stat().st_size, "reading", progress, "B") as shown,
    ):
        for number, raw in enumerate(file, start=1):
            shown.update(len(raw))
            if not raw.endswith(b"\n"):
                break  # still being written
            record = decode_or_warn(raw, number, path)
            if record is not None:
                records.append(record)
            if len(records) >= chunk:
                yield records
                records = []
    if records:
        yield records


def read_run(run_dir: str | os.PathLike[str], progress: bool = False) -> RunData:
    """A whole run as :class:`RunData`, read chunk by chunk.

    Args:
        run_dir: The run directory.
        progress: Show a progress bar on a terminal.

    Raises:
        LogFormatError: If ``run_dir`` is not a run directory this cockpit can read.

    """
    meta = read_meta(run_dir)
    data = RunData(str(meta.get("run_name") or Path(run_dir).name), meta)
    for records in read_chunks(run_dir, progress):
        data.extend(*records_to_frames(records))
    return data
