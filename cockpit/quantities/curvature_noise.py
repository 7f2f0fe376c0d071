"""``curvature_noise``: slope and curvature noise along the GGN's top directions."""

from __future__ import annotations

from cockpit.quantities._gram import GramQuantity
from cockpit.quantities._view import StepStates
from cockpit.stats.ggn_eigen import noise_summary


class CurvatureNoise(GramQuantity):
    """Mean and signal-to-noise ratio of per-sample slopes and curvatures along e_k.

    For each of the GGN's top-k eigenvectors ``e_k`` (as in ``ggn_top_eigen``):
    the per-sample directional curvatures ``e_k^T G_n e_k`` and slopes ``g_n . e_k``
    over the used samples, summarized by their mean and ``mean^2 / variance``
    (unbiased); logged as ``{"curvature_mean": {"1": ...}, "curvature_snr": ...,
    "slope_mean": ..., "slope_snr": ...}``. ``e_k`` is oriented so that the mean slope
    is >= 0. The mean curvature equals ``lambda_k``. Shares the Gram matrices with
    ``ggn_top_eigen`` when both are due with the same options.
    """

    name = "curvature_noise"

    def finalize(self, states: StepStates):
        def finish(gram, cross, n, rtol):
            return noise_summary(gram, cross, n, self.k, rtol)

        return self.gram_on_host(states, finish)
