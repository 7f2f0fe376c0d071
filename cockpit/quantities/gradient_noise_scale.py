"""``gradient_noise_scale``: the batch size at which gradient noise equals signal."""

from __future__ import annotations

import functools

import numpy as np

from cockpit._record import Flagged, OnHost
from cockpit.logs.schema import PER_LAYER, TOTAL
from cockpit.quantities._base import Quantity
from cockpit.quantities._view import StepStates
from cockpit.stats.batch_size import gradient_noise_scale


def _finish(b_simple, true_sq_norm) -> float | Flagged:
    if not true_sq_norm > 0:
        return Flagged("G2 <= 0: gradient noise swamps the signal at this batch size")
    return float(b_simple)


def _finish_layers(
    names: list[str], b_simple: np.ndarray, true_sq_norm: np.ndarray
) -> dict[str, float | Flagged]:
    """:func:`_finish` of each layer's ``[L]`` values, by parameter name.

    The layers with ``G2 > 0`` (as a rule all) in one ``dict(zip)``, no call each.
    """
    finished: dict[str, float | Flagged] = dict(
        zip(names, b_simple.tolist(), strict=True)
    )
    for i in np.flatnonzero(~(true_sq_norm > 0)).tolist():
        finished[names[i]] = _finish(b_simple[i], true_sq_norm[i])
    return finished


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
        # One host-side step for all layers: no tensor or OnHost per layer.
        per_layer = functools.partial(_finish_layers, states.layer_names)
        return {
            TOTAL: OnHost(_finish, (ratios[-1], true_sq_norm[-1])),
            PER_LAYER: OnHost(per_layer, (ratios[:-1], true_sq_norm[:-1])),
            "trace_cov": trace_cov[-1],
            "true_grad_sq_norm": true_sq_norm[-1],
        }
