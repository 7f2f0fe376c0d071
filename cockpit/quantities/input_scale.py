"""``input_scale``: how large the model's input elements are (normalization check)."""

from __future__ import annotations

from cockpit.logs.schema import TOTAL
from cockpit.quantities._base import Quantity
from cockpit.quantities._view import StepStates


class InputScale(Quantity):
    """The root mean square, mean, standard deviation and largest magnitude of the input.

    Over the M elements ``x_i`` of the model's first floating-point input at the
    step (all samples): ``rms = sqrt(sum x_i^2 / M)`` (``total``), ``mean = sum x_i
    / M``, ``std = sqrt(sum x_i^2 / M - mean^2)`` (population) and ``absmax = max
    |x_i|``. Normalized inputs have an RMS near 1 or below; scikit-learn's digits
    fed as 0-16 pixels have 7.7 (the first Cockpit paper's input-pipeline bug). For a
    model whose input is not floating point (token ids) it is absent, with that
    reason in ``meta.json``.
    """

    name = "input_scale"
    states = frozenset({"input_moments", "input_absmax"})
    shardable = True

    def finalize(self, states: StepStates) -> dict | None:
        if "input_moments" not in states:
            return None
        count, total, squares = states["input_moments"].unbind()
        mean, mean_sq = total / count, squares / count
        return {
            TOTAL: mean_sq.sqrt(),
            "mean": mean,
            "std": (mean_sq - mean**2).clamp(min=0).sqrt(),
            "absmax": states["input_absmax"],
        }
