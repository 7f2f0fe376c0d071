"""What one catalogue entry says: :class:`Entry`, and where a quantity is defined.

The public names live in :mod:`cockpit.catalog`; this module holds them so that the
table (:mod:`cockpit._catalogue_entries`) and the catalogue can both import them.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["KRONECKER", "PLAIN_SGD", "Constraint", "Entry"]


@dataclass(frozen=True)
class Constraint:
    """Where a quantity is defined; elsewhere the tracker leaves it out.

    Attributes:
        label: Short form for hints, e.g. ``"plain SGD only"``.
        reason: Why it is absent elsewhere: the start of the sentence written into
            ``meta.json``'s ``absent`` and the warning.

    """

    label: str
    reason: str


PLAIN_SGD = Constraint("plain SGD only", "it is defined for plain SGD only")
"""Needs the learning rate of plain SGD (no momentum, weight decay, ...)."""

KRONECKER = Constraint(
    "Kronecker-factored layers only",
    "Kronecker factors exist for Linear and convolution layers in a chain of modules "
    "BackPACK supports, and curvature for this model comes from torch.func (see the "
    "engine line of the 'cockpit' logger, or meta.json's engines)",
)
"""Needs BackPACK's Kronecker factors, so curvature from BackPACK."""


@dataclass(frozen=True)
class Entry:
    """One log key.

    Attributes:
        key: The log key, e.g. ``"hess_max_ev"``.
        group: Id of the dashboard group (a key of :data:`cockpit.catalog.GROUPS`).
        instrument: Id of the instrument showing it (``instruments/<id>.py``).
        title: Its name for people.
        reading: One line on what its values say.
        preset: The first preset holding it (the later ones hold it too); ``None``
            where it must be requested by name, or is bookkeeping.
        every: Its default schedule in the presets: every k-th step.
        only: Where it is defined, if not everywhere.
        bookkeeping: Logged by the tracker at every tracked step, not a quantity.

    """

    key: str
    group: str
    instrument: str
    title: str
    reading: str
    preset: str | None = None
    every: int = 1
    only: Constraint | None = None
    bookkeeping: bool = False
