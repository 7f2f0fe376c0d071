"""The quantities, their registry, and the presets.

Each quantity lives in its own module named like its log key. :data:`REGISTRY` maps
log keys to classes and refuses duplicates; :data:`PRESETS` lists the keys each preset
turns on.
"""

from __future__ import annotations

from cockpit.quantities._base import Quantity
from cockpit.quantities.alpha import Alpha
from cockpit.quantities.cabs import CABS
from cockpit.quantities.distance import Distance
from cockpit.quantities.early_stopping import EarlyStopping
from cockpit.quantities.grad_hist_1d import GradHist1d
from cockpit.quantities.grad_hist_2d import GradHist2d
from cockpit.quantities.grad_norm import GradNorm
from cockpit.quantities.gradient_noise_scale import GradientNoiseScale
from cockpit.quantities.inner_product_test import InnerProductTest
from cockpit.quantities.loss import Loss
from cockpit.quantities.mean_gsnr import MeanGSNR
from cockpit.quantities.norm_test import NormTest
from cockpit.quantities.orthogonality_test import OrthogonalityTest
from cockpit.quantities.update_size import UpdateSize


def _register(*classes: type[Quantity]) -> dict[str, type[Quantity]]:
    registry: dict[str, type[Quantity]] = {}
    for cls in classes:
        if cls.name in registry:
            raise ValueError(f"Two quantities claim the log key '{cls.name}'.")
        registry[cls.name] = cls
    return registry


REGISTRY: dict[str, type[Quantity]] = _register(
    Loss,
    GradNorm,
    Distance,
    UpdateSize,
    NormTest,
    InnerProductTest,
    OrthogonalityTest,
    MeanGSNR,
    Alpha,
    GradHist1d,
    GradHist2d,
    EarlyStopping,
    CABS,
    GradientNoiseScale,
)

#: Keys per preset (QUANTITIES.md). ``business`` and ``full`` add the curvature
#: quantities; until those exist they hold the first-order part of their list.
_ECONOMY = (
    "loss",
    "grad_norm",
    "distance",
    "update_size",
    "norm_test",
    "inner_product_test",
    "orthogonality_test",
    "alpha",
    "grad_hist_1d",
    "mean_gsnr",
    "gradient_noise_scale",
)
PRESETS: dict[str, tuple[str, ...]] = {
    "economy": _ECONOMY,
    "business": _ECONOMY,
    "full": (*_ECONOMY, "grad_hist_2d"),
}

__all__ = ["PRESETS", "REGISTRY", "Quantity"]
