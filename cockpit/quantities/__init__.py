"""The quantities, their registry, and the presets.

Each quantity lives in its own module named like its log key. :data:`REGISTRY` maps
log keys to classes and refuses duplicates; :data:`PRESETS` lists the keys each preset
turns on, with their default schedules.
"""

from __future__ import annotations

from cockpit.quantities._base import Quantity
from cockpit.quantities.alpha import Alpha
from cockpit.quantities.cabs import CABS
from cockpit.quantities.curvature_noise import CurvatureNoise
from cockpit.quantities.distance import Distance
from cockpit.quantities.early_stopping import EarlyStopping
from cockpit.quantities.ggn_top_eigen import GgnTopEigen
from cockpit.quantities.grad_hist_1d import GradHist1d
from cockpit.quantities.grad_hist_2d import GradHist2d
from cockpit.quantities.grad_norm import GradNorm
from cockpit.quantities.gradient_noise_scale import GradientNoiseScale
from cockpit.quantities.hess_max_ev import HessMaxEv
from cockpit.quantities.hess_trace import HessTrace
from cockpit.quantities.inner_product_test import InnerProductTest
from cockpit.quantities.kfac_block import KfacBlock
from cockpit.quantities.loss import Loss
from cockpit.quantities.mean_gsnr import MeanGSNR
from cockpit.quantities.norm_test import NormTest
from cockpit.quantities.orthogonality_test import OrthogonalityTest
from cockpit.quantities.tic_diag import TicDiag
from cockpit.quantities.tic_trace import TicTrace
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
    HessTrace,
    TicDiag,
    TicTrace,
    HessMaxEv,
    KfacBlock,
    GgnTopEigen,
    CurvatureNoise,
)

#: Per preset, its log keys and each one's default schedule: every k-th step
#: (QUANTITIES.md). ``full`` runs its costly curvature quantities every 10th step;
#: ``quantities=dict.fromkeys(PRESETS["full"], 1)`` runs everything at every step.
_ECONOMY = dict.fromkeys(
    (
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
    ),
    1,
)
_BUSINESS = {**_ECONOMY, "hess_trace": 1, "tic_diag": 1, "tic_trace": 1}
PRESETS: dict[str, dict[str, int]] = {
    "economy": _ECONOMY,
    "business": _BUSINESS,
    "full": {
        **_BUSINESS,
        "grad_hist_2d": 1,
        "hess_max_ev": 10,
        "kfac_block": 10,
        "ggn_top_eigen": 10,
        "curvature_noise": 10,
    },
}

__all__ = ["PRESETS", "REGISTRY", "Quantity"]
