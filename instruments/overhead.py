"""What the tracker costs: its time per step next to the whole step's time.

Under an overhead budget (``Cockpit(budget=...)``) also the measured share of the wall
time (``overhead_share``, in percent) against the budget, and the plan: which
quantities run how often (``meta.json``'s ``budget``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import plotly.graph_objects as go

from cockpit.instruments._data import RunData, Series
from cockpit.instruments._figures import fmt, header, hline
from cockpit.instruments._lines import LinesInstrument
from cockpit.instruments._report_axes import newest_text, reference, subtitle
from cockpit.instruments._view import View

if TYPE_CHECKING:
    from matplotlib.figure import SubFigure

__all__ = ["OverheadGauge"]


class OverheadGauge(LinesInstrument):
    """``tracker_time`` and ``step_time`` in ms; ``overhead_share`` in percent."""

    id = "overhead"
    title = "Tracker overhead"
    how_to_read = (
        "The time the tracker spent in each step next to the step's wall time: what "
        "the instruments cost. Track expensive quantities less often if it dominates."
    )
    quantities = ("tracker_time", "step_time", "overhead_share")
    rows = (("tracker_time", "step_time"), ("overhead_share",))
    labels = (
        ("tracker_time", "tracker"),
        ("step_time", "step"),
        ("overhead_share", "measured share %"),
    )
    log_y = True
    unit = " ms"

    def series_of(self, run: RunData, quantity: str, view: View) -> Series:
        series = run.series(quantity)
        scale = 100.0 if quantity == "overhead_share" else 1000.0
        return Series(series.steps, series.values * scale)

    def draw(self, runs: list[RunData], view: View) -> go.Figure:
        figure = super().draw(runs, view)
        shares = []
        for run in runs:
            tracker = run.series("tracker_time").between(*view.steps)
            step = run.series("step_time").between(*view.steps)
            _, at_tracker, at_step = np.intersect1d(
                tracker.steps, step.steps, return_indices=True
            )
            ratios = tracker.values[at_tracker] / step.values[at_step]
            if np.isfinite(ratios).any():
                shares.append(f"{run.name} {fmt(100 * np.nanmedian(ratios))} %")
        if shares:
            newest = [
                (run.name, self.series_of(run, "tracker_time", view)) for run in runs
            ]
            extra = "tracker share of the step (median): " + ", ".join(shares[:3])
            extra += "".join(f"<br>{run.name} {plan_text(run)}" for run in runs[:3])
            newest = [(name, s.between(*view.steps).finite()) for name, s in newest]
            figure.update_layout(
                title_text=header(self.title, newest, self.unit, extra)
            )
        figure.update_yaxes(title_text="ms per step", row=1, col=1)
        figure.update_yaxes(title_text="% of wall time", row=2, col=1)
        budgets = {plan["budget"] for plan in map(_plan, runs) if plan}
        for budget in sorted(budgets):
            hline(figure, 100.0 * budget, f"budget {fmt(100.0 * budget)} %", (2, 1))
        return figure

    def draw_report(self, cell: SubFigure, run: RunData, view: View) -> None:
        """Tracker and step time in ms, and the tracker's median share of the step."""
        axes, first = self.report_rows(cell, run, view)
        axes[0].set_ylabel("ms per step", fontsize=8)
        subtitle(axes[0], newest_text(first, self.unit) + _tracker_share(run, view))
        axes[1].set_ylabel("% of wall time", fontsize=8)
        plan = _plan(run)
        if plan:
            subtitle(axes[1], plan_text(run, verdict=False))
            label = f"budget {fmt(100.0 * plan['budget'])} %"
            if plan.get("over_budget"):
                label += ": over budget, raise budget= or track fewer quantities"
            reference(axes[1], 100.0 * plan["budget"], label)


def _plan(run: RunData) -> dict[str, Any] | None:
    plan = run.meta.get("budget")
    return plan if isinstance(plan, dict) and "intervals" in plan else None


def plan_text(run: RunData, verdict: bool = True) -> str:
    """The run's overhead budget and plan, e.g. ``budget 5 %: every 1: loss; ...``.

    With ``verdict``, a plan over its budget (``over_budget``: every quantity at
    the longest interval still costs more) says so, with the plain step's time and
    what to change (the report says it at its budget line instead).
    """
    plan = _plan(run)
    if plan is None:
        return "no overhead budget (fixed schedules)"
    by_interval: dict[int, list[str]] = {}
    for name, interval in sorted(plan["intervals"].items()):
        by_interval.setdefault(int(interval), []).append(name)
    groups = "; ".join(
        f"every {k}: {', '.join(names)}" for k, names in sorted(by_interval.items())
    )
    when = (
        "calibrating"
        if plan.get("planned_at") is None
        else f"planned at step {plan['planned_at']}"
    )
    text = f"budget {fmt(100.0 * plan['budget'])} % ({when}): {groups}"
    if verdict and plan.get("over_budget") and plan.get("planned_share") is not None:
        text += (
            f". Over budget: even this plan costs {fmt(100.0 * plan['planned_share'])}"
            f" % of a {fmt(plan.get('plain_step_ms'))} ms step; raise budget= or "
            "track fewer quantities"
        )
    return text


def _tracker_share(run: RunData, view: View) -> str:
    """The median share of the step that the tracker took, as in the dashboard."""
    tracker = run.series("tracker_time").between(*view.steps)
    step = run.series("step_time").between(*view.steps)
    _, at_tracker, at_step = np.intersect1d(
        tracker.steps, step.steps, return_indices=True
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = tracker.values[at_tracker] / step.values[at_step]
    ratios = ratios[np.isfinite(ratios)]
    return (
        f"; tracker share (median) {fmt(100 * np.median(ratios))} %"
        if len(ratios)
        else ""
    )
