"""The server's view of LOGDIR: one incremental reader and accumulated data per run.

The dashboard never talks to a training process; it reads the run directories under
LOGDIR, parsing only the bytes appended since its last poll. A run whose files cannot
be read keeps its error message (shown next to it) and does not stop the other runs.
Only directories under LOGDIR can be opened: a run name is a relative path without
``..`` that resolves inside LOGDIR, and a run's files that are symbolic links leading
outside LOGDIR are refused. A poll reads at most :data:`POLL_BYTES` of each run, so
opening a long run never holds up the others: it fills in over several polls.
"""

from __future__ import annotations

import contextlib
import gc
import os
import threading
import time
import warnings
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from cockpit.diagnosis import Diagnoser
from cockpit.exceptions import CockpitError
from cockpit.instruments import RunData
from cockpit.logs import LogReader
from cockpit.logs._columns import read_segments, segment_columns, write_segment
from cockpit.logs.schema import ERROR, META_FILE, STEP

__all__ = ["RunNameError", "RunState", "RunStore"]

_MAX_DEPTH = 3
#: Bytes of ``steps.jsonl`` one poll reads per run, at most (plus one line): about
#: a second's work, so a long or hostile run cannot stall the other runs' panels.
POLL_BYTES = 64 * 2**20
#: Bytes of ``steps.jsonl`` one poll takes from the columnar cache, at most: mapping
#: them costs about a fiftieth of decoding the JSON.
SEGMENT_BYTES = 16 * POLL_BYTES
#: Bytes of ``steps.jsonl`` the background diagnosis of cached records decodes at a
#: time: its records are all in memory at once (about 20 MB per 8 MiB).
DIAGNOSIS_BYTES = 2 * 2**20
#: Seconds the background diagnosis waits, between two of its parts, for the panels'
#: requests to finish (:meth:`RunStore.serving`): it shares one interpreter with
#: them, and a build it ran beside took ten times as long (3.5 s against 0.35 s for
#: a 100,000-step run). A steady stream of requests delays it by this much per part.
DIAGNOSIS_YIELD_S = 2.0
#: Seconds without a request before the background diagnosis goes on: a page's
#: panels come as several requests in a row, and the gaps between them are short.
QUIET_S = 0.5


class RunNameError(CockpitError, ValueError):
    """A run name that would open something outside LOGDIR, or no run at all."""


@dataclass
class RunState:
    """One run as the server knows it.

    Attributes:
        name: Path relative to LOGDIR, with ``/`` separators.
        reader: Reads the run incrementally.
        data: Everything read so far.
        error: Why the run cannot be read right now (``None`` if it can).
        notices: Problems with single lines (corrupt lines, records the writer could
            not log); the run still shows.
        status: ``status`` from ``meta.json`` (``running``, ``finished``, ...).
        diagnoser: Checks each record once, as it is read; its alerts are
            ``data.alerts``.
        lock: Held while the run is read or drawn (the store's).
        quiet: Waits (at most its argument, in seconds) until no panel request has
            been served for :data:`QUIET_S` (the store's :meth:`RunStore.quiet`);
            the background diagnosis calls it between its parts.
        opened: Whether ``steps.jsonl`` has been read (runs are read once shown).
        diagnosed: Bytes of ``steps.jsonl`` whose records the diagnoser has seen;
            behind :attr:`reader`'s offset while it catches up with records the
            columnar cache gave (:meth:`_diagnose_cached`).

    """

    name: str
    reader: LogReader
    data: RunData
    error: str | None = None
    notices: list[str] = field(default_factory=list)
    status: str = "unknown"
    diagnoser: Diagnoser = field(default_factory=Diagnoser)
    lock: Any = field(default_factory=threading.RLock, repr=False)
    quiet: Callable[[float], None] = field(default=lambda _: None, repr=False)
    diagnosed: int = 0
    opened: bool = False
    _catching_up: threading.Thread | None = field(default=None, repr=False)

    def poll(self, steps: bool = True) -> bool:
        """Read what is new (up to :data:`POLL_BYTES`); whether anything changed.

        Args:
            steps: Read ``steps.jsonl`` too; ``False`` reads ``meta.json`` alone
                (a run listed but not shown: its name, status and config).

        """
        before = self._seen()
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                meta = self.reader.meta()
            self._note(str(w.message) for w in caught)
            self.data.meta = meta
            self.diagnoser.meta = meta
            self.diagnoser.run = self.name
            self.status = str(meta.get("status", "unknown"))
            if steps:
                with _collector_paused():
                    if not self._read_cached():
                        self._read_new()
                self.opened = True
            self.error = None
        # One damaged run must not take the dashboard down: show why, keep polling.
        except Exception as err:
            self.error = f"{type(err).__name__}: {err}"
        return before != self._seen()

    def _seen(self) -> tuple[Any, ...]:
        return (
            self.error,
            len(self.notices),
            self.data.version,
            self.status,
            self.diagnosed,
        )

    def _read_cached(self) -> bool:
        """Add what the columnar cache holds from the reader's offset on.

        One segment at a time, so that one is mapped while its numbers are sorted.
        The diagnoser gets those records later, from the JSON, on another thread.

        Returns:
            Whether it stopped at :data:`SEGMENT_BYTES` (more may be cached): the
            JSON after it waits for the next poll, whose segments start there
            (decoding it now would leave a reader's segment across the writer's).

        """
        start = self.reader.offset
        while self.reader.offset - start < SEGMENT_BYTES and (
            segments := read_segments(self.reader, 1)
        ):
            (segment,) = segments
            self._note(segment.warnings)
            self._note_errors(segment.errors)
            self.data.extend_columns(*segment_columns(segment))
        if self.reader.offset > start and self._catching_up is None:
            self._catching_up = threading.Thread(
                target=self._diagnose_cached, name=f"diagnose:{self.name}", daemon=True
            )
            self._catching_up.start()
        return self.reader.offset - start >= SEGMENT_BYTES

    def _read_new(self) -> None:
        """Add the records appended since the last poll, and note what was skipped.

        What one poll decodes of a long run goes to the columnar cache. The records
        are freed when this returns, before the collector resumes.
        """
        start, lines = self.reader.offset, self.reader.lines
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            records = self.reader.read_new(POLL_BYTES)
        warned = [str(w.message) for w in caught]
        self._note(warned)
        # A long read's numbers are sorted once, into the cache, and taken from it.
        segment = write_segment(self.reader, start, lines, records, warned)
        self._note_errors(records)
        if segment is not None:
            self.data.extend_columns(*segment_columns(segment))
        elif records:
            self.data.extend_records(records)
        if self.diagnosed == start:
            self._diagnose(records, self.reader.offset)

    def _diagnose(self, records: list[dict[str, Any]], offset: int) -> None:
        if records:
            self.diagnoser.feed(records)
            self.data.alerts = self.diagnoser.alerts
        self.diagnosed = offset

    def _diagnose_cached(self) -> None:
        """Feed the diagnoser the records it has not seen, in order.

        A background thread, until the diagnoser is as far as the reader: the
        panels show meanwhile, and the alerts follow.
        """
        behind = LogReader(self.reader.run_dir, root=self.reader.root, quiet=True)
        while True:
            self.quiet(DIAGNOSIS_YIELD_S)
            with self.lock:
                gap = self.reader.offset - self.diagnosed
                if gap <= 0:
                    self._catching_up = None
                    return
                behind.skip_to(self.diagnosed, 0)
            try:
                records = behind.read_new(min(gap, DIAGNOSIS_BYTES))
            except Exception:  # the run's poll shows what is wrong with its files
                with self.lock:
                    self._catching_up = None
                return
            # The diagnoser's work runs outside the lock, so the panels' requests
            # do not wait for it: until ``diagnosed`` moves on below, a poll leaves
            # the diagnoser to this thread (its reads start past ``diagnosed``).
            if records:
                self.diagnoser.feed(records)
            with self.lock:
                self.data.alerts = self.diagnoser.alerts
                self.diagnosed = behind.offset

    def _note(self, messages: Iterable[str]) -> None:
        """Add notices not shown yet (``meta.json``'s come again at every poll)."""
        for message in messages:
            if message not in self.notices:
                self.notices.append(message)

    def _note_errors(self, records: list[dict[str, Any]]) -> None:
        self.notices.extend(
            f"step {r[STEP]}: the writer could not log this record ({r[ERROR]})"
            for r in records
            if ERROR in r
        )


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while log records are read and sorted.

    Decoding a long run creates millions of dicts and lists that form no cycles and
    are freed as soon as their numbers are sorted into columns; the collector would
    walk all of them again and again while they pile up (a 100,000-step run: 15 s
    to read instead of 9).
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


class RunStore:
    """All runs under LOGDIR, read incrementally and safely.

    Args:
        logdir: The directory holding run directories (at most three levels deep).

    Attributes:
        logdir: The resolved LOGDIR.
        version: Increases whenever a poll finds something new.
        lock: Held while runs are read or drawn; the web server is threaded.

    """

    def __init__(self, logdir: str | os.PathLike[str]) -> None:
        self.logdir = Path(logdir).resolve()
        if not self.logdir.is_dir():
            raise FileNotFoundError(
                f"LOGDIR {self.logdir} is not a directory; pass the directory that "
                "holds your runs (the logdir= given to cockpit.Cockpit)."
            )
        self.version = 0
        self.lock = threading.RLock()
        self._idle = threading.Event()
        self._idle.set()
        self._serving = 0
        self._served = 0.0  # time.monotonic() at the end of the last request
        self._counting = threading.Lock()
        self._runs: dict[str, RunState] = {}

    @contextlib.contextmanager
    def serving(self) -> Iterator[None]:
        """Around a panel request: background work pauses between its parts.

        The diagnosis of records read from the columnar cache runs on a thread of
        this process (:meth:`RunState._diagnose_cached`); it waits, at most
        :data:`DIAGNOSIS_YIELD_S` per part, while any request is in here.
        """
        with self._counting:
            self._serving += 1
            self._idle.clear()
        try:
            yield
        finally:
            with self._counting:
                self._serving -= 1
                self._served = time.monotonic()
                if self._serving == 0:
                    self._idle.set()

    def quiet(self, limit: float) -> None:
        """Wait until no request has been served for :data:`QUIET_S` seconds.

        At most ``limit`` seconds: a steady stream of requests slows background work
        down, it does not stop it.
        """
        end = time.monotonic() + limit
        while (now := time.monotonic()) < end:
            if not self._idle.wait(end - now):
                return
            rest = self._served + QUIET_S - time.monotonic()
            if rest <= 0:
                return
            time.sleep(min(rest, max(0.0, end - time.monotonic())))

    def resolve(self, name: str) -> Path:
        """The directory of the run called ``name``.

        Raises:
            RunNameError: If ``name`` is absolute, contains ``..``, resolves outside
                LOGDIR, or is not a run directory.

        """
        parts = PurePosixPath(name).parts
        if not name or "\\" in name or name.startswith("/") or Path(name).is_absolute():
            raise RunNameError(
                f"Refused run name {name!r}: expected a path relative to LOGDIR."
            )
        if ".." in parts:
            raise RunNameError(
                f"Refused run name {name!r}: '..' may not appear; only runs under "
                "LOGDIR can be opened."
            )
        path = (self.logdir / name).resolve()
        if not path.is_relative_to(self.logdir):
            raise RunNameError(f"Refused run name {name!r}: it leads outside LOGDIR.")
        if not (path / META_FILE).is_file():
            raise RunNameError(
                f"No run {name!r} under {self.logdir} (no {META_FILE} there)."
            )
        return path

    def _discover(self) -> bool:
        found = False
        for meta in self._meta_files(self.logdir, _MAX_DEPTH):
            name = meta.parent.relative_to(self.logdir).as_posix()
            if name in self._runs or name == ".":
                continue
            try:
                path = self.resolve(name)
            except RunNameError:
                continue
            reader = LogReader(path, root=self.logdir)
            self._runs[name] = RunState(
                name, reader, RunData(name), lock=self.lock, quiet=self.quiet
            )
            found = True
        return found

    def _meta_files(self, folder: Path, depth: int) -> list[Path]:
        if depth == 0:
            return []
        metas = []
        try:
            children = sorted(p for p in folder.iterdir() if p.is_dir())
        except OSError:
            return []
        for child in children:
            if (child / META_FILE).is_file():
                metas.append(child / META_FILE)
            else:
                metas.extend(self._meta_files(child, depth - 1))
        return metas

    def poll(self, shown: Collection[str] | None = None) -> bool:
        """Find new runs and read what they appended; whether anything changed.

        Args:
            shown: The runs whose steps to read; the others' ``meta.json`` alone is
                read, so a hundred runs cost a hundred small files per poll until
                selected. ``None``: every run.

        """
        with self.lock:
            changed = self._discover()
            for state in self._runs.values():
                steps = shown is None or state.name in shown
                changed = state.poll(steps) or changed
            if changed:
                self.version += 1
            return changed

    def open(self, names: Iterable[str]) -> None:
        """Read the named runs that have not been read yet (just selected)."""
        with self.lock:
            changed = False
            for name in names:
                state = self._runs.get(name)
                if state is not None and not state.opened:
                    changed = state.poll() or changed
            if changed:
                self.version += 1

    def names(self) -> list[str]:
        """The known runs, newest first (by start time in ``meta.json``)."""
        with self.lock:
            states = list(self._runs.values())
        return [s.name for s in sorted(states, key=_start_time, reverse=True)]

    def state(self, name: str) -> RunState:
        """The state of a known run.

        Raises:
            RunNameError: If ``name`` is unsafe or not a known run.

        """
        self.resolve(name)
        with self.lock:
            if name not in self._runs:
                raise RunNameError(f"No run {name!r} under {self.logdir}.")
            return self._runs[name]

    def runs(self, names: list[str]) -> list[RunData]:
        """The data of the named runs that are known and safe, in the given order."""
        data = []
        for name in names:
            try:
                data.append(self.state(name).data)
            except RunNameError:
                continue
        return data


def _start_time(state: RunState) -> tuple[float, str]:
    """The sort key of :meth:`RunStore.names`; the reader checked ``start_time``."""
    start: Any = state.data.meta.get("start_time", 0.0)
    return (float(start) if isinstance(start, (int, float)) else 0.0, state.name)
