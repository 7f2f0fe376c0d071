"""The contract of a rule: the history of a run in, findings out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from cockpit.diagnosis._history import History

__all__ = ["Finding", "New", "Rule"]


@dataclass(frozen=True)
class New:
    """What the newest record brought.

    Attributes:
        step: Its step.
        quantities: The log keys (dotted, e.g. ``loss.variance``) it held.
        nonfinite: The paths of its values that were not finite.

    """

    step: int
    quantities: frozenset[str]
    nonfinite: tuple[str, ...] = ()


@dataclass(frozen=True)
class Finding:
    """A rule's condition holds at ``step``: one alert's worth of facts.

    Findings of one rule with the same ``key`` extend one alert: its last step moves
    on, its layers grow and its evidence is the newest.

    Attributes:
        step: The step it holds at.
        first_step: Where the evidence starts (the window's first step).
        explanation: What the numbers say.
        suggestion: What to try.
        layers: The parameters concerned.
        evidence: The numbers read.
        key: Tells apart the alerts of one rule (``"approaching"``, ``"above"``).
        severity: Overrides the rule's severity.

    """

    step: int
    first_step: int
    explanation: str
    suggestion: str
    layers: tuple[str, ...] = ()
    evidence: dict[str, Any] = field(default_factory=dict)
    key: str = ""
    severity: str | None = None


class Rule:
    """One documented check on a run's history.

    Attributes:
        name: The alert's ``rule``; unique.
        severity: The alerts' severity unless a finding says otherwise.
        instrument: The dashboard panel the alerts link to.
        watches: Log keys whose arrival triggers :meth:`check`; ``()`` checks every
            record.
        lasting: Its alerts never end: once the condition held, the run stays
            affected (a NaN parameter stays NaN). Other alerts end when the rule
            checks a newer record and no longer finds the condition.

    """

    name: ClassVar[str]
    severity: ClassVar[str] = "warning"
    instrument: ClassVar[str]
    watches: ClassVar[tuple[str, ...]] = ()
    lasting: ClassVar[bool] = False

    def check(self, history: History, new: New, t: dict[str, float]) -> list[Finding]:
        """The findings after ``new`` was added to ``history``.

        Args:
            history: The run so far, ``new`` included.
            new: What the newest record brought.
            t: The thresholds' values (:mod:`cockpit.diagnosis.thresholds`).

        """
        raise NotImplementedError


def window(t: dict[str, float], name: str) -> int:
    """A window threshold as a count of records (at least 1)."""
    return max(int(t[name]), 1)
