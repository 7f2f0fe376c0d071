"""``param_norm``: the length of the parameter vector (weight growth)."""

from __future__ import annotations

from cockpit.logs.schema import PER_LAYER, TOTAL
from cockpit.quantities._base import Quantity
from cockpit.quantities._view import StepStates
from cockpit.stats.parameters import param_norms


class ParamNorm(Quantity):
    """``||theta_t||_2``, for the whole network and per parameter tensor.

    ``||theta_t||_2 = sqrt(sum_l sum_j theta_{t,l,j}^2)`` over the parameter tensors
    ``l`` (per layer: the inner sum alone). ``theta_t`` are the values the step's
    gradient was taken at: read when the backward pass of step t has run, before
    ``optimizer.step()`` changes them. Needs the parameters only, no per-sample
    gradients.
    """

    name = "param_norm"
    states = frozenset({"params"})

    def finalize(self, states: StepStates) -> dict:
        params = {name: p.detach() for name, p in states["params"].items()}
        total, per_layer = param_norms(params)
        return {TOTAL: total, PER_LAYER: per_layer}
