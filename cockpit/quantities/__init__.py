"""The quantities, their registry, and the presets.

Each quantity lives in its own module named like its log key. :data:`REGISTRY` maps
log keys to classes and refuses duplicates; :data:`PRESETS` (from
:mod:`cockpit.presets`) lists the keys each preset turns on, with their default
schedules.
"""

from __future__ import annotations

from cockpit.presets import PRESETS
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

__all__ = ["PRESETS", "REGISTRY", "Quantity"]
