"""What a rule found: one :class:`Alert`, plain data that survives a JSON round trip."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["SEVERITIES", "Alert", "at_least"]

#: The severities, mildest first.
SEVERITIES = ("info", "warning", "error")


def at_least(severity: str, floor: str) -> bool:
    """Whether ``severity`` is ``floor`` or worse."""
    return SEVERITIES.index(severity) >= SEVERITIES.index(floor)


@dataclass
class Alert:
    """One finding of one rule in one run.

    Attributes:
        rule: The rule's name, e.g. ``"nonfinite"`` (see ``cockpit.diagnosis.RULES``).
        severity: ``"info"``, ``"warning"`` or ``"error"``.
        first_step: The first step at which the rule's condition held.
        last_step: The newest step at which it still held.
        instrument: The id of the dashboard panel that shows the evidence.
        explanation: What the numbers say, in plain language.
        suggestion: What to try.
        layers: The parameters concerned (qualified names), if the rule is per layer.
        evidence: The numbers the rule read, by name.
        run: The run's name, where known.

    """

    rule: str
    severity: str
    first_step: int
    last_step: int
    instrument: str
    explanation: str
    suggestion: str
    layers: tuple[str, ...] = ()
    evidence: dict[str, Any] = field(default_factory=dict)
    run: str | None = None

    @property
    def steps(self) -> tuple[int, int]:
        """``(first_step, last_step)``."""
        return self.first_step, self.last_step

    def to_dict(self) -> dict[str, Any]:
        """The alert as JSON-able data (``layers`` as a list)."""
        data = asdict(self)
        data["layers"] = list(self.layers)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Alert:
        """The alert that :meth:`to_dict` gave ``data`` for."""
        return cls(**{**data, "layers": tuple(data.get("layers", ()))})

    def where(self) -> str:
        """``"step 30"`` or ``"steps 30-120"``."""
        if self.first_step == self.last_step:
            return f"step {self.first_step}"
        return f"steps {self.first_step}-{self.last_step}"
