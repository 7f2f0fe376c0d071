"""Which preset (or option) fills which quantity: the text of missing-data placeholders.

The tracker's presets live in ``cockpit.quantities``, which imports torch; the
dashboard must not, so the mapping is repeated here and checked against the tracker by
the tests.
"""

from __future__ import annotations

__all__ = ["BOOKKEEPING", "KNOWN", "PRESETS", "how_to_fill"]

PRESETS: dict[str, tuple[str, ...]] = {
    "economy": (
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
    "business": ("hess_trace", "tic_diag", "tic_trace"),
    "full": (
        "hess_max_ev",
        "grad_hist_2d",
        "kfac_block",
        "ggn_top_eigen",
        "curvature_noise",
    ),
}
"""Quantities each preset adds to the one before it."""

BY_NAME = ("early_stopping", "cabs")
"""Quantities no preset holds: requested by name, plain SGD only."""

BOOKKEEPING = ("lr", "batch_size", "step_time", "tracker_time")
"""Logged at every tracked step, whatever the preset."""

KNOWN = frozenset(
    [name for names in PRESETS.values() for name in names] + [*BY_NAME, *BOOKKEEPING]
)
"""Every key the tracker logs; any other scalar is a metric the user logged."""


def _preset_of(quantity: str) -> str | None:
    for preset, names in PRESETS.items():
        if quantity in names:
            return preset
    return None


def how_to_fill(quantity: str) -> str:
    """One sentence saying how to get ``quantity`` into a run's log.

    Args:
        quantity: A log key, e.g. ``"hess_max_ev"``.

    Returns:
        E.g. ``"Track it with preset='full' or quantities=['hess_max_ev']."``.

    """
    preset = _preset_of(quantity)
    if preset is not None:
        return f"Track it with preset='{preset}' or quantities=['{quantity}']."
    if quantity in BY_NAME:
        return f"Request it with quantities=['{quantity}'] (plain SGD only)."
    if quantity in BOOKKEEPING:
        return "Logged at every tracked step; none tracked yet."
    return f"Log it yourself with ck.log({quantity}=...)."
