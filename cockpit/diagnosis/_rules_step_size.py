"""Rules on the step size: alpha, and the learning rate against the sharpest curvature."""

from __future__ import annotations

import math
from typing import Any

from cockpit.diagnosis._history import History, first_step_where, median
from cockpit.diagnosis._rule import Finding, New, Rule, window

__all__ = ["AlphaOvershoot", "AlphaSmall", "EdgeOfStability", "stability_limit"]


class _Alpha(Rule):
    instrument = "alpha"
    watches = ("alpha",)

    def median_alpha(self, history: History, t: dict[str, float]) -> tuple[float, int]:
        n = window(t, "alpha_window")
        return history.window_median("alpha", n), n


class AlphaOvershoot(_Alpha):
    """Median alpha above ``alpha_high``: the steps overshoot the valley's floor.

    Alpha locates where a step lands in a 1D quadratic fit along it (Schneider et al.
    2021): 0 at the valley's floor, +1 as high on the other side as it started.
    """

    name = "alpha_overshoot"

    def check(self, history: History, new: New, t: dict[str, float]) -> list[Finding]:
        alpha, n = self.median_alpha(history, t)
        if not alpha > t["alpha_high"]:
            return []
        return [
            Finding(
                step=new.step,
                first_step=first_step_where(
                    history.last_steps("alpha", n=n), lambda v: v > t["alpha_high"]
                ),
                explanation=(
                    f"The median alpha of the last {n} steps is {alpha:.3g}: the steps "
                    "overshoot the valley of the local quadratic, landing higher on the "
                    "other side."
                ),
                suggestion="The learning rate is likely too high: lower it (try 1/3).",
                evidence={"median_alpha": alpha},
            )
        ]


class AlphaSmall(_Alpha):
    """Median alpha below ``alpha_low``: the steps barely move along the valley."""

    name = "alpha_small"

    def check(self, history: History, new: New, t: dict[str, float]) -> list[Finding]:
        alpha, n = self.median_alpha(history, t)
        if not alpha < t["alpha_low"]:
            return []
        return [
            Finding(
                step=new.step,
                first_step=first_step_where(
                    history.last_steps("alpha", n=n), lambda v: v < t["alpha_low"]
                ),
                explanation=(
                    f"The median alpha of the last {n} steps is {alpha:.3g}, near -1: "
                    "each step covers a tiny part of the way to the valley's floor."
                ),
                suggestion=(
                    "The learning rate is likely too small: raise it, or use a "
                    "schedule with a warm-up to a larger rate."
                ),
                evidence={"median_alpha": alpha},
            )
        ]


def stability_limit(meta: dict[str, Any]) -> tuple[float, str] | None:
    """The largest stable ``lr * lambda_max`` for the run's optimizer, and why.

    On a quadratic, gradient descent is stable along a direction of curvature lambda
    while ``lr * lambda < 2``; heavy-ball momentum beta moves the limit to
    ``2 (1 + beta)``, Nesterov's to ``2 (1 + beta) / (1 + 2 beta)``. Adaptive
    optimizers (Adam, RMSprop, ...) rescale every direction, so the bound does not
    apply: ``None``.
    """
    optimizer = meta.get("optimizer") or {}
    if optimizer.get("type") != "SGD":
        return None
    defaults = optimizer.get("defaults") or {}
    beta = float(defaults.get("momentum") or 0.0)
    if beta == 0.0:
        return 2.0, "plain SGD (gradient descent without momentum): 2"
    if defaults.get("nesterov"):
        limit = 2 * (1 + beta) / (1 + 2 * beta)
        return (
            limit,
            f"SGD with Nesterov momentum {beta:g}: 2(1+b)/(1+2b) = {limit:.3g}",
        )
    return 2 * (1 + beta), f"SGD with momentum {beta:g}: 2(1+b) = {2 * (1 + beta):.3g}"


class EdgeOfStability(Rule):
    """``lr * hess_max_ev`` approaches or passes the optimizer's stability limit.

    For plain SGD (gradient descent without momentum) the limit is 2: along the
    Hessian's top eigenvector a larger product makes every step overshoot by more
    than it gained (Cohen et al. 2021, the edge of stability). With momentum beta it
    is ``2 (1 + beta)``; with Adam and other adaptive optimizers it does not apply
    directly, and the rule stays silent. Read at each record with ``hess_max_ev``;
    the learning rate is the largest of the parameter groups'.

    Gradient descent and SGD sharpen until ``lr * lambda_max`` reaches about 2 and
    then keep training there while the loss falls (Cohen et al. 2021): that regime
    is not a fault. So the rule speaks only when the loss rises as well: over the
    last ``eos_loss_window`` losses (at least 4), the newer half's median is more
    than ``1 + eos_loss_rise`` times the older half's.
    """

    name = "edge_of_stability"
    instrument = "hess_max_ev"
    watches = ("hess_max_ev",)

    def check(self, history: History, new: New, t: dict[str, float]) -> list[Finding]:
        limit = stability_limit(history.meta)
        top = history.last("hess_max_ev")
        rates = [history.last("lr", g) for g in history.layers("lr")] or [
            history.last("lr")
        ]
        lr = max((r[-1] for r in rates if r and math.isfinite(r[-1])), default=None)
        if limit is None or lr is None or not top or not math.isfinite(top[-1]):
            return []
        product, (bound, why) = lr * top[-1], limit
        above = product > bound
        if not above and product < t["eos_fraction"] * bound:
            return []
        losses = history.last("loss", n=window(t, "eos_loss_window"))
        if len(losses) < 4:
            return []
        half = len(losses) // 2
        older, newer = median(losses[:half]), median(losses[half:])
        if not newer > (1 + t["eos_loss_rise"]) * older:
            return []
        where = "above" if above else "approaching"
        return [
            Finding(
                step=new.step,
                first_step=new.step,
                key=where,
                severity="error" if above else "warning",
                explanation=(
                    f"lr x top Hessian eigenvalue = {lr:.3g} x {top[-1]:.3g} = "
                    f"{product:.3g}, {where} the stability limit of {why}, and the "
                    f"loss rises (median {newer:.3g} over the newer half of "
                    f"the window, {older:.3g} before): along the sharpest direction "
                    "the steps overshoot."
                ),
                suggestion=(
                    "Lower the learning rate below "
                    f"{bound / top[-1]:.3g} (= limit / eigenvalue), or warm it up."
                ),
                evidence={
                    "lr": lr,
                    "hess_max_ev": top[-1],
                    "product": product,
                    "loss_before": older,
                    "loss_after": newer,
                },
            )
        ]
