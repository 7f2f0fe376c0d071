"""One file per instrument: log data in, plotly figure out (``cockpit.instruments``).

Each instrument is a small class (``alpha.py`` defines :class:`AlphaGauge`) whose
:meth:`~Instrument.figure` takes the selected runs as :class:`RunData` and a
:class:`View` (layer, step range, scales) and returns a ``plotly`` figure, or a
placeholder naming the quantity and preset that would fill it. :data:`REGISTRY` maps
instrument ids to classes; :data:`GROUPS` orders them into the dashboard's sections.
Nothing here imports torch.

Example::

    import cockpit
    from cockpit.instruments import REGISTRY, RunData, View

    run = RunData.from_run(cockpit.load("runs/my-run"))
    REGISTRY["alpha"]().figure([run], View()).show()
"""

from __future__ import annotations

from cockpit.instruments._base import Instrument
from cockpit.instruments._data import Histogram, RunData, Series
from cockpit.instruments._figures import PLACEHOLDER_NAME
from cockpit.instruments._view import View
from cockpit.instruments.alpha import AlphaGauge
from cockpit.instruments.distance import DistanceGauge
from cockpit.instruments.early_stopping import EarlyStoppingGauge
from cockpit.instruments.ggn_top_eigen import GgnTopEigenGauge
from cockpit.instruments.grad_hist_1d import GradHist1dGauge
from cockpit.instruments.grad_hist_2d import GradHist2dGauge
from cockpit.instruments.grad_norm import GradNormGauge
from cockpit.instruments.gradient_noise_scale import GradientNoiseScaleGauge
from cockpit.instruments.gradient_tests import GradientTestsGauge
from cockpit.instruments.hess_max_ev import HessMaxEvGauge
from cockpit.instruments.hess_trace import HessTraceGauge
from cockpit.instruments.kfac_block import KfacBlockGauge
from cockpit.instruments.loss import LossGauge
from cockpit.instruments.lr import LearningRateGauge
from cockpit.instruments.mean_gsnr import MeanGsnrGauge
from cockpit.instruments.overhead import OverheadGauge
from cockpit.instruments.tic import TicGauge

__all__ = [
    "GROUPS",
    "PLACEHOLDER_NAME",
    "REGISTRY",
    "Histogram",
    "Instrument",
    "RunData",
    "Series",
    "View",
    "get",
]


def _register(*classes: type[Instrument]) -> dict[str, type[Instrument]]:
    registry: dict[str, type[Instrument]] = {}
    for cls in classes:
        if cls.id in registry:
            raise ValueError(
                f"Instrument id {cls.id!r} is used by both {registry[cls.id].__name__} "
                f"and {cls.__name__}; give each instrument its own id."
            )
        registry[cls.id] = cls
    return registry


REGISTRY: dict[str, type[Instrument]] = _register(
    AlphaGauge,
    DistanceGauge,
    LearningRateGauge,
    GradNormGauge,
    GradientTestsGauge,
    GradHist1dGauge,
    GradHist2dGauge,
    MeanGsnrGauge,
    GradientNoiseScaleGauge,
    HessMaxEvGauge,
    HessTraceGauge,
    TicGauge,
    KfacBlockGauge,
    GgnTopEigenGauge,
    LossGauge,
    EarlyStoppingGauge,
    OverheadGauge,
)
"""Instrument id -> class."""

GROUPS: dict[str, tuple[str, tuple[str, ...]]] = {
    "step_size": ("Step size", ("alpha", "distance", "lr")),
    "gradients": (
        "Gradients",
        (
            "grad_norm",
            "gradient_tests",
            "grad_hist_1d",
            "grad_hist_2d",
            "mean_gsnr",
            "gradient_noise_scale",
        ),
    ),
    "curvature": (
        "Curvature",
        ("hess_max_ev", "hess_trace", "tic", "kfac_block", "ggn_top_eigen"),
    ),
    "performance": ("Performance", ("loss", "early_stopping")),
    "overhead": ("Overhead", ("overhead",)),
}
"""Group id -> (title, instrument ids), in the dashboard's order."""


def get(instrument_id: str) -> Instrument:
    """A new instrument by id.

    Raises:
        KeyError: If no instrument has that id.

    """
    try:
        return REGISTRY[instrument_id]()
    except KeyError:
        known = ", ".join(REGISTRY)
        raise KeyError(
            f"Unknown instrument {instrument_id!r}. Choose one of: {known}."
        ) from None
