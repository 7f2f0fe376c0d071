"""Which runs a filter text matches: by name, and by the values in their ``config``.

The text is words separated by spaces; a run matches if it matches every word:

* ``key=value`` matches a run whose ``meta.json`` ``config`` has ``key`` with that
  value: numbers compare as numbers (``lr=0.1`` matches ``0.10`` and ``1e-1``),
  anything else as its text (``optimizer=adam``, ``nesterov=true``). A dotted key
  reads into nested objects (``sched.kind=cosine``);
* any other word is a part of the run's name (``seed-3``), upper or lower case alike.

``config`` is what ``cockpit.Cockpit(config={...})`` stored.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["RunFilter"]


@dataclass(frozen=True)
class RunFilter:
    """A parsed filter text.

    Attributes:
        names: Parts a run's name must contain, lower case.
        config: ``(dotted key, value text)`` pairs the run's config must hold.

    """

    names: tuple[str, ...] = ()
    config: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(cls, text: str | None) -> RunFilter:
        """The filter a text describes; ``None`` or blanks match every run."""
        names, config = [], []
        for word in (text or "").split():
            key, equals, value = word.partition("=")
            if equals and key:
                config.append((key, value))
            else:
                names.append(word.lower())
        return cls(tuple(names), tuple(config))

    def matches(self, name: str, meta: Mapping[str, Any]) -> bool:
        """Whether the run ``name`` with this ``meta.json`` matches every word."""
        lowered = name.lower()
        if not all(part in lowered for part in self.names):
            return False
        config = meta.get("config")
        config = config if isinstance(config, Mapping) else {}
        return all(_equal(_lookup(config, key), value) for key, value in self.config)


_MISSING = object()


def _lookup(config: Mapping[str, Any], key: str) -> Any:
    """``config[key]``, reading into nested objects along a dotted key."""
    if key in config:
        return config[key]
    value: Any = config
    for part in key.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return _MISSING
        value = value[part]
    return value


def _equal(found: Any, wanted: str) -> bool:
    if found is _MISSING:
        return False
    if isinstance(found, (int, float)) and not isinstance(found, bool):
        try:
            number = float(wanted)
        except ValueError:
            return False
        return math.isclose(float(found), number, rel_tol=1e-12, abs_tol=0.0)
    if isinstance(found, str):
        return found == wanted
    return json.dumps(found, separators=(",", ":")) == wanted
