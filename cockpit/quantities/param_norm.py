"""``param_norm``: the length of the parameter vector (weight growth)."""

from __future__ import annotations

from cockpit.quantities._base import Quantity
from cockpit.quantities._view import StepStates


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
    shardable = True

    def finalize(self, states: StepStates) -> dict:
        return states.layered_rows(states.param_norm_rows, list(states["params"]))
