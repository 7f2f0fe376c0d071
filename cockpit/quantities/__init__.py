"""The quantities and their registry, derived from the quantity catalogue.

Each quantity lives in its own module named like its log key
(``cockpit/quantities/<key>.py``), which defines one :class:`Quantity` subclass with
that ``name``. :data:`REGISTRY` maps every quantity key of the catalogue
(:mod:`cockpit.catalog`) to that class; :data:`PRESETS` (from :mod:`cockpit.presets`)
lists the keys each preset turns on, with their default schedules.
"""

from __future__ import annotations

from cockpit.catalog import CATALOGUE, named_class
from cockpit.presets import PRESETS
from cockpit.quantities._base import Quantity

__all__ = ["PRESETS", "REGISTRY", "Quantity"]


def _load(key: str) -> type[Quantity]:
    """The quantity class that ``cockpit/quantities/<key>.py`` defines."""
    return named_class(__name__, key, Quantity, "name", "quantity")


REGISTRY: dict[str, type[Quantity]] = {
    entry.key: _load(entry.key) for entry in CATALOGUE if not entry.bookkeeping
}
"""Log key -> quantity class, in the catalogue's order."""

_CLASSES = {cls.__name__: cls for cls in REGISTRY.values()}


def __getattr__(name: str) -> type[Quantity]:
    """The quantity classes by class name: ``cockpit.quantities.HessTrace``."""
    try:
        return _CLASSES[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None


def __dir__() -> list[str]:
    return sorted([*__all__, *_CLASSES])
