"""``gradient_noise_scale``: the batch size at which gradient noise equals signal."""

from __future__ import annotations

from cockpit._record import Flagged, OnHost
from cockpit.logs.schema import PER_LAYER, TOTAL
from cockpit.quantities._base import Quantity
from cockpit.quantities._view import StepStates
from cockpit.stats.batch_size import gradient_noise_scale


def _finish(b_simple, true_sq_norm) -> float | Flagged:
    if not true_sq_norm > 0:
        return Flagged("G2 <= 0: gradient noise swamps the signal at this batch size")
    return float(b_simple)


class GradientNoiseScale(Quantity):
    """``B_simple = tr(S) / G2`` (McCandlish et al. 2018), total and per parameter.

    Also logs ``trace_cov`` (tr S) and ``true_grad_sq_norm`` (G2) of the network.
    A step with ``G2 <= 0`` is logged as non-finite with that reason, never clipped;
    smooth over steps when reading (the paper uses an exponential moving average).
    """

    name = "gradient_noise_scale"
    states = frozenset({"sample_grads", "sq_norms"})

    def finalize(self, states: StepStates) -> dict:
        ratios, trace_cov, true_sq_norm = gradient_noise_scale(
            states.rows("sq_norms"), states.sample_grad_sq_norm_rows
        )
        ratio, true = states.layered_rows(ratios), states.layered_rows(true_sq_norm)
        per_layer = {
            name: OnHost(_finish, (b, true[PER_LAYER][name]))
            for name, b in ratio[PER_LAYER].items()
        }
        return {
            TOTAL: OnHost(_finish, (ratio[TOTAL], true[TOTAL])),
            PER_LAYER: per_layer,
            "trace_cov": trace_cov[-1],
            "true_grad_sq_norm": true[TOTAL],
        }
