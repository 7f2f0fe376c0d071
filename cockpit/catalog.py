"""The quantity catalogue: every log key described once, importable without torch.

One :class:`Entry` per key the tracker logs, the quantities and the bookkeeping keys
(``lr``, ``batch_size``, ``step_time``, ``tracker_time``): the preset it enters and
its default schedule there, the constraint under which it is defined, the dashboard
group and instrument that show it, its title and its one-line reading. Derived from
it: the presets and the placeholders' hints (:mod:`cockpit.presets`), the tracker's
reasons for absent quantities, the dashboard's groups and instruments, and the report.

:data:`CATALOGUE` is in the dashboard's order: group by group, instrument by
instrument. Adding a quantity is one entry in its table,
:mod:`cockpit._catalogue_entries`; its instrument, if new, is one file
``instruments/<instrument>.py``.
"""

from __future__ import annotations

import importlib
from typing import TypeVar

from cockpit._catalogue_entries import CATALOGUE
from cockpit._catalogue_types import KRONECKER, PLAIN_SGD, Constraint, Entry

__all__ = [
    "CATALOGUE",
    "ENTRIES",
    "GROUPS",
    "KRONECKER",
    "PLAIN_SGD",
    "PRESET_NAMES",
    "Constraint",
    "Entry",
    "keys_with",
    "named_class",
]

PRESET_NAMES = ("economy", "business", "full")
"""The presets, each holding everything of the ones before it."""

GROUPS = {
    "step_size": "Step size",
    "gradients": "Gradients",
    "curvature": "Curvature",
    "performance": "Performance",
    "overhead": "Overhead",
}
"""Group id -> title, in the dashboard's order."""


def _by_key(entries: tuple[Entry, ...]) -> dict[str, Entry]:
    found: dict[str, Entry] = {}
    for entry in entries:
        if entry.key in found:
            raise ValueError(f"The catalogue describes '{entry.key}' twice.")
        found[entry.key] = entry
    return found


ENTRIES: dict[str, Entry] = _by_key(CATALOGUE)
"""Log key -> its entry."""


def keys_with(constraint: Constraint) -> tuple[str, ...]:
    """The log keys defined only where ``constraint`` holds."""
    return tuple(e.key for e in CATALOGUE if e.only == constraint)


_T = TypeVar("_T", bound=type)


def named_class(package: str, key: str, base: _T, attr: str, what: str) -> _T:
    """The one subclass of ``base`` in ``<package>.<key>`` whose ``attr`` is ``key``.

    How the registries find what the catalogue names: a quantity in
    ``cockpit/quantities/<key>.py`` (``name``), an instrument in
    ``instruments/<id>.py`` (``id``).

    Raises:
        ImportError: If the module defines no such class, or more than one.

    """
    module = importlib.import_module(f"{package}.{key}")
    found = [
        cls
        for cls in vars(module).values()
        if isinstance(cls, type)
        and issubclass(cls, base)
        and vars(cls).get(attr) == key
    ]
    if len(found) != 1:
        raise ImportError(
            f"The catalogue names the {what} {key!r}, so {module.__name__} must define "
            f"one {base.__name__} subclass with {attr} = {key!r}; found {len(found)}."
        )
    return found[0]
