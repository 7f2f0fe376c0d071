"""A record's ``notes`` left out where a reader can tell them (format 3.0).

The tracker notes why a value is not finite (``{path: reason}``, e.g. a gradient noise
scale whose signal is below zero), and the same reasons come back step after step
for the same paths: in format 2.0, 527 bytes a ``full`` step of the demo CNN
(``benchmarks/log_size.py``). Writer and reader both keep a :class:`NoteTable`, each path's last noted
reason in the run. A record's notes are *expected* when they are, for each path of its
:data:`~cockpit.logs.schema.NONFINITE` list that the table knows, that reason, and
nothing else; the writer leaves expected notes out, and writes any others whole
(an empty dict where the record has none but some were expected). The reader puts
the expected notes back into a record written without, so every record reads as it
was logged; a record never reads with empty notes.

The table spans the run: a reader that starts inside ``steps.jsonl`` takes the table
at that point from the columnar segment that ends there
(``cockpit.logs._columns``).
"""

from __future__ import annotations

from typing import Any

from cockpit.logs.schema import NONFINITE, NOTES

__all__ = ["NoteTable"]


class NoteTable:
    """Each path's last noted reason, as the records of a run went by.

    Args:
        known: Path -> reason to start from (a segment's end); empty by default.

    """

    def __init__(self, known: dict[str, str] | None = None) -> None:
        self.known: dict[str, str] = dict(known or {})

    def _expected(self, nonfinite: object) -> dict[str, str]:
        if not isinstance(nonfinite, list):
            return {}
        known = self.known
        return {
            path: known[path]
            for path in nonfinite
            if isinstance(path, str) and path in known
        }

    def _learn(self, notes: object) -> None:
        if isinstance(notes, dict):
            self.known.update(
                {
                    path: reason
                    for path, reason in notes.items()
                    if isinstance(reason, str)
                }
            )

    def shorten(self, line: dict[str, Any]) -> None:
        """Leave out, in place, the notes of a record about to be written.

        Args:
            line: The record as it is written (its ``NONFINITE`` list final).

        """
        notes = line.pop(NOTES, None) or {}
        if notes == self._expected(line.get(NONFINITE)):
            return
        line[NOTES] = notes
        self._learn(notes)

    def expand(self, record: dict[str, Any]) -> None:
        """Put back, in place, the notes a decoded record was written without."""
        if NOTES in record:
            notes = record[NOTES]
            self._learn(notes)
            if notes == {}:
                del record[NOTES]
            return
        expected = self._expected(record.get(NONFINITE))
        if expected:
            record[NOTES] = expected
