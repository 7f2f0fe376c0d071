"""What a rule found: one :class:`Alert`, plain data that survives a JSON round trip."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = [
    "SEVERITIES",
    "Alert",
    "at_least",
    "headline",
    "is_holding",
    "newest_first",
]

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
        ongoing: The condition still held at the newest record its rule checked;
            ``False`` once a later record was checked and the condition no longer
            held (the alert *ended*; it stays listed as history). Lasting rules
            (non-finite values) never end.

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
    ongoing: bool = True

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
        """``"step 30"`` or ``"steps 30-120"``, with ``", ended"`` once it ended."""
        if self.first_step == self.last_step:
            steps = f"step {self.first_step}"
        else:
            steps = f"steps {self.first_step}-{self.last_step}"
        return steps if self.ongoing else f"{steps}, ended"


def newest_first(alerts: list[Alert]) -> list[Alert]:
    """Ongoing alerts before ended ones, each group by newest last step."""
    return sorted(alerts, key=lambda a: (not a.ongoing, -a.last_step, -a.first_step))


def is_holding(alert: Alert) -> bool:
    """An ongoing warning or error: what makes a run unhealthy (info is a note)."""
    return alert.ongoing and alert.severity != "info"


def headline(alerts: list[Alert]) -> str:
    """A run's state in words: ongoing warnings and errors, notes, ended alerts.

    ``"healthy (no alerts)"``, ``"healthy (1 note, 2 ended)"`` or ``"2 alerts
    holding, 1 note, 1 ended"``. Info alerts are notes: they never make a run
    unhealthy.
    """
    if not alerts:
        return "healthy (no alerts)"
    holding = sum(is_holding(a) for a in alerts)
    notes = sum(a.ongoing and a.severity == "info" for a in alerts)
    ended = sum(not a.ongoing for a in alerts)
    parts = [f"{notes} note{'s' * (notes > 1)}"] * bool(notes)
    parts += [f"{ended} ended"] * bool(ended)
    if not holding:
        return f"healthy ({', '.join(parts)})"
    return ", ".join([f"{holding} alert{'s' * (holding > 1)} holding", *parts])
