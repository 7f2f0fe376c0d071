"""cockpit: see inside deep learning training.

``import cockpit`` stays light: the tracker (which imports torch and BackPACK) loads on
first use of :class:`Cockpit` or :func:`track`, so readers such as ``cockpit.load`` and
the dashboard work on machines without torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0.dev0"

__all__ = [
    "Cockpit",
    "LogReader",
    "Run",
    "every",
    "load",
    "log_spaced",
    "track",
]

_LAZY = {
    "Cockpit": "cockpit.tracker",
    "track": "cockpit._open_runs",
    "every": "cockpit.schedules",
    "log_spaced": "cockpit.schedules",
    "load": "cockpit.logs",
    "LogReader": "cockpit.logs",
    "Run": "cockpit.logs",
}

if TYPE_CHECKING:
    from cockpit._open_runs import track
    from cockpit.logs import LogReader, Run, load
    from cockpit.schedules import every, log_spaced
    from cockpit.tracker import Cockpit


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'cockpit' has no attribute {name!r}")
