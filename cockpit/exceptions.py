"""Exceptions and warnings that cockpit raises.

Catch :class:`CockpitError` for any cockpit failure; each class also derives from the
built-in exception a caller would expect (``OSError``, ``ValueError``), so existing
``except`` clauses keep working. The tree::

    Exception
    └── CockpitError
        ├── ConfigurationError (also ValueError) bad Cockpit(...) argument: preset,
        │                                        quantity, schedule, loss, parameters
        ├── UnsupportedModelError (also ValueError) a layer no engine can give the
        │                                        requested per-sample statistics for
        ├── UsageError         (also RuntimeError) track() misused: nested, after
        │                                        close(), no loss or backward inside
        ├── LogDirError        (also OSError)    run directory cannot be created/written
        └── LogFormatError     (also ValueError) run directory or log cannot be read

    UserWarning
    └── CockpitWarning
        ├── CorruptLogWarning  a corrupt log line was skipped
        ├── NonFiniteWarning   a tracked value was NaN or infinite (logged as null)
        └── AbsentQuantityWarning  a requested quantity is undefined for this run
"""

from __future__ import annotations

__all__ = [
    "AbsentQuantityWarning",
    "CockpitError",
    "CockpitWarning",
    "ConfigurationError",
    "CorruptLogWarning",
    "LogDirError",
    "LogFormatError",
    "NonFiniteWarning",
    "UnsupportedModelError",
    "UsageError",
]


class CockpitError(Exception):
    """Base class of all cockpit exceptions."""


class ConfigurationError(CockpitError, ValueError):
    """An argument to :class:`~cockpit.Cockpit` cannot work; the message says why."""


class UnsupportedModelError(CockpitError, ValueError):
    """A layer of the model cannot give the per-sample statistics a quantity needs."""


class UsageError(CockpitError, RuntimeError):
    """``track()`` was used in a way that cannot be tracked."""


class LogDirError(CockpitError, OSError):
    """A run directory cannot be created or written, or already holds a run."""


class LogFormatError(CockpitError, ValueError):
    """A run directory or log file is missing, damaged, or in a newer format."""


class CockpitWarning(UserWarning):
    """Base class of all cockpit warnings."""


class CorruptLogWarning(CockpitWarning):
    """A complete but unreadable line in ``steps.jsonl`` was skipped."""


class NonFiniteWarning(CockpitWarning):
    """A tracked value was NaN or infinite; it is in the log as ``null``."""


class AbsentQuantityWarning(CockpitWarning):
    """A requested quantity is not defined for this run (e.g. needs plain SGD)."""
