"""The writer's notices for the user, each kind said once and then counted.

A model whose per-layer statistics are 0/0 at every step would otherwise print a
warning per step naming every layer. :class:`Notices` says the first non-finite values
of each quantity (the step, a few paths, ``and N more``), then only counts them; a
repeated record notice (``alpha: zero noise variance ...``) is said at its first step
and counted. The counts go to ``meta.json`` on close (:meth:`Notices.meta`), with a
one-line summary (:meth:`Notices.summary`). Every line stays under :data:`MAX_LINE`
characters.
"""

from __future__ import annotations

import re
import threading
from typing import Any

__all__ = ["MAX_LINE", "Notices", "name_some"]

#: The longest notice line; longer texts are cut, longer path lists end "and N more".
MAX_LINE = 200

#: Distinct repeated record notices counted by text; more are counted together.
_MAX_KINDS = 20

_STEP_PREFIX = re.compile(r"^step -?\d+: ")


def name_some(paths: list[str], room: int) -> str:
    """``a, b and 7 more``: as many of ``paths`` as fit into ``room`` characters."""
    named: list[str] = []
    used = 0
    for path in paths:
        if len(path) > room // 2:
            path = path[: room // 2 - 3] + "..."
        if named and used + len(path) + 2 > room - 16:
            break
        named.append(path)
        used += len(path) + 2
    rest = len(paths) - len(named)
    return ", ".join(named) + (f" and {rest} more" if rest else "")


def _cut(text: str) -> str:
    return text if len(text) <= MAX_LINE else text[: MAX_LINE - 3] + "..."


class Notices:
    """Thread-safe notices: the writer thread adds, the training thread drains."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: list[str] = []
        self._nonfinite: dict[str, dict[str, Any]] = {}
        self._silenced_values = 0
        self._silenced_steps = 0
        self._last_silenced_step: object = None
        self._repeats: dict[str, int] = {}

    def add(self, text: str) -> None:
        """A notice said every time (faults are said once by their reporter)."""
        with self._lock:
            self._pending.append(_cut(text))

    def once(self, text: str) -> None:
        """A record's notice: said at its first step, later only counted."""
        kind = _STEP_PREFIX.sub("", text)
        with self._lock:
            if kind not in self._repeats and len(self._repeats) < _MAX_KINDS:
                self._repeats[kind] = 0
                self._pending.append(_cut(text))
                return
            if kind not in self._repeats:
                kind = "other notices"
            self._repeats[kind] = self._repeats.get(kind, 0) + 1

    def nonfinite(self, step: object, paths: list[str]) -> None:
        """Non-finite ``paths`` of one record: new quantities said, the rest counted."""
        new: list[str] = []
        with self._lock:
            for path in paths:
                quantity = path.split(".", 1)[0]
                count = self._nonfinite.setdefault(
                    quantity,
                    {"values": 0, "steps": 0, "first_step": step, "last": None},
                )
                count["values"] += 1
                if count["last"] != step:
                    count["last"] = step
                    count["steps"] += 1
                if count["first_step"] == step:
                    new.append(path)
            silenced = len(paths) - len(new)
            if silenced:
                self._silenced_values += silenced
                if self._last_silenced_step != step:
                    self._silenced_steps += 1
                    self._last_silenced_step = step
            if new:
                head = f"step {step}: non-finite values logged as null: "
                self._pending.append(head + name_some(new, MAX_LINE - len(head)))

    def drain(self) -> list[str]:
        """Return and clear the notices not yet raised."""
        with self._lock:
            pending, self._pending = self._pending, []
        return pending

    def summary(self) -> list[str]:
        """Lines for the end of the run: what was counted instead of said."""
        lines = []
        if self._silenced_values:
            lines.append(
                f"{self._silenced_values} more non-finite values in "
                f"{self._silenced_steps} steps, see meta.json (nonfinite_counts)"
            )
        repeated = sum(self._repeats.values())
        if repeated:
            lines.append(
                f"{repeated} repeated notices not shown, see meta.json "
                "(repeated_notices)"
            )
        return lines

    def meta(self) -> dict[str, Any]:
        """The counts for ``meta.json``: ``nonfinite_counts``, ``repeated_notices``."""
        fields: dict[str, Any] = {}
        with self._lock:
            if self._nonfinite:
                fields["nonfinite_counts"] = {
                    quantity: {k: v for k, v in count.items() if k != "last"}
                    for quantity, count in self._nonfinite.items()
                }
            repeats = {kind: n for kind, n in self._repeats.items() if n}
            if repeats:
                fields["repeated_notices"] = repeats
        return fields
