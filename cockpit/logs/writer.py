"""Background writer of one run directory.

The training thread only enqueues; a daemon thread materializes each record (copying
device data to the host is the record's job, the writer never imports torch), encodes
it and appends it to ``steps.jsonl`` with one unbuffered write. It fsyncs at most every
``fsync_interval`` seconds while there is unsynced data, and on close, so a killed
process loses at most the records still queued and never corrupts what was written. A
``mirror`` (e.g. TensorBoard event files) gets each written record, decoded as a
reader would see it, on the same thread (:mod:`cockpit.logs._appender`).

Only opening a run raises; once it is open, an I/O fault (full disk, read-only or
vanished directory) becomes one notice and the counts in ``meta.json``, never an
exception in the training loop. The status in ``meta.json``: ``running``, then
``finished`` (every record reached ``steps.jsonl``), ``incomplete`` (the training
finished but records were lost to a fault, counted under ``lost``), ``crashed`` (an
exception ended it) or ``terminated`` (SIGTERM, see :mod:`cockpit._open_runs`); a
killed process leaves ``running``.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import queue
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

from cockpit.exceptions import LogDirError
from cockpit.logs._appender import STOP, StepsAppender, dir_error, open_steps
from cockpit.logs._format import FORMAT_VERSION, to_python
from cockpit.logs._notices import Notices
from cockpit.logs._segments import SegmentWriter
from cockpit.logs.schema import META_FILE, STEPS_FILE

__all__ = ["Materializable", "RecordMirror", "RunWriter"]


class Materializable(Protocol):
    """A record whose conversion to Python is deferred to the writer thread."""

    def materialize(self) -> dict[str, Any] | list[dict[str, Any]]:
        """Return the record(s) as plain Python (see ``encode_record``)."""


class RecordMirror(Protocol):
    """Another destination of every record, fed by the writer thread."""

    def write(self, record: dict[str, Any]) -> None:
        """Take one record as ``LogReader.read_new`` would return it."""

    def flush(self) -> None:
        """Make what was taken so far visible to readers."""

    def close(self) -> None:
        """Write what is pending; called once, by the writer thread, on close."""


class RunWriter:
    """Append log records to one run directory from a background thread.

    Args:
        run_dir: The run directory; created with its parents, must not hold a run.
        meta: Run description written to ``meta.json``, plus ``format_version``,
            ``status="running"`` and ``start_time`` (unless given).
        fsync_interval: Seconds between fsyncs of ``steps.jsonl`` while writing.
        mirror: Also gets every written record (never error records); if it
            raises, a notice says so and mirroring stops, the log goes on.
        on_alert: Called on the writer thread with each new diagnosis alert
            (``cockpit.diagnosis.Alert``) as the written records raise them; what
            it raises becomes a notice, never an exception.
        columns: Keep the columnar cache (``RUN/.columns``) as the log grows, so
            that readers open the run without decoding its JSON
            (:mod:`cockpit.logs._segments`; needs ``pyarrow``).

    Raises:
        LogDirError: If the directory cannot be created or written, or holds a run.

    """

    def __init__(
        self,
        run_dir: str | os.PathLike[str],
        meta: dict[str, Any],
        fsync_interval: float = 2.0,
        mirror: RecordMirror | None = None,
        on_alert: Callable[[Any], object] | None = None,
        columns: bool = True,
    ) -> None:
        self._run_dir = Path(run_dir)
        self._notices = Notices()
        self._meta_failed = False
        self._meta_lock = threading.Lock()
        self._submit_lock = threading.Lock()
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._closed = False
        self._meta = {
            "start_time": time.time(),
            **meta,
            "format_version": FORMAT_VERSION,
            "status": "running",
        }
        fd = open_steps(self._run_dir)
        try:
            self._write_meta()
        except LogDirError:
            os.close(fd)
            (self._run_dir / STEPS_FILE).unlink(missing_ok=True)
            raise
        watch = None if on_alert is None else self._alert_watch(on_alert)
        self._appender = StepsAppender(
            self._run_dir,
            fd,
            self._queue,
            fsync_interval,
            mirror,
            self._notices,
            watch,
            SegmentWriter(self._run_dir, active=columns),
        )
        self._thread = threading.Thread(
            target=self._appender.run,
            name=f"cockpit-writer:{self._run_dir.name}",
            daemon=True,
        )
        self._thread.start()

    @property
    def run_dir(self) -> Path:
        """The run directory."""
        return self._run_dir

    @property
    def meta(self) -> dict[str, Any]:
        """A copy of the run description as last written to ``meta.json``."""
        with self._meta_lock:
            return copy.deepcopy(self._meta)

    def submit(self, record: dict[str, Any] | Materializable) -> None:
        """Queue a record, or an object with ``materialize()``, for writing.

        Costs one queue put: no I/O and no conversion on the calling thread.

        Raises:
            RuntimeError: If the writer is closed.

        """
        with self._submit_lock:
            if self._closed:
                raise RuntimeError(
                    f"The writer is closed: cannot log to {self._run_dir} after "
                    "close(). Open a new run to log more."
                )
            self._queue.put(record)

    def drain_notices(self) -> list[str]:
        """Return and clear the notices gathered by the writer thread."""
        return self._notices.drain()

    @property
    def cpu_seconds(self) -> float:
        """CPU seconds the writer thread has spent so far (one float read, no lock)."""
        return self._appender.cpu_seconds

    def flush(self, timeout: float | None = None) -> bool:
        """Block until every record submitted so far is written (and mirrored).

        Args:
            timeout: Seconds to wait at most; ``None`` waits as long as needed.

        Returns:
            ``True`` if everything was written, ``False`` if ``timeout`` ran out.

        """
        done = threading.Event()
        with self._submit_lock:
            closed = self._closed
            if not closed:
                self._queue.put(done)
        if closed:
            self._thread.join(timeout)
            return not self._thread.is_alive()
        return done.wait(timeout)

    def update_meta(self, **fields: Any) -> None:
        """Merge ``fields`` into ``meta.json``, replacing the file atomically.

        Never raises: if ``meta.json`` cannot be written, the first such failure
        becomes a notice and the file keeps what it last held.
        """
        with self._meta_lock:
            self._meta.update(fields)
            try:
                self._write_meta_locked()
            except LogDirError as err:
                if not self._meta_failed:
                    self._meta_failed = True
                    self._notice(
                        f"could not write {self._run_dir / META_FILE}: "
                        f"{err.__cause__}; it keeps what it last held"
                    )

    def close(self, status: str = "finished") -> None:
        """Write everything, fsync, stop the thread and record ``status``.

        Idempotent: later calls do nothing. Never raises for I/O faults. The counts
        of non-finite values and repeated notices go to ``meta.json``
        (``nonfinite_counts``, ``repeated_notices``) with a summary notice; records
        lost to a fault go under ``lost``, and turn ``"finished"`` into
        ``"incomplete"``.

        Args:
            status: Final status in ``meta.json``, e.g. ``"finished"`` or
                ``"crashed"``.

        """
        with self._submit_lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(STOP)
        self._thread.join()
        for line in self._notices.summary():
            self._notice(line)
        fields = {"status": status, "end_time": time.time(), **self._notices.meta()}
        if self._appender.lost is not None:
            fields["lost"] = self._appender.lost
            if status == "finished":
                fields["status"] = "incomplete"
        if self._appender.deleted:  # said already; nowhere to write meta.json
            with self._meta_lock:
                self._meta.update(fields)
            return
        self.update_meta(**fields)

    def terminate(self, status: str = "terminated", timeout: float = 2.0) -> None:
        """From a signal handler: write what is queued and record ``status``.

        Waits at most ``timeout`` seconds for the queue and for ``meta.json``; takes
        no lock the interrupted training thread may hold. The process is to end
        right after: the writer is not closed.
        """
        if self._closed:
            return
        done = threading.Event()
        self._queue.put(done)  # SimpleQueue.put is safe in a signal handler
        done.wait(timeout)
        locked = self._meta_lock.acquire(timeout=timeout)
        try:
            self._meta.update(status=status, end_time=time.time())
            with contextlib.suppress(LogDirError):
                self._write_meta_locked()
        finally:
            if locked:
                self._meta_lock.release()

    def __enter__(self) -> RunWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close("finished" if exc_type is None else "crashed")

    def _write_meta(self) -> None:
        with self._meta_lock:
            self._write_meta_locked()

    def _write_meta_locked(self) -> None:
        found: list[str] = []
        meta = to_python(self._meta, "", found, fallback=str)
        if found:
            self._notice(f"meta: non-finite values written as null: {', '.join(found)}")
        text = json.dumps(meta, indent=2, allow_nan=False)
        tmp = None
        try:
            fd, tmp = tempfile.mkstemp(
                prefix=".meta-", suffix=".tmp", dir=self._run_dir
            )
            with os.fdopen(fd, "w", encoding="utf-8") as file:
                file.write(text + "\n")
                file.flush()
                os.fsync(file.fileno())
            os.replace(tmp, self._run_dir / META_FILE)
        except OSError as err:
            if tmp is not None:
                Path(tmp).unlink(missing_ok=True)
            raise dir_error(self._run_dir, err) from err

    def _alert_watch(
        self, on_alert: Callable[[Any], object]
    ) -> Callable[[dict[str, Any]], None]:
        """A function that feeds each written record to a diagnoser (writer thread)."""
        # Imported here: cockpit.diagnosis reads the log format of this package.
        from cockpit.diagnosis import Diagnoser

        diagnoser = Diagnoser(self.meta, run=self._run_dir.name)

        def watch(record: dict[str, Any]) -> None:
            try:
                alerts = diagnoser.feed([record])
            except Exception as err:
                self._notice(
                    f"the diagnosis failed on step {record.get('step')}: {err}"
                )
                return
            for alert in alerts:
                try:
                    on_alert(alert)
                except Exception as err:
                    self._notice(
                        f"on_alert raised {type(err).__name__}: {err} (for the alert "
                        f"{alert.rule} at {alert.where()}); training goes on"
                    )

        return watch

    def _notice(self, text: str) -> None:
        self._notices.add(text)
