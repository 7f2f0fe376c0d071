"""Rules on the loss: non-finite values, a loss at chance, a plateau while drifting."""

from __future__ import annotations

import math

from cockpit.diagnosis._history import History, first_step_where, median
from cockpit.diagnosis._rule import Finding, New, Rule, window

__all__ = ["LossAtChance", "NonFinite", "Plateau", "classes"]

_GRAD_LAYER = "grad_norm.per_layer."


class NonFinite(Rule):
    """The loss or a gradient norm is NaN or infinite: from here on nothing is learned.

    Reads the record's ``nonfinite`` paths (and ``null`` values) of ``loss`` and
    ``grad_norm``; names the first layer in the model's order whose gradient is not
    finite. One alert from the first such step to the newest. In a run with a
    ``GradScaler`` (``meta.json``'s ``grad_scaler``), non-finite gradients with a
    finite loss are the scaler's overflow: it skips that step and lowers its scale,
    so they raise nothing.
    """

    name = "nonfinite"
    severity = "error"
    instrument = "loss"
    watches = ("loss", "grad_norm")
    lasting = True

    def check(self, history: History, new: New, t: dict[str, float]) -> list[Finding]:
        paths = [p for p in new.nonfinite if p.split(".")[0] in self.watches]
        loss_bad = any(p.startswith("loss") for p in paths)
        loss_bad |= "loss" in new.quantities and _nan(history.last("loss"))
        layers = [
            layer
            for layer in history.layers("grad_norm")
            if f"{_GRAD_LAYER}{layer}" in paths
            or (
                "grad_norm" in new.quantities and _nan(history.last("grad_norm", layer))
            )
        ]
        total_bad = "grad_norm.total" in paths or (
            "grad_norm" in new.quantities and _nan(history.last("grad_norm"))
        )
        if not (loss_bad or layers or total_bad):
            return []
        if history.meta.get("grad_scaler") and not loss_bad:
            return []
        what = "the loss" if loss_bad else "the gradient"
        first = (
            f"; the first layer (in the model's order) is {layers[0]}" if layers else ""
        )
        return [
            Finding(
                step=new.step,
                first_step=new.step,
                explanation=(
                    f"{what.capitalize()} is not finite (NaN or inf) at step "
                    f"{new.step}{first}. Once a parameter is NaN, every later step is."
                ),
                suggestion=(
                    "Check the inputs and labels of that step for NaN/inf "
                    "(torch.isfinite(x).all()); if the loss grew before, lower the "
                    "learning rate or clip gradients; torch.autograd."
                    "set_detect_anomaly(True) names the operation that made it."
                ),
                layers=tuple(layers),
                evidence={"nonfinite_paths": len(paths), "loss_nonfinite": loss_bad},
            )
        ]


def _nan(values: list[float]) -> bool:
    return bool(values) and not math.isfinite(values[-1])


def classes(history: History) -> int | None:
    """C, the classes of a cross-entropy loss: the output layer's rows in meta.json.

    The output layer is the last parameter with two or more dimensions; ``None``
    where the loss is not ``CrossEntropyLoss`` or no such parameter exists.
    """
    loss = history.meta.get("loss") or {}
    if loss.get("type") != "CrossEntropyLoss":
        return None
    shapes = [s for s in (history.meta.get("parameters") or {}).values() if len(s) >= 2]
    return int(shapes[-1][0]) if shapes and shapes[-1][0] > 1 else None


class LossAtChance(Rule):
    """The loss stays at ``log(C)`` while the gradients are alive: shuffled labels?

    A classifier that guesses among C classes has cross-entropy ``log(C)``; a loss that
    stays there for a whole window, while the gradient norm is finite and no layer's
    gradient is zero, learns nothing from the inputs: the labels are likely shuffled
    or misaligned with the inputs (Schneider et al. 2021 show it as a pipeline bug).
    C is the output layer's rows in ``meta.json``'s ``parameters``. The first
    window of the run is left out, as every classifier starts at chance.
    """

    name = "loss_at_chance"
    instrument = "loss"
    watches = ("loss",)

    def check(self, history: History, new: New, t: dict[str, float]) -> list[Finding]:
        c = classes(history)
        n = window(t, "chance_window")
        # The first window is left out: every classifier starts at chance.
        if c is None or history.total("loss") < 2 * n:
            return []
        loss = median(history.last("loss", n=n))
        chance = math.log(c)
        grads = history.last("grad_norm", n=n)
        alive = bool(grads) and all(math.isfinite(g) and g > 0 for g in grads)
        # Healthy gradients: no layer stuck at 0 for most of the window.
        alive &= all(
            median(history.last("grad_norm", layer, n)) > 0
            for layer in history.layers("grad_norm")
        )
        if not (loss >= t["chance_fraction"] * chance and alive):
            return []
        level = t["chance_fraction"] * chance
        return [
            Finding(
                step=new.step,
                first_step=first_step_where(
                    history.last_steps("loss", n=n), lambda v: v >= level
                ),
                explanation=(
                    f"The median loss of the last {n} records, {loss:.3g}, is at "
                    f"chance level log({c}) = {chance:.3g} while the gradients are "
                    "alive: the model learns nothing from its inputs."
                ),
                suggestion=(
                    "Check that labels stay paired with their inputs (a shuffle "
                    "applied to one but not the other, a wrong label column)."
                ),
                evidence={"median_loss": loss, "log_classes": chance, "classes": c},
            )
        ]


class Plateau(Rule):
    """The loss stalls while the distance from the initialization keeps growing.

    Compares the median loss of the first and second half of a window: a relative
    decrease below ``plateau_gain`` stalls; the distance growing by more than
    ``plateau_drift`` over the same window means the parameters drift without
    progress, often a learning rate too large for the valley (or too small to leave
    a flat region).
    """

    name = "plateau"
    instrument = "loss"
    watches = ("loss", "distance")

    def check(self, history: History, new: New, t: dict[str, float]) -> list[Finding]:
        n = window(t, "plateau_window")
        if history.count("loss") < n or history.count("distance") < n:
            return []
        losses = history.last("loss", n=n)
        early, late = median(losses[: n // 2]), median(losses[n // 2 :])
        distance = history.last("distance", n=n)
        if not all(math.isfinite(v) for v in (early, late, distance[0], distance[-1])):
            return []
        gain = (early - late) / abs(early) if early else 0.0
        drift = (distance[-1] - distance[0]) / distance[0] if distance[0] > 0 else 0.0
        if gain >= t["plateau_gain"] or drift <= t["plateau_drift"]:
            return []
        steps = history.last_steps("loss", n=n)
        return [
            Finding(
                step=new.step,
                first_step=steps[0][0],
                explanation=(
                    f"Over the last {n} records the median loss fell by "
                    f"{100 * gain:.2g} % only, while the distance from the "
                    f"initialization grew by {100 * drift:.2g} %: the parameters move "
                    "without making progress."
                ),
                suggestion=(
                    "Look at alpha: overshooting steps (alpha > 0) call for a smaller "
                    "learning rate, tiny ones (near -1) for a larger one or a "
                    "schedule; a plateau of a deep net can also need another "
                    "initialization or normalization."
                ),
                evidence={"loss_gain": gain, "distance_growth": drift},
            )
        ]
