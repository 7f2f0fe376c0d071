"""Background writer of one run directory.

The training thread only enqueues; a daemon thread materializes each record (copying
device data to the host is the record's job, the writer never imports torch), encodes
it, appends it to ``steps.jsonl`` and flushes. It fsyncs at most every
``fsync_interval`` seconds while there is unsynced data, and on close, so a killed
process loses at most the last seconds and never corrupts what was written. A
``mirror`` (e.g. TensorBoard event files) gets each written record, decoded as a
reader would see it, on the same thread.
"""

from __future__ import annotations

import copy
import json
import numbers
import os
import queue
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Protocol

from cockpit.exceptions import LogDirError
from cockpit.logs._format import FORMAT_VERSION, decode_line, encode_record, to_python
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

__all__ = ["Materializable", "RecordMirror", "RunWriter"]

_STOP = object()


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


def _dir_error(run_dir: Path, err: OSError) -> LogDirError:
    return LogDirError(
        f"Cannot write the run directory {run_dir}: {err}. Choose a writable log "
        "directory (--logdir on the command line, logdir= in Python)."
    )


def _open_steps(run_dir: Path) -> IO[str]:
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
        raise _dir_error(run_dir, err) from err
    except OSError as err:
        raise _dir_error(run_dir, err) from err
    return os.fdopen(fd, "a", buffering=1, encoding="utf-8")


class RunWriter:
    """Append log records to one run directory from a background thread.

    Args:
        run_dir: The run directory; created with its parents, must not hold a run.
        meta: Run description written to ``meta.json``, plus ``format_version``,
            ``status="running"`` and ``start_time`` (unless given).
        fsync_interval: Seconds between fsyncs of ``steps.jsonl`` while writing.
        mirror: Also gets every written record (never error records); if it
            raises, a notice says so and mirroring stops, the log goes on.

    Raises:
        LogDirError: If the directory cannot be created or written, or holds a run.

    """

    def __init__(
        self,
        run_dir: str | os.PathLike[str],
        meta: dict[str, Any],
        fsync_interval: float = 2.0,
        mirror: RecordMirror | None = None,
    ) -> None:
        self._run_dir = Path(run_dir)
        self._fsync_interval = fsync_interval
        self._mirror = mirror
        self._notices: list[str] = []
        self._notices_lock = threading.Lock()
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
        self._file = _open_steps(self._run_dir)
        try:
            self._write_meta()
        except LogDirError:
            self._file.close()
            (self._run_dir / STEPS_FILE).unlink(missing_ok=True)
            raise
        self._thread = threading.Thread(
            target=self._run, name=f"cockpit-writer:{self._run_dir.name}", daemon=True
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
        with self._notices_lock:
            notices, self._notices = self._notices, []
        return notices

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

        Raises:
            LogDirError: If ``meta.json`` cannot be written.

        """
        with self._meta_lock:
            self._meta.update(fields)
            self._write_meta_locked()

    def close(self, status: str = "finished") -> None:
        """Write everything, fsync, stop the thread and record ``status``.

        Idempotent: later calls do nothing.

        Args:
            status: Final status in ``meta.json``, e.g. ``"finished"`` or
                ``"crashed"``.

        """
        with self._submit_lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(_STOP)
        self._thread.join()
        self.update_meta(status=status, end_time=time.time())

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
            raise _dir_error(self._run_dir, err) from err

    def _notice(self, text: str) -> None:
        with self._notices_lock:
            self._notices.append(text)

    def _run(self) -> None:
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
            if item is _STOP:
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
        if self._mirror is not None:
            self._to_mirror("write", decode_line(line))

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
