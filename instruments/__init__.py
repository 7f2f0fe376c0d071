"""One file per instrument: log data in, plotly figure out (``cockpit.instruments``).

Each instrument is a small class (``alpha.py`` defines :class:`AlphaGauge`) whose
:meth:`~Instrument.figure` takes the selected runs as :class:`RunData` and a
:class:`View` (layer, step range, scales) and returns a ``plotly`` figure, or a
placeholder naming the quantity and preset that would fill it; its
:meth:`~Instrument.draw_report` draws the same panel into the static report.
:data:`GROUPS` orders the instruments into the dashboard's sections and
:data:`REGISTRY` maps their ids to classes, both from the quantity catalogue
(:mod:`cockpit.catalog`): a new instrument is its file and its quantities' entries
there. Nothing here imports torch.

Example::

    import cockpit
    from cockpit.instruments import REGISTRY, RunData, View

    run = RunData.from_run(cockpit.load("runs/my-run"))
    REGISTRY["alpha"]().figure([run], View()).show()
"""

from __future__ import annotations

from cockpit import catalog
from cockpit.instruments._base import Instrument
from cockpit.instruments._data import Histogram, RunData, Series
from cockpit.instruments._figures import PLACEHOLDER_NAME
from cockpit.instruments._view import View

__all__ = [
    "GROUPS",
    "PLACEHOLDER_NAME",
    "REGISTRY",
    "Histogram",
    "Instrument",
    "RunData",
    "Series",
    "View",
    "get",
]


def _groups() -> dict[str, tuple[str, tuple[str, ...]]]:
    ids: dict[str, dict[str, None]] = {group: {} for group in catalog.GROUPS}
    for entry in catalog.CATALOGUE:
        ids[entry.group][entry.instrument] = None
    return {
        group: (title, tuple(ids[group])) for group, title in catalog.GROUPS.items()
    }


GROUPS: dict[str, tuple[str, tuple[str, ...]]] = _groups()
"""Group id -> (title, instrument ids), in the catalogue's (the dashboard's) order."""


def _load(instrument_id: str) -> type[Instrument]:
    """The instrument class that ``instruments/<instrument_id>.py`` defines."""
    return catalog.named_class(__name__, instrument_id, Instrument, "id", "instrument")


def _register(*classes: type[Instrument]) -> dict[str, type[Instrument]]:
    registry: dict[str, type[Instrument]] = {}
    for cls in classes:
        if cls.id in registry:
            raise ValueError(
                f"Instrument id {cls.id!r} is used by both {registry[cls.id].__name__} "
                f"and {cls.__name__}; give each instrument its own id."
            )
        registry[cls.id] = cls
    return registry


REGISTRY: dict[str, type[Instrument]] = _register(
    *(_load(i) for _, ids in GROUPS.values() for i in ids)
)
"""Instrument id -> class, in the dashboard's order."""


def get(instrument_id: str) -> Instrument:
    """A new instrument by id.

    Raises:
        KeyError: If no instrument has that id.

    """
    try:
        return REGISTRY[instrument_id]()
    except KeyError:
        known = ", ".join(REGISTRY)
        raise KeyError(
            f"Unknown instrument {instrument_id!r}. Choose one of: {known}."
        ) from None
