"""The open Cockpits of this process: :func:`track` on the newest, closing at exit.

``cockpit.track()`` works on the most recently created Cockpit (like ``wandb.log``).
Every open Cockpit is closed as ``finished`` at interpreter exit and as ``crashed``
when an exception ends the program, so its log says how the run ended. SIGTERM (a
batch scheduler's stop, ``kill``) marks every open run ``terminated`` after writing
what is queued (2 s at most), then ends the process as SIGTERM always did: the handler
is installed when a Cockpit is created in the main thread, and only if SIGTERM has its
default action, so a handler of the user's is never replaced. SIGKILL leaves
``running``. The
``cockpit`` logger's info lines (which engine handles which parameter) go to stderr
unless the user configured that logger.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import signal
import sys
import threading
import weakref
from typing import Any, Protocol

from cockpit.engines.choice import LOG
from cockpit.exceptions import UsageError

__all__ = ["register", "track", "unregister"]


class _Trackable(Protocol):
    writer: Any

    def track(self) -> contextlib.AbstractContextManager[None]: ...

    def close(self, status: str = ...) -> None: ...


_OPEN: weakref.WeakSet[_Trackable] = weakref.WeakSet()
_CURRENT: weakref.ReferenceType[_Trackable] | None = None


def register(cockpit: _Trackable) -> None:
    """Make ``cockpit`` the one :func:`track` uses, and close it at exit."""
    global _CURRENT
    _CURRENT = weakref.ref(cockpit)
    _OPEN.add(cockpit)
    if (
        threading.current_thread() is threading.main_thread()
        and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    ):
        signal.signal(signal.SIGTERM, _on_sigterm)


def unregister(cockpit: _Trackable) -> None:
    """``cockpit`` is closed: nothing to do for it at exit."""
    _OPEN.discard(cockpit)


def track(cockpit: _Trackable | None = None) -> contextlib.AbstractContextManager[None]:
    """``track()`` on ``cockpit`` or, by default, the most recently created Cockpit."""
    if cockpit is None:
        cockpit = _CURRENT() if _CURRENT is not None else None
        if cockpit is None:
            raise UsageError(
                "cockpit.track() found no Cockpit: create one first with "
                "cockpit.Cockpit(model, loss_fn, optimizer, logdir=...)."
            )
    return cockpit.track()


def _close_all(status: str) -> None:
    for cockpit in list(_OPEN):
        with contextlib.suppress(Exception):
            cockpit.close(status)


def _on_sigterm(signum: int, frame: Any) -> None:
    """Mark the open runs ``terminated``, then end the process as SIGTERM does."""
    for cockpit in list(_OPEN):
        with contextlib.suppress(Exception):
            cockpit.writer.terminate("terminated")
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


def _excepthook(exc_type, exc, tb, _previous=sys.excepthook) -> None:
    _close_all("crashed")
    _previous(exc_type, exc, tb)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time (redirections included)."""

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def _show_engine_lines() -> None:
    """Print the ``cockpit`` logger's info lines on stderr unless configured."""
    if not LOG.handlers:
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        LOG.addHandler(handler)
        LOG.setLevel(logging.INFO)
        LOG.propagate = False


_show_engine_lines()
sys.excepthook = _excepthook
atexit.register(_close_all, "finished")
