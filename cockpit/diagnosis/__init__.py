"""Diagnosis: rules over a run's log that say, in plain words, what goes wrong.

Torch-free, so it runs wherever the log is read: in the dashboard's process, the
report, ``cockpit check``, a laptop, and in the tracker's writer thread
(``Cockpit(on_alert=...)``). Each rule is a small class with a docstring that says
what it reads and why (``_rules_*.py``); every threshold and window is in one table,
:data:`~cockpit.diagnosis.thresholds.THRESHOLDS`.

Example::

    from cockpit.diagnosis import diagnose

    for alert in diagnose("runs/my-run"):
        print(alert.severity, alert.rule, alert.where(), alert.explanation)

A live run is checked incrementally: feed a :class:`Diagnoser` the records that
``LogReader.read_new()`` returns; it reads each record once and keeps a bounded
window of each series.

An alert *ends* when its rule checks a newer record and no longer finds the
condition (``Alert.ongoing`` is then ``False``): a plateau during a slow start that
training later left is history, not a current problem. Non-finite values never end.
The dashboard's summary, ``cockpit check --fail-on`` and the report's headline count
the ongoing warnings and errors; ongoing info alerts are notes, ended ones stay
listed as history.
"""

from __future__ import annotations

from cockpit.diagnosis._alert import (
    SEVERITIES,
    Alert,
    at_least,
    headline,
    is_holding,
    newest_first,
)
from cockpit.diagnosis._diagnoser import RULES, Diagnoser, diagnose
from cockpit.diagnosis._rule import Finding, New, Rule
from cockpit.diagnosis.thresholds import THRESHOLDS, Threshold

__all__ = [
    "RULES",
    "SEVERITIES",
    "THRESHOLDS",
    "Alert",
    "Diagnoser",
    "Finding",
    "New",
    "Rule",
    "Threshold",
    "at_least",
    "diagnose",
    "headline",
    "is_holding",
    "newest_first",
]
