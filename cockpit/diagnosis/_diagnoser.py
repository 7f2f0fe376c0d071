"""The incremental rules engine: records in, alerts out."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from cockpit.diagnosis._alert import Alert
from cockpit.diagnosis._history import History
from cockpit.diagnosis._rule import Finding, New, Rule
from cockpit.diagnosis._rules_gradients import (
    DeadLayer,
    ExplodingGradients,
    UnnormalizedInputs,
    VanishingGradients,
)
from cockpit.diagnosis._rules_loss import LossAtChance, NonFinite, Plateau
from cockpit.diagnosis._rules_noise import EarlyStopping, SmallBatch, TrackerOverhead
from cockpit.diagnosis._rules_step_size import (
    AlphaOvershoot,
    AlphaSmall,
    EdgeOfStability,
)
from cockpit.diagnosis.thresholds import resolve
from cockpit.logs.schema import STEP

__all__ = ["RULES", "Diagnoser", "diagnose"]

RULES: tuple[type[Rule], ...] = (
    NonFinite,
    ExplodingGradients,
    VanishingGradients,
    DeadLayer,
    AlphaOvershoot,
    AlphaSmall,
    EdgeOfStability,
    SmallBatch,
    Plateau,
    EarlyStopping,
    TrackerOverhead,
    UnnormalizedInputs,
    LossAtChance,
)
"""Every rule, in the order their alerts are listed for one step."""


class Diagnoser:
    """Check a run's records as they come; each record is read once.

    Args:
        meta: The run's ``meta.json`` (optimizer, parameters, loss type); may be
            set later through :attr:`meta` while the run is read.
        thresholds: Overrides of :data:`cockpit.diagnosis.thresholds.THRESHOLDS`.
        run: The run's name, stored in each alert.

    Raises:
        ConfigurationError: If ``thresholds`` names no threshold.

    """

    def __init__(
        self,
        meta: Mapping[str, Any] | None = None,
        thresholds: Mapping[str, float] | None = None,
        run: str | None = None,
    ) -> None:
        self._t = resolve(thresholds)
        windows = [int(v) for k, v in self._t.items() if k.endswith("_window")]
        longest = max(windows)
        self._history = History(dict(meta or {}), keep=longest, baseline=longest)
        self._rules = [rule() for rule in RULES]
        self._alerts: dict[tuple[str, str], Alert] = {}
        self._checked: dict[str, int] = {}
        self.run = run

    @property
    def meta(self) -> dict[str, Any]:
        """The run's ``meta.json`` as the rules read it."""
        return self._history.meta

    @meta.setter
    def meta(self, meta: Mapping[str, Any]) -> None:
        self._history.meta = dict(meta)

    @property
    def alerts(self) -> list[Alert]:
        """Every alert so far, by first step (each with its newest last step).

        An alert is ``ongoing`` while its rule found the condition at the newest
        record it checked; lasting rules' alerts always are.
        """
        lasting = {rule.name for rule in self._rules if rule.lasting}
        for alert in self._alerts.values():
            alert.ongoing = alert.rule in lasting or (
                alert.last_step >= self._checked.get(alert.rule, alert.last_step)
            )
        return sorted(self._alerts.values(), key=lambda a: (a.first_step, a.rule))

    def feed(self, records: Iterable[dict[str, Any]]) -> list[Alert]:
        """Check ``records`` (in log order); return the alerts they raised first.

        Alerts raised earlier and still holding are updated in place (their last
        step, layers and evidence), not returned again.
        """
        raised = []
        for record in records:
            quantities, nonfinite = self._history.add(record)
            if not quantities and not nonfinite:
                continue
            new = New(record[STEP], frozenset(quantities), tuple(nonfinite))
            for rule in self._rules:
                if rule.watches and not quantities.intersection(rule.watches):
                    continue
                self._checked[rule.name] = new.step
                for finding in rule.check(self._history, new, self._t):
                    alert = self._take(rule, finding)
                    if alert is not None:
                        raised.append(alert)
        return raised

    def _take(self, rule: Rule, finding: Finding) -> Alert | None:
        """Open an alert for ``finding``, or extend the one its key already has."""
        key = (rule.name, finding.key)
        alert = self._alerts.get(key)
        if alert is not None:
            alert.last_step = max(alert.last_step, finding.step)
            alert.layers += tuple(x for x in finding.layers if x not in alert.layers)
            alert.evidence = dict(finding.evidence)
            return None
        alert = self._alerts[key] = Alert(
            rule=rule.name,
            severity=finding.severity or rule.severity,
            first_step=finding.first_step,
            last_step=finding.step,
            instrument=rule.instrument,
            explanation=finding.explanation,
            suggestion=finding.suggestion,
            layers=finding.layers,
            evidence=dict(finding.evidence),
            run=self.run,
        )
        return alert


def diagnose(
    run: str | os.PathLike[str] | Iterable[dict[str, Any]],
    meta: Mapping[str, Any] | None = None,
    thresholds: Mapping[str, float] | None = None,
) -> list[Alert]:
    """Every alert of a run: a run directory, or its records (then pass ``meta``).

    Args:
        run: A run directory (its ``meta.json`` is read), or decoded records as
            ``LogReader.read_new`` returns them.
        meta: The run's ``meta.json`` when ``run`` is records.
        thresholds: Overrides of the default thresholds.

    Returns:
        The alerts, by first step.

    Raises:
        LogFormatError: If ``run`` is a path but not a run directory.

    """
    if isinstance(run, (str, os.PathLike)):
        from cockpit.logs import LogReader

        reader = LogReader(run)
        diagnoser = Diagnoser(reader.meta(), thresholds, run=Path(run).name)
        for chunk in reader.chunks(size=1000):
            diagnoser.feed(chunk)
        return diagnoser.alerts
    diagnoser = Diagnoser(meta, thresholds)
    diagnoser.feed(run)
    return diagnoser.alerts
