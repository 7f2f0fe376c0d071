"""The presets and the bookkeeping keys: plain data, importable without torch.

The tracker (:mod:`cockpit.quantities`) and the dashboard (``cockpit.instruments``,
which must not import torch) read the same table.
"""

from __future__ import annotations

__all__ = ["BOOKKEEPING", "PRESETS"]

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

#: Per preset, its log keys and each one's default schedule: every k-th step
#: (QUANTITIES.md). ``full`` runs its costly curvature quantities every 10th step;
#: ``quantities=dict.fromkeys(PRESETS["full"], 1)`` runs everything at every step.
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

#: Keys the tracker logs at every tracked step besides the quantities.
BOOKKEEPING = ("lr", "batch_size", "step_time", "tracker_time")
