"""The writer thread's side of a run: ``steps.jsonl`` appended, synced and mirrored.

:class:`StepsAppender` drains the queue that :class:`~cockpit.logs.writer.RunWriter`
fills: it materializes each record, encodes it, appends the line with one unbuffered
``write`` (nothing is held back to be written later), fsyncs at most every
``fsync_interval`` seconds while there is unsynced data, and hands each written record
to the mirror and to the columnar cache (:class:`~cockpit.logs._segments.SegmentWriter`,
a segment each few MiB and one on close). What goes wrong becomes a notice, never an
exception on the training thread, and the thread itself never dies of one.

An I/O fault (a full disk, a file size limit, a vanished run directory) ends the log:
a line cut short is cut off again, one notice names the error and the first step not
written, and every later record is dropped and counted (:attr:`StepsAppender.lost`),
so the log is exactly the steps before the fault, and training goes on.
"""

from __future__ import annotations

import contextlib
import numbers
import os
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cockpit.exceptions import LogDirError
from cockpit.logs._format import decode_line, encode_record
from cockpit.logs._note_table import NoteTable
from cockpit.logs._notices import Notices
from cockpit.logs._segments import SegmentWriter
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


def open_steps(run_dir: Path) -> int:
    """Create the run directory and open a new ``steps.jsonl``; returns the fd."""
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
    return fd


class StepsAppender:
    """Append the queued records to ``steps.jsonl``, on the writer thread.

    Args:
        run_dir: The run directory.
        fd: ``steps.jsonl``, open for appending (see :func:`open_steps`).
        items: Records, objects with ``materialize()``, flush events and
            :data:`STOP`.
        fsync_interval: Seconds between fsyncs while writing.
        mirror: Also gets every written record; dropped after it raises.
        notices: Takes the notices for the user.
        watch: Called with every written record, decoded as a reader sees it
            (the diagnosis); must not raise.
        segments: Keeps the columnar cache of the lines written; none if not given.

    Attributes:
        lost: ``None``, or after a fault ``{"records", "first_step", "last_step",
            "error"}``: the records not written, for ``meta.json``.
        deleted: Whether the run directory was found deleted.
        cpu_seconds: The writer thread's CPU time so far (``time.thread_time``),
            updated after each item: what the writer costs the training where
            cores are few (the overhead budget counts it, :mod:`cockpit._budget`).

    """

    def __init__(
        self,
        run_dir: Path,
        fd: int,
        items: queue.SimpleQueue[Any],
        fsync_interval: float,
        mirror: RecordMirror | None,
        notices: Notices,
        watch: Callable[[dict[str, Any]], None] | None = None,
        segments: SegmentWriter | None = None,
    ) -> None:
        self._run_dir = run_dir
        self._path = run_dir / STEPS_FILE
        self._fd = fd
        self._size = 0
        self._unsynced: list[Any] = []  # steps of the records since the last fsync
        self._queue = items
        self._fsync_interval = fsync_interval
        self._mirror = mirror
        self._notices = notices
        self._watch = watch
        self._segments = segments or SegmentWriter(run_dir, active=False)
        self._notes = NoteTable()  # what the lines written leave out
        self._read_notes = NoteTable()  # what the mirror's records get back
        self.lost: dict[str, Any] | None = None
        self.deleted = False
        self.cpu_seconds = 0.0

    def run(self) -> None:
        """Drain the queue until :data:`STOP`: the writer thread's target."""
        last_sync = time.monotonic()
        started = time.thread_time()
        while True:
            self.cpu_seconds = time.thread_time() - started
            if self._segments.pending and self._queue.empty():
                self._segments.work()  # the cache waits for idle time, never a line
            wait = None
            if self._unsynced:
                wait = max(0.0, last_sync + self._fsync_interval - time.monotonic())
            if self._segments.pending:
                wait = 0.0
            try:
                item = self._queue.get(timeout=wait)
            except queue.Empty:
                item = None
            try:
                if item is STOP:
                    self._stop()
                    return
                self._handle(item)
                if self._unsynced and (
                    time.monotonic() - last_sync >= self._fsync_interval
                ):
                    self._sync()
                    last_sync = time.monotonic()
            except Exception as err:  # a dead writer thread would hang flush()
                self._notices.add(f"cockpit's log writer: {type(err).__name__}: {err}")
                if item is STOP:
                    return

    def _handle(self, item: Any) -> None:
        if isinstance(item, threading.Event):
            self._to_mirror("flush")
            item.set()
        elif item is not None:
            self._write_item(item)

    def _stop(self) -> None:
        self._sync()
        if self.lost is None and self._unlinked():
            self.deleted = True
            self._notices.add(
                f"the run directory {self._run_dir} was deleted while training; "
                "its log is gone"
            )
        if self.lost is None and not self.deleted:
            self._segments.close()
        try:
            os.close(self._fd)
        except OSError as err:  # after a good fsync: what was written is on disk
            self._notices.add(f"could not close {self._path}: {err}")
        self._to_mirror("close")

    def _sync(self) -> None:
        if not self._unsynced or self.lost is not None:
            return
        try:
            os.fsync(self._fd)
        except OSError as err:
            error = f"could not fsync {self._path}: {err}"
            self._fail(error, self._unsynced, "may not be on disk")
        self._unsynced = []

    def _unlinked(self) -> bool:
        try:
            return os.fstat(self._fd).st_nlink == 0
        except OSError:
            return False

    def _write_line(self, line: str, step: object) -> int:
        """Append ``line``; the bytes it took, or 0 where it is not in the log."""
        if self.lost is not None:
            self._lose(step)
            return 0
        data = (line + "\n").encode("utf-8")
        written = 0
        try:
            while written < len(data):
                written += os.write(self._fd, data[written:])
        except OSError as err:
            if written:  # cut the partial line off again, so the next line is whole
                with contextlib.suppress(OSError):
                    os.ftruncate(self._fd, self._size)
            self._fail(f"could not write {self._path}: {err}", [step])
            return 0
        self._size += len(data)
        self._unsynced.append(step)
        if self._unlinked():
            self.deleted = True
            self._fail(f"the run directory {self._run_dir} was deleted", [step])
            return 0
        return len(data)

    def _fail(
        self, error: str, steps: list[Any], what: str = "are not written"
    ) -> None:
        """End the log at an I/O fault: say so once; ``steps`` are lost."""
        if self.lost is not None:
            return
        self._segments.stop()
        self.lost = {"records": 0, "first_step": None, "last_step": None}
        self.lost["error"] = error
        for step in steps:
            self._lose(step)
        self._notices.add(
            f"{error}; records from step {self.lost['first_step']} on {what}, "
            "training goes on (meta.json counts them)"
        )

    def _lose(self, step: object) -> None:
        assert self.lost is not None
        self.lost["records"] += 1
        if isinstance(step, numbers.Integral) and not isinstance(step, bool):
            first, last = self.lost["first_step"], self.lost["last_step"]
            self.lost["first_step"] = step if first is None else min(first, step)
            self.lost["last_step"] = step if last is None else max(last, step)

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
                    self._notices.once(str(text))
            line, nonfinite = encode_record(record, self._notes)
        except Exception as err:
            self._write_error(step, err)
            return
        # A value whose record explains it (``notes``) is expected, not alarming.
        explained = record.get(NOTES, {}) if isinstance(record, dict) else {}
        unexplained = [path for path in nonfinite if path not in explained]
        if unexplained:
            self._notices.nonfinite(step, unexplained)
        written = self._write_line(line, step)
        if written:
            self._segments.add(line, written)
        if self._mirror is not None or self._watch is not None:
            decoded = decode_line(line)
            self._read_notes.expand(decoded)
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
            self._notices.add(f"stopped mirroring the log to {mirror}: {err}")
            self._mirror = None

    def _write_error(self, step: object, err: Exception) -> None:
        if isinstance(step, bool) or not isinstance(step, numbers.Integral):
            step = -1
        number = int(step)
        error = f"{type(err).__name__}: {err}"
        self._notices.once(
            f"step {number}: could not log the record ({error}); "
            "wrote an error record instead"
        )
        line, _ = encode_record(
            {STEP: number, TIME: time.time(), VALUES: {}, ERROR: error}, self._notes
        )
        written = self._write_line(line, number)
        if written:
            self._segments.add(line, written)
