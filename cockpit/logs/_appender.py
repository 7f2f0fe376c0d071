"""The writer thread's side of a run: ``steps.jsonl`` appended, synced and mirrored.

:class:`StepsAppender` drains the queue that :class:`~cockpit.logs.writer.RunWriter`
fills: it materializes each record, encodes it, appends the line and flushes, fsyncs
at most every ``fsync_interval`` seconds while there is unsynced data, and hands each
written record to the mirror. What goes wrong becomes a notice, never an exception on
the training thread.
"""

from __future__ import annotations

import numbers
import os
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from cockpit.exceptions import LogDirError
from cockpit.logs._format import decode_line, encode_record
from cockpit.logs.schema import (
    ERROR,
    META_FILE,
    NOTES,
    NOTICES,
    STEP,
    STEPS_FILE,
    TIME,
    VALUES,
)

if TYPE_CHECKING:
    from cockpit.logs.writer import RecordMirror

__all__ = ["STOP", "StepsAppender", "dir_error", "open_steps"]

#: Put on the queue last: the appender syncs, closes the file and the mirror, stops.
STOP = object()


def dir_error(run_dir: Path, err: OSError) -> LogDirError:
    """The error for a run directory that cannot be written."""
    return LogDirError(
        f"Cannot write the run directory {run_dir}: {err}. Choose a writable log "
        "directory (--logdir on the command line, logdir= in Python)."
    )


def open_steps(run_dir: Path) -> IO[str]:
    """Create the run directory and open a new ``steps.jsonl`` for appending."""
    if (run_dir / STEPS_FILE).exists() or (run_dir / META_FILE).exists():
        raise LogDirError(
            f"The run {run_dir} already exists. Choose another run name, or delete "
            "the old run directory."
        )
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        # O_EXCL: two processes given the same run name never interleave their lines.
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND
        fd = os.open(run_dir / STEPS_FILE, flags, 0o644)
    except FileExistsError as err:
        if run_dir.is_dir():
            raise LogDirError(
                f"The run {run_dir} already exists. Choose another run name."
            ) from err
        raise dir_error(run_dir, err) from err
    except OSError as err:
        raise dir_error(run_dir, err) from err
    return os.fdopen(fd, "a", buffering=1, encoding="utf-8")


class StepsAppender:
    """Append the queued records to ``steps.jsonl``, on the writer thread.

    Args:
        run_dir: The run directory.
        file: ``steps.jsonl``, open for appending (see :func:`open_steps`).
        items: Records, objects with ``materialize()``, flush events and
            :data:`STOP`.
        fsync_interval: Seconds between fsyncs while writing.
        mirror: Also gets every written record; dropped after it raises.
        notice: Takes a notice for the user.
        watch: Called with every written record, decoded as a reader sees it
            (the diagnosis); must not raise.

    """

    def __init__(
        self,
        run_dir: Path,
        file: IO[str],
        items: queue.SimpleQueue[Any],
        fsync_interval: float,
        mirror: RecordMirror | None,
        notice: Callable[[str], None],
        watch: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self._run_dir = run_dir
        self._file = file
        self._queue = items
        self._fsync_interval = fsync_interval
        self._mirror = mirror
        self._notice = notice
        self._watch = watch

    def run(self) -> None:
        """Drain the queue until :data:`STOP`: the writer thread's target."""
        last_sync = time.monotonic()
        dirty = False
        while True:
            wait = None
            if dirty:
                wait = max(0.0, last_sync + self._fsync_interval - time.monotonic())
            try:
                item = self._queue.get(timeout=wait)
            except queue.Empty:
                item = None
            if item is STOP:
                self._sync()
                self._file.close()
                self._to_mirror("close")
                return
            if isinstance(item, threading.Event):
                self._to_mirror("flush")
                item.set()
            elif item is not None:
                self._write_item(item)
                dirty = True
            if dirty and time.monotonic() - last_sync >= self._fsync_interval:
                self._sync()
                last_sync, dirty = time.monotonic(), False

    def _sync(self) -> None:
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
        except OSError as err:
            self._notice(f"could not fsync {self._run_dir / STEPS_FILE}: {err}")

    def _write_item(self, item: Any) -> None:
        try:
            records = item.materialize() if hasattr(item, "materialize") else item
        except Exception as err:
            self._write_error(getattr(item, "step", None), err)
            return
        for record in records if isinstance(records, list) else [records]:
            self._write_record(record)

    def _write_record(self, record: Any) -> None:
        step = record.get(STEP) if isinstance(record, dict) else None
        try:
            if isinstance(record, dict) and NOTICES in record:
                record = dict(record)
                notices = record.pop(NOTICES)
                for text in notices if isinstance(notices, list) else [notices]:
                    self._notice(str(text))
            line, nonfinite = encode_record(record)
        except Exception as err:
            self._write_error(step, err)
            return
        # A value whose record explains it (``notes``) is expected, not alarming.
        explained = record.get(NOTES, {}) if isinstance(record, dict) else {}
        unexplained = [path for path in nonfinite if path not in explained]
        if unexplained:
            self._notice(
                f"step {step}: non-finite values logged as null: {', '.join(unexplained)}"
            )
        self._write_line(line, step)
        if self._mirror is not None or self._watch is not None:
            decoded = decode_line(line)
            self._to_mirror("write", decoded)
            if self._watch is not None:
                self._watch(decoded)

    def _to_mirror(self, method: str, *args: Any) -> None:
        """Call the mirror's ``method``; if it raises, say so and stop mirroring."""
        mirror = self._mirror
        if mirror is None:
            return
        if method == "close":
            self._mirror = None
        try:
            getattr(mirror, method)(*args)
        except Exception as err:
            self._notice(f"stopped mirroring the log to {mirror}: {err}")
            self._mirror = None

    def _write_error(self, step: object, err: Exception) -> None:
        if isinstance(step, bool) or not isinstance(step, numbers.Integral):
            step = -1
        number = int(step)
        error = f"{type(err).__name__}: {err}"
        self._notice(
            f"step {number}: could not log the record ({error}); "
            "wrote an error record instead"
        )
        line, _ = encode_record(
            {STEP: number, TIME: time.time(), VALUES: {}, ERROR: error}
        )
        self._write_line(line, number)

    def _write_line(self, line: str, step: object) -> None:
        try:
            self._file.write(line + "\n")
            self._file.flush()
        except OSError as err:
            self._notice(f"step {step}: could not write to {self._run_dir}: {err}")
