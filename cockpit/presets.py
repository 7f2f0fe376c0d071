"""The presets, the bookkeeping keys and how to get a key logged, without torch.

All three are derived from the quantity catalogue (:mod:`cockpit.catalog`), which the
tracker (:mod:`cockpit.quantities`) and the dashboard (``cockpit.instruments``, which
must not import torch) read alike.
"""

from __future__ import annotations

from cockpit.catalog import CATALOGUE, ENTRIES, PRESET_NAMES

__all__ = ["BOOKKEEPING", "PRESETS", "how_to_fill"]


def _presets() -> dict[str, dict[str, int]]:
    presets: dict[str, dict[str, int]] = {}
    held: dict[str, int] = {}
    for name in PRESET_NAMES:
        held = {**held, **{e.key: e.every for e in CATALOGUE if e.preset == name}}
        presets[name] = held
    return presets


PRESETS: dict[str, dict[str, int]] = _presets()
"""Per preset, its log keys and each one's default schedule: every k-th step.

Each preset holds the ones before it. ``full`` runs its costly curvature quantities
every 10th step; ``quantities=dict.fromkeys(PRESETS["full"], 1)`` runs everything at
every step.
"""

BOOKKEEPING = tuple(e.key for e in CATALOGUE if e.bookkeeping)
"""Keys the tracker logs at every tracked step besides the quantities."""


def how_to_fill(key: str) -> str:
    """One sentence saying how to get ``key`` into a run's log.

    Args:
        key: A log key, e.g. ``"hess_max_ev"``; any other is a metric the user logs.

    Returns:
        E.g. ``"Track it with preset='full' or quantities=['hess_max_ev']."``.

    """
    entry = ENTRIES.get(key)
    if entry is None:
        return f"Log it yourself with ck.log({key}=...)."
    if entry.bookkeeping:
        return "Logged at every tracked step; none tracked yet."
    if entry.preset is not None:
        return f"Track it with preset='{entry.preset}' or quantities=['{key}']."
    where = f" ({entry.only.label})" if entry.only else ""
    return f"Request it with quantities=['{key}']{where}."
