"""``gradient_noise_scale``: the batch size at which gradient noise equals signal."""

from __future__ import annotations

from cockpit._record import Flagged, OnHost
from cockpit.quantities._base import Quantity
from cockpit.quantities._context import TOTAL, StepContext
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
    needs_per_sample = True

    def compute(self, ctx: StepContext) -> dict:
        parts = {
            name: gradient_noise_scale(s.sq_norms, ctx.stats_grad_sq_norm(name))
            for name, s in ctx.stats.items()
        }
        values = {name: OnHost(_finish, (b, g2)) for name, (b, _, g2) in parts.items()}
        _, trace_cov, true_sq_norm = parts[TOTAL]
        return {
            TOTAL: values.pop(TOTAL),
            "per_layer": values,
            "trace_cov": trace_cov,
            "true_grad_sq_norm": true_sq_norm,
        }
