"""Every threshold and window of the diagnosis rules, in one table.

Windows count tracked records that hold the quantity, not optimizer steps: a quantity
tracked every 10th step fills a window of 20 in 200 steps. A rule whose window is not
full yet says nothing. ``Diagnoser(thresholds={...})`` overrides any entry by name.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from cockpit.exceptions import ConfigurationError

__all__ = ["THRESHOLDS", "Threshold", "resolve"]


@dataclass(frozen=True)
class Threshold:
    """One tunable number of a rule.

    Attributes:
        value: The default.
        rule: The rule that reads it.
        meaning: What the number is, and the reasoning or paper behind the default.

    """

    value: float
    rule: str
    meaning: str


THRESHOLDS: dict[str, Threshold] = {
    "trend_window": Threshold(
        10,
        "exploding_gradients, vanishing_gradients",
        "Records whose median gradient norm is compared: the first window (the "
        "baseline) against the newest.",
    ),
    "explode_factor": Threshold(
        100.0,
        "exploding_gradients",
        "Newest median over baseline median of the gradient norm (total or a layer) "
        "above which it explodes. Healthy digits runs grow their norm by at most ~10x "
        "from initialization.",
    ),
    "vanish_factor": Threshold(
        1e-3,
        "vanishing_gradients",
        "Newest median over baseline median below which the gradient norm vanishes "
        "(three orders of magnitude; converging runs shrink it ~10x).",
    ),
    "dead_window": Threshold(
        5,
        "dead_layer",
        "Consecutive records in which a layer's gradient norm is exactly 0.",
    ),
    "alpha_window": Threshold(
        20, "alpha_overshoot, alpha_small", "Records of alpha whose median is read."
    ),
    "alpha_high": Threshold(
        1.0,
        "alpha_overshoot",
        "Median alpha above which the steps overshoot the valley of the local "
        "quadratic (1: the step lands as high on the other side as it started). Not 0: "
        "well-tuned SGD sits a little above 0 (Schneider et al. 2021).",
    ),
    "alpha_low": Threshold(
        -0.9,
        "alpha_small",
        "Median alpha below which the steps barely move along the valley (-1: the step "
        "did not move at all).",
    ),
    "eos_fraction": Threshold(
        0.8,
        "edge_of_stability",
        "Fraction of the stability limit of lr x lambda_max (2 for gradient descent, "
        "2 (1 + beta) with heavy-ball momentum beta) from which it is 'approaching'. "
        "Cohen et al. 2021: gradient descent trains at the edge of stability, 2/lr.",
    ),
    "eos_loss_window": Threshold(
        40,
        "edge_of_stability",
        "Records of the loss (at most; at least 4) whose halves' medians are "
        "compared: SGD trains at the edge of stability while the loss falls (Cohen "
        "et al. 2021), which is not a fault, so the rule speaks only when it rises.",
    ),
    "eos_loss_rise": Threshold(
        0.5,
        "edge_of_stability",
        "Relative rise of the loss (newer half's median over the older half's, "
        "minus 1) from which the steps are unstable, not merely at the edge: well "
        "above the noise of a median of mini-batch losses.",
    ),
    "tests_window": Threshold(
        20, "small_batch", "Records of the gradient tests whose median is read."
    ),
    "tests_limit": Threshold(
        10.0,
        "small_batch",
        "Median of the norm, inner-product or orthogonality test above which the "
        "batch is too small. The tests' own threshold is 1 (Byrd et al. 2012, "
        "Bollapragada et al. 2018), but near a minimum every batch exceeds it as the "
        "gradient shrinks, so only a clear excess is an alert.",
    ),
    "noise_scale_ratio": Threshold(
        8.0,
        "small_batch",
        "Median gradient noise scale over the batch size from which the batch is too "
        "small (McCandlish et al. 2018). Near the initialization the noise scale of the "
        "digits runs is 3 to 6 times their batch of 64; a batch of 2 reaches 11.",
    ),
    "plateau_window": Threshold(
        40,
        "plateau",
        "Records of the loss and distance compared: the median loss of the first "
        "half against the second half.",
    ),
    "plateau_gain": Threshold(
        0.02,
        "plateau",
        "Relative decrease of the median loss between the two halves below which "
        "the loss stalls.",
    ),
    "plateau_drift": Threshold(
        0.05,
        "plateau",
        "Relative growth of the distance from the initialization over the window "
        "above which the parameters keep moving (drifting).",
    ),
    "early_stopping_window": Threshold(
        5,
        "early_stopping",
        "Records of the early-stopping criterion whose median must be above 0 "
        "(Mahsereci et al. 2017) after it was below.",
    ),
    "overhead_window": Threshold(
        20, "tracker_overhead", "Records of tracker_time and step_time compared."
    ),
    "overhead_budget": Threshold(
        2.0,
        "tracker_overhead",
        "The tracker's time per step over the training's own (step_time - "
        "tracker_time) above which tracking costs more than its budget; in a run "
        "under an overhead budget, the factor over that budget the median "
        "overhead_share must exceed.",
    ),
    "overhead_min_seconds": Threshold(
        0.05,
        "tracker_overhead",
        "Median tracker seconds per step below which no budget applies: on tiny "
        "models the ratio is large but the wall-clock cost is not worth an alert.",
    ),
    "input_window": Threshold(
        10,
        "unnormalized_inputs",
        "Records of the per-layer gradient norms whose median ratio is read.",
    ),
    "input_rms": Threshold(
        4.0,
        "unnormalized_inputs",
        "Median root mean square of the input elements (input_scale) above which the "
        "inputs are not normalized: normalized data is near 1 or below, digits as "
        "0-16 pixels about 7.7 (0.48 once divided by 16).",
    ),
    "input_ratio": Threshold(
        20.0,
        "unnormalized_inputs",
        "The first layer's root-mean-square gradient element over the median of the "
        "other weight layers' above which its inputs are likely not normalized "
        "(Schneider et al. 2021, Cockpit's showcase).",
    ),
    "chance_window": Threshold(
        40,
        "loss_at_chance",
        "Records of the loss whose median is compared with log(C); the run's first "
        "window is left out (every classifier starts at chance).",
    ),
    "chance_fraction": Threshold(
        0.9,
        "loss_at_chance",
        "Fraction of log(C), the cross-entropy of guessing among C classes, above "
        "which the loss has learned nothing beyond the class frequencies.",
    ),
}
"""Name -> threshold; ``README.md``'s Diagnosis section lists the same."""


def resolve(overrides: Mapping[str, float] | None) -> dict[str, float]:
    """The thresholds' values with ``overrides`` applied.

    Raises:
        ConfigurationError: If an override names no threshold.

    """
    values = {name: t.value for name, t in THRESHOLDS.items()}
    for name, value in (overrides or {}).items():
        if name not in values:
            known = ", ".join(THRESHOLDS)
            raise ConfigurationError(
                f"Unknown diagnosis threshold {name!r}. Choose one of: {known}."
            )
        values[name] = float(value)
    return values
