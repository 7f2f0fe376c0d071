"""Rules on gradient noise and cost: batch size, early stopping, the tracker's budget."""

from __future__ import annotations

import math

from cockpit.diagnosis._history import History, first_step_where, median
from cockpit.diagnosis._rule import Finding, New, Rule, window

__all__ = ["EarlyStopping", "SmallBatch", "TrackerOverhead"]

_TESTS = ("norm_test", "inner_product_test", "orthogonality_test")


def suggested_batch(history: History, n: int) -> tuple[float, str] | None:
    """A batch size from the gradient noise scale, else from CABS (medians)."""
    for key, source in (
        ("gradient_noise_scale", "the gradient noise scale (McCandlish et al. 2018)"),
        ("cabs", "CABS (Balles et al. 2017)"),
    ):
        value = median(history.last(key, n=n))
        if math.isfinite(value) and value > 0:
            return value, source
    return None


class SmallBatch(Rule):
    """The gradient tests say the batch is too small for its gradient noise.

    Each test is the spread of the per-sample gradients around the batch gradient
    relative to its length; the tests' own threshold is 1 (norm test, Byrd et al.
    2012; inner-product and orthogonality tests, Bollapragada et al. 2018). The rule
    fires when the median of any of them over ``tests_window`` records exceeds
    ``tests_limit``, or when the median gradient noise scale is ``noise_scale_ratio``
    times the batch size or more (McCandlish et al. 2018: below the noise scale,
    steps are noise-dominated). For very small batches the tests saturate near 1 (two
    nearly orthogonal per-sample gradients give 1), so the noise scale is the
    evidence there. It suggests a batch size from the noise scale or CABS.
    """

    name = "small_batch"
    instrument = "gradient_tests"
    watches = (*_TESTS, "gradient_noise_scale")

    def check(self, history: History, new: New, t: dict[str, float]) -> list[Finding]:
        n = window(t, "tests_window")
        medians = {key: history.window_median(key, n) for key in _TESTS}
        over = {k: v for k, v in medians.items() if v > t["tests_limit"]}
        batch = history.last("batch_size")
        scale = history.window_median("gradient_noise_scale", n)
        if batch and batch[-1] > 0 and scale / batch[-1] >= t["noise_scale_ratio"]:
            over["gradient_noise_scale"] = scale
        if not over:
            return []
        now = f" (now {batch[-1]:.0f})" if batch and math.isfinite(batch[-1]) else ""
        found = suggested_batch(history, n)
        advice = "Use a larger batch, or average more steps (a smaller learning rate)."
        if found is not None:
            advice = (
                f"Use a batch of about {found[0]:.0f}{now}, as {found[1]} suggests, "
                "or a smaller learning rate."
            )
        key = max(over, key=over.__getitem__)
        first = [history.last_steps(k, n=n)[0][0] for k in over]
        if "gradient_noise_scale" in over:
            key = "gradient_noise_scale"
        return [
            Finding(
                step=new.step,
                first_step=min(first),
                explanation=(
                    f"The {key.replace('_', ' ')}'s median over the last {n} records is "
                    f"{over[key]:.3g}"
                    + (
                        f", {over[key] / batch[-1]:.3g} times the batch size"
                        if key == "gradient_noise_scale"
                        else " (1 is the test's threshold)"
                    )
                    + ": the batch's gradient is mostly noise."
                ),
                suggestion=advice,
                evidence={f"median_{k}": v for k, v in over.items()},
            )
        ]


class EarlyStopping(Rule):
    """The early-stopping criterion crossed 0: the gradient is indistinguishable from noise.

    Mahsereci et al. 2017: above 0 the batch's gradient could come from noise alone,
    so further training on this data mostly fits noise. Fires when the median of the
    last ``early_stopping_window`` records is above 0 after a record at or below 0.
    """

    name = "early_stopping"
    severity = "info"
    instrument = "early_stopping"
    watches = ("early_stopping",)

    def __init__(self) -> None:
        self._below_seen = False

    def check(self, history: History, new: New, t: dict[str, float]) -> list[Finding]:
        latest = history.last_steps("early_stopping")
        if latest and latest[-1][1] <= 0:
            self._below_seen = True
        n = window(t, "early_stopping_window")
        value = history.window_median("early_stopping", n)
        if not (self._below_seen and value > 0):
            return []
        return [
            Finding(
                step=new.step,
                first_step=first_step_where(
                    history.last_steps("early_stopping", n=n), lambda v: v > 0
                ),
                explanation=(
                    f"The early-stopping criterion's median over the last {n} records "
                    f"is {value:.3g} > 0: the gradient is indistinguishable from noise."
                ),
                suggestion=(
                    "Further training mostly fits noise: stop, or check the "
                    "validation loss before going on."
                ),
                evidence={"median_early_stopping": value},
            )
        ]


class TrackerOverhead(Rule):
    """The tracker costs more than its budget.

    A run under an overhead budget (``meta.json``'s ``budget``, the default) logs
    the tracker's measured share of wall time as ``overhead_share``: the rule reads
    its median over ``overhead_window`` records against ``overhead_budget`` times
    the budget (the plan re-balances within that). Other runs are read per tracked
    step: ``tracker_time`` against ``step_time - tracker_time`` (medians over
    ``overhead_window`` records), when the tracker also spends more than
    ``overhead_min_seconds`` per step.
    """

    name = "tracker_overhead"
    severity = "info"
    instrument = "overhead"
    watches = ("tracker_time", "overhead_share")

    def check(self, history: History, new: New, t: dict[str, float]) -> list[Finding]:
        n = window(t, "overhead_window")
        budget = (history.meta.get("budget") or {}).get("budget")
        if isinstance(budget, (int, float)) and budget > 0:
            return self._budgeted(history, new, t, n, float(budget))
        if history.count("tracker_time") < n or history.count("step_time") < n:
            return []
        spent_at = dict(history.last_steps("tracker_time", n=n))
        own = [
            s - spent_at[i]
            for i, s in history.last_steps("step_time", n=n)
            if i in spent_at
        ]
        spent, training = median(list(spent_at.values())), median(own)
        if not (spent > t["overhead_min_seconds"] and training > 0):
            return []
        ratio = spent / training
        if not ratio > t["overhead_budget"]:
            return []
        return [
            Finding(
                step=new.step,
                first_step=history.last_steps("tracker_time", n=n)[0][0],
                explanation=(
                    f"The tracker spends {spent:.3g} s per step, {ratio:.3g} times the "
                    f"training's own {training:.3g} s (budget "
                    f"{t['overhead_budget']:g}x)."
                ),
                suggestion=(
                    "Track less often (quantities={key: cockpit.every(10)}), or a "
                    "smaller preset ('economy'); the overhead panel shows the cost."
                ),
                evidence={"tracker_seconds": spent, "ratio": ratio},
            )
        ]

    def _budgeted(
        self, history: History, new: New, t: dict[str, float], n: int, budget: float
    ) -> list[Finding]:
        share = history.window_median("overhead_share", n)
        if not share > t["overhead_budget"] * budget:
            return []
        return [
            Finding(
                step=new.step,
                first_step=history.last_steps("overhead_share", n=n)[0][0],
                explanation=(
                    f"The tracker takes {share:.1%} of the wall time (median over the "
                    f"last {n} records), over {t['overhead_budget']:g} times its "
                    f"budget of {budget:.1%}: even the sparsest plan costs more here."
                ),
                suggestion=(
                    "Raise the budget (Cockpit(budget=...)), track fewer quantities, "
                    "or profile them (cockpit profile) to see which one costs."
                ),
                evidence={"overhead_share": share, "budget": budget},
            )
        ]
