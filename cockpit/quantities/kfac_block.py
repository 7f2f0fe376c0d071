"""``kfac_block``: each layer's Kronecker-factored curvature block, reduced to numbers."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from cockpit._record import Flagged, OnHost
from cockpit.engines.curvature import KRONECKER, CurvatureRequest, check_choice
from cockpit.logs.schema import PER_LAYER, TOTAL
from cockpit.quantities._base import Quantity
from cockpit.quantities._view import StepStates
from cockpit.schedules import Schedule
from cockpit.stats.curvature import (
    SINGULAR,
    ZERO_BLOCK,
    factor_eigenvalues,
    kronecker_block,
)

_KEYS = ("max_eigenvalue", "trace", "condition", "nonzero_condition")


def _lowest(top: float, condition: float | Flagged) -> float:
    """The smallest eigenvalue behind ``condition`` (0 if it is flagged)."""
    return 0.0 if isinstance(condition, Flagged) else top / condition


def _finish(names: list[str], sizes: list[int], scale: float, eps: float):
    """Host side: eigenvalues of every factor, then each block's numbers and totals."""

    def finish(*factors: np.ndarray) -> dict[str, Any]:
        out: dict[str, dict[str, Any]] = {k: {PER_LAYER: {}} for k in _KEYS}
        tops, lows, nonzeros, traces = [], [], [], []
        spectra = factor_eigenvalues(factors)  # on one BLAS thread: _record
        start = 0
        for name, size in zip(names, sizes, strict=True):
            eigs = spectra[start : start + size]
            start += size
            eigs[0] = eigs[0] * scale
            block = kronecker_block(*eigs, eps=eps)
            for key in _KEYS:
                out[key][PER_LAYER][name] = block[key]
            top = block["max_eigenvalue"]
            tops.append(top)
            lows.append(_lowest(top, block["condition"]))
            nonzeros.append(_lowest(top, block["nonzero_condition"]))
            traces.append(block["trace"])
        top = max(tops)
        out["max_eigenvalue"][TOTAL] = top
        out["trace"][TOTAL] = float(sum(traces))
        out["condition"][TOTAL] = top / min(lows) if min(lows) > 0 else SINGULAR
        positive = [low for low in nonzeros if low > 0]
        out["nonzero_condition"][TOTAL] = (
            top / min(positive) if positive else ZERO_BLOCK
        )
        return out

    return finish


class KfacBlock(Quantity):
    """Per layer, the top eigenvalue, trace and condition number of its KFAC block.

    BackPACK's ``KFAC`` (Monte-Carlo, default) or ``KFLR`` (exact loss Hessian, C times
    the backpropagation) approximates each parameter's block of the GGN of the mean
    loss by ``B (x) A``: ``B`` ``[out, out]`` from the backpropagated loss Hessian,
    ``A`` ``[in, in]`` (convolutions: ``[in k, in k]``, unfolded) from the layer
    inputs; a bias has ``B`` alone. The numbers come from the factors' eigenvalues
    on the host (:func:`cockpit.stats.curvature.kronecker_block`), never from the
    product. Totals are of the block-diagonal matrix of all blocks: the largest top
    eigenvalue, the summed trace, and largest over smallest eigenvalue. A singular
    block's condition number is logged as non-finite with the reason; most blocks
    are singular, so ``nonzero_condition`` is the condition over the nonzero
    spectrum (eigenvalues of a factor below ``d * eps`` times its largest count as
    zero; the total is over every block's nonzero eigenvalues).

    Args:
        schedule: When it is due.
        kind: ``"kfac"`` or ``"kflr"``.

    """

    name = "kfac_block"
    states = frozenset({"losses", "kronecker", "mean_reduction"})

    def __init__(self, schedule: Schedule | int = 1, kind: str = "kfac"):
        super().__init__(schedule)
        self.kind = check_choice("kind", kind, KRONECKER)

    def options(self) -> dict[str, Any]:
        return {"kind": self.kind}

    def amend_curvature(self, request: CurvatureRequest) -> None:
        request.kronecker.add(self.kind)

    def finalize(self, states: StepStates) -> OnHost:
        blocks = states["kronecker"][self.kind]
        factors = [f for name in blocks for f in blocks[name]]
        eps = torch.finfo(factors[0].dtype).eps
        sizes = [len(f) for f in blocks.values()]
        finish = _finish(list(blocks), sizes, states.mean_scale, eps)
        return OnHost(finish, tuple(factors), decomposes=True)


__all__ = ["KfacBlock"]
