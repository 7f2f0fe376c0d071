"""Rules on the gradient norms: exploding, vanishing, dead layers, unscaled inputs."""

from __future__ import annotations

import math

from cockpit.diagnosis._history import History, first_step_where, median
from cockpit.diagnosis._rule import Finding, New, Rule, window

__all__ = [
    "DeadLayer",
    "ExplodingGradients",
    "UnnormalizedInputs",
    "VanishingGradients",
]


def _series(history: History) -> list[str | None]:
    return [None, *history.layers("grad_norm")]


def _label(layer: str | None) -> str:
    return "the whole model" if layer is None else layer


class _Trend(Rule):
    """The newest median gradient norm against the median of the first records."""

    instrument = "grad_norm"
    watches = ("grad_norm",)
    factor: str
    direction: str

    def tripped(self, ratio: float, t: dict[str, float]) -> bool:
        raise NotImplementedError

    def check(self, history: History, new: New, t: dict[str, float]) -> list[Finding]:
        n = window(t, "trend_window")
        if history.records < 2 * n:
            return []
        ratios, firsts = {}, []
        for layer in _series(history):
            first = history.first("grad_norm", layer)[:n]
            baseline = median(first)
            if len(first) < n or not baseline > 0:
                continue
            ratio = history.window_median("grad_norm", n, layer) / baseline
            # A layer stuck at exactly 0 is dead_layer's finding, not a trend.
            if ratio > 0 and math.isfinite(ratio) and self.tripped(ratio, t):
                ratios[layer] = ratio
                pairs = history.last_steps("grad_norm", layer, n)
                firsts.append(
                    first_step_where(
                        pairs, lambda v, b=baseline: self.tripped(v / b, t)
                    )
                )
        if not ratios:
            return []
        worst = max(ratios, key=lambda k: abs(math.log(ratios[k])))
        layers = tuple(layer for layer in ratios if layer is not None)
        return [
            Finding(
                step=new.step,
                first_step=min(firsts),
                explanation=(
                    f"The gradient norm {self.direction}: the median of the last {n} "
                    f"records is {ratios[worst]:.3g} times that of the first {n} "
                    f"({_label(worst)}{'' if worst is None else ' most'})."
                ),
                suggestion=self.advice,
                layers=layers,
                evidence={f"ratio[{_label(k)}]": v for k, v in ratios.items()},
            )
        ]

    advice: str


class ExplodingGradients(_Trend):
    """The gradient norm (total or of a layer) grew by ``explode_factor`` or more."""

    name = "exploding_gradients"
    severity = "error"
    direction = "explodes"
    advice = (
        "Lower the learning rate, clip gradients (torch.nn.utils.clip_grad_norm_), or "
        "add normalization; the layers named grow fastest."
    )

    def tripped(self, ratio: float, t: dict[str, float]) -> bool:
        return ratio > t["explode_factor"]


class VanishingGradients(_Trend):
    """The gradient norm (total or of a layer) shrank below ``vanish_factor``."""

    name = "vanishing_gradients"
    direction = "vanishes"
    advice = (
        "If the loss is still high, the signal does not reach these layers: check "
        "saturating activations, the initialization, or add residual connections "
        "and normalization."
    )

    def tripped(self, ratio: float, t: dict[str, float]) -> bool:
        return ratio < t["vanish_factor"]


class DeadLayer(Rule):
    """A layer's gradient is exactly 0 for ``dead_window`` records in a row.

    Its parameters are not in the loss's graph (detached, unused) or sit behind units
    that never activate (dead ReLUs after a large negative bias).
    """

    name = "dead_layer"
    instrument = "grad_norm"
    watches = ("grad_norm",)

    def check(self, history: History, new: New, t: dict[str, float]) -> list[Finding]:
        n = window(t, "dead_window")
        dead = {}
        for layer in history.layers("grad_norm"):
            latest = history.last_steps("grad_norm", layer, n)
            if len(latest) == n and all(v == 0 for _, v in latest):
                dead[layer] = latest[0][0]
        if not dead:
            return []
        names = ", ".join(dead)
        return [
            Finding(
                step=new.step,
                first_step=min(dead.values()),
                explanation=(
                    f"The gradient of {names} has been exactly 0 for {n} records: "
                    "these parameters do not learn."
                ),
                suggestion=(
                    "A parameter that never gets a gradient is not used by the loss "
                    "(detached, a branch forward() skips: freeze or remove it), or "
                    "sits behind units that never activate (dead ReLUs: a large "
                    "negative bias or a learning rate that killed them)."
                ),
                layers=tuple(dead),
                evidence={f"zero_since[{k}]": v for k, v in dead.items()},
            )
        ]


class UnnormalizedInputs(Rule):
    """The inputs are far from normalized: their scale, or the first layer's gradients.

    Two readings, over ``input_window`` records, the first that holds:

    - ``input_scale`` (economy): the median root mean square of the input elements
      above ``input_rms``. Normalized inputs have an RMS near 1 or below; digits fed
      as 0-16 pixels have about 7.7 (0.48 once divided by 16).
    - ``grad_norm.per_layer`` and the parameter shapes in ``meta.json``, for runs
      without ``input_scale``: the first weight layer's root-mean-square gradient
      element (``norm / sqrt(numel)``) over the median of the other weight layers'
      above ``input_ratio`` (the gradient of ``W x`` scales with ``x``). In a ReLU
      network every later layer grows with the inputs too, so this reading is the
      weaker one.
    """

    name = "unnormalized_inputs"
    instrument = "input_scale"
    watches = ("grad_norm", "input_scale")

    def check(self, history: History, new: New, t: dict[str, float]) -> list[Finding]:
        n = window(t, "input_window")
        if history.count("input_scale") >= n:
            return self._by_input_scale(history, new, t, n)
        return self._by_gradients(history, new, t, n)

    def _by_input_scale(
        self, history: History, new: New, t: dict[str, float], n: int
    ) -> list[Finding]:
        rms = history.window_median("input_scale", n)
        if not rms > t["input_rms"]:
            return []
        steps = history.last_steps("input_scale", None, n)
        return [
            Finding(
                step=new.step,
                first_step=steps[0][0],
                explanation=(
                    f"The model's input elements have a root mean square of {rms:.3g} "
                    "(median over the window); normalized inputs are near 1 or "
                    "below. Unnormalized inputs inflate the first layer's gradients "
                    "and make the learning rate hard to tune."
                ),
                suggestion=_NORMALIZE,
                evidence={"input_rms": rms},
            )
        ]

    def _by_gradients(
        self, history: History, new: New, t: dict[str, float], n: int
    ) -> list[Finding]:
        shapes = history.meta.get("parameters") or {}
        logged = set(history.layers("grad_norm"))
        weights = [k for k, s in shapes.items() if len(s) >= 2 and k in logged]
        if len(weights) < 2 or history.count("grad_norm", weights[0]) < n:
            return []
        rms = {
            k: history.window_median("grad_norm", n, k)
            / math.sqrt(math.prod(shapes[k]))
            for k in weights
        }
        others = median([rms[k] for k in weights[1:] if rms[k] > 0])
        ratio = rms[weights[0]] / others if others > 0 else math.nan
        if not ratio > t["input_ratio"]:
            return []
        steps = history.last_steps("grad_norm", weights[0], n)
        return [
            Finding(
                step=new.step,
                first_step=steps[0][0],
                explanation=(
                    f"The first layer {weights[0]}'s gradient elements are "
                    f"{ratio:.3g} times larger (root mean square) than the other "
                    "weight layers': its inputs are likely not normalized."
                ),
                suggestion=_NORMALIZE,
                layers=(weights[0],),
                evidence={"rms_ratio": ratio},
            )
        ]


_NORMALIZE = (
    "Scale the inputs to zero mean and unit variance (or to [0, 1]), e.g. "
    "torchvision's Normalize, before the first layer."
)
