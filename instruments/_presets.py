"""Which preset (or option) fills which quantity: the text of missing-data placeholders.

The presets come from :mod:`cockpit.presets`, plain data the tracker uses too (it
does not import torch).
"""

from __future__ import annotations

from cockpit.presets import BOOKKEEPING
from cockpit.presets import PRESETS as _TRACKER_PRESETS

__all__ = ["BOOKKEEPING", "KNOWN", "PRESETS", "how_to_fill"]


def _added() -> dict[str, tuple[str, ...]]:
    seen: set[str] = set()
    added = {}
    for preset, names in _TRACKER_PRESETS.items():
        added[preset] = tuple(n for n in names if n not in seen)
        seen.update(names)
    return added


PRESETS: dict[str, tuple[str, ...]] = _added()
"""Quantities each preset adds to the one before it."""

BY_NAME = ("early_stopping", "cabs")
"""Quantities no preset holds: requested by name, plain SGD only."""

KNOWN = frozenset(
    [name for names in PRESETS.values() for name in names] + [*BY_NAME, *BOOKKEEPING]
)
"""Every key the tracker logs; any other scalar is a metric the user logged."""


def _preset_of(quantity: str) -> str | None:
    for preset, names in PRESETS.items():
        if quantity in names:
            return preset
    return None


def how_to_fill(quantity: str) -> str:
    """One sentence saying how to get ``quantity`` into a run's log.

    Args:
        quantity: A log key, e.g. ``"hess_max_ev"``.

    Returns:
        E.g. ``"Track it with preset='full' or quantities=['hess_max_ev']."``.

    """
    preset = _preset_of(quantity)
    if preset is not None:
        return f"Track it with preset='{preset}' or quantities=['{quantity}']."
    if quantity in BY_NAME:
        return f"Request it with quantities=['{quantity}'] (plain SGD only)."
    if quantity in BOOKKEEPING:
        return "Logged at every tracked step; none tracked yet."
    return f"Log it yourself with ck.log({quantity}=...)."
