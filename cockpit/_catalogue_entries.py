"""The catalogue's table: one :class:`~cockpit.catalog.Entry` per log key.

Read it through :mod:`cockpit.catalog`, which derives the lookups from it. The order
is the dashboard's: group by group, instrument by instrument.
"""

from __future__ import annotations

from cockpit._catalogue_types import KRONECKER, PLAIN_SGD, Entry

__all__ = ["CATALOGUE"]


def _gradient_test(where: str, what: str) -> str:
    return (
        f"The spread of the per-sample gradients {where} the batch gradient, relative "
        f"to its length: above 1 the batch is too small to trust {what} (use a larger "
        "batch); far below 1 a smaller batch would do."
    )


_TIC = (
    "Gradient noise measured against curvature; near a minimum it has been proposed as "
    "an estimate of the generalization gap, so compare runs late in training, not "
    "early."
)
_DIRECTIONS = (
    "Directions with high curvature but an SNR below 1 are where second-order steps or "
    "aggressive learning rates cannot be trusted at this batch size: the noise that "
    "makes Newton-type methods fragile."
)

CATALOGUE: tuple[Entry, ...] = (
    Entry(
        "alpha",
        "step_size",
        "alpha",
        "Alpha (normalized step size)",
        "Near 0 the step lands on the valley floor of the local quadratic; clearly "
        "above 0 it overshoots (learning rate large for the curvature), near -1 it "
        "barely moves. Well-tuned SGD often sits a little above 0.",
        preset="economy",
    ),
    Entry(
        "distance",
        "step_size",
        "distance",
        "Distance from the initialization",
        "Steady growth is normal; growth while the loss stalls hints at drifting "
        "(often a learning rate too large).",
        preset="economy",
    ),
    Entry(
        "update_size",
        "step_size",
        "distance",
        "Update size",
        "The length of each step: update sizes that collapse mean training has "
        "stopped moving.",
        preset="economy",
    ),
    Entry(
        "input_scale",
        "step_size",
        "input_scale",
        "Input scale",
        "Root mean square of the model's input elements: near 1 or below for "
        "normalized inputs; far above (images fed as 0-255 pixels) the inputs were "
        "left unnormalized, and the first layer's gradients are inflated.",
        preset="economy",
    ),
    Entry(
        "param_norm",
        "step_size",
        "param_norm",
        "Parameter norm",
        "Weight growth: without weight decay the norms usually grow steadily, with "
        "strong weight decay they shrink; compare the layers to see which ones grow "
        "or collapse.",
        preset="full",
    ),
    Entry(
        "lr",
        "step_size",
        "lr",
        "Learning rate",
        "The schedule as the optimizer applied it: read the other panels' changes "
        "against its warm-ups, decays and restarts.",
        bookkeeping=True,
    ),
    Entry(
        "grad_norm",
        "gradients",
        "grad_norm",
        "Gradient norm",
        "A norm that stays small while the updates are small suggests a flat region "
        "rather than a bad learning rate; one layer exploding or stuck at zero names "
        "the layer at fault.",
        preset="economy",
    ),
    Entry(
        "norm_test",
        "gradients",
        "gradient_tests",
        "Norm test",
        _gradient_test("around", "the gradient"),
        preset="economy",
    ),
    Entry(
        "inner_product_test",
        "gradients",
        "gradient_tests",
        "Inner-product test",
        _gradient_test("along", "the gradient's length"),
        preset="economy",
    ),
    Entry(
        "orthogonality_test",
        "gradients",
        "gradient_tests",
        "Orthogonality test",
        _gradient_test("across", "the gradient's direction"),
        preset="economy",
    ),
    Entry(
        "grad_hist_1d",
        "gradients",
        "grad_hist_1d",
        "Gradient element histogram",
        "A spike at exactly 0 with thin tails signals dead units or detached "
        "parameters; heavy or growing tails signal exploding gradients or outliers in "
        "the data.",
        preset="economy",
    ),
    Entry(
        "grad_hist_2d",
        "gradients",
        "grad_hist_2d",
        "Parameter vs gradient density",
        "Large gradients on parameters near zero, or parameters piling up at large "
        "magnitudes, point to the weights that drive instability.",
        preset="full",
    ),
    Entry(
        "mean_gsnr",
        "gradients",
        "mean_gsnr",
        "Gradient signal-to-noise ratio",
        "Higher means the per-sample gradients agree; a collapse means the mini-batch "
        "gradient is mostly noise (a larger GSNR has been linked to better "
        "generalization).",
        preset="economy",
    ),
    Entry(
        "gradient_noise_scale",
        "gradients",
        "gradient_noise_scale",
        "Gradient noise scale",
        "A batch far below the noise scale spends its steps on noise; far above it "
        "wastes compute (the critical batch size tracks the noise scale). Steps where "
        "noise swamps the signal are left out.",
        preset="economy",
    ),
    Entry(
        "cabs",
        "gradients",
        "gradient_noise_scale",
        "CABS batch size",
        "The batch size CABS suggests for plain SGD at this learning rate, to compare "
        "with the batch size used.",
        only=PLAIN_SGD,
    ),
    Entry(
        "batch_size",
        "gradients",
        "gradient_noise_scale",
        "Batch size",
        "The batch size used, to compare with the noise scale and CABS.",
        bookkeeping=True,
    ),
    Entry(
        "hess_max_ev",
        "curvature",
        "hess_max_ev",
        "Hessian top eigenvalue",
        "The sharpest direction of the loss surface: for plain gradient descent a top "
        "eigenvalue above 2/lr is unstable, and training at the edge of stability "
        "hovers near that line. Crosses mark estimates that did not converge.",
        preset="full",
        every=10,
    ),
    Entry(
        "hess_trace",
        "curvature",
        "hess_trace",
        "Hessian trace",
        "The total curvature: rising means a narrower valley, and the per-layer map "
        "shows where the curvature lives; with the top eigenvalue it gives a rough "
        "picture of the conditioning.",
        preset="business",
    ),
    Entry("tic_diag", "curvature", "tic", "TIC (diagonal)", _TIC, preset="business"),
    Entry("tic_trace", "curvature", "tic", "TIC (trace)", _TIC, preset="business"),
    Entry(
        "kfac_block",
        "curvature",
        "kfac_block",
        "Layer stiffness (KFAC blocks)",
        "The stiffest and worst-conditioned layers (condition over the nonzero "
        "spectrum: most blocks are singular) are where one learning rate for all "
        "layers hurts most: candidates for per-layer learning rates or normalization.",
        preset="full",
        every=10,
        only=KRONECKER,
    ),
    Entry(
        "ggn_top_eigen",
        "curvature",
        "ggn_top_eigen",
        "Top GGN eigenvalues",
        _DIRECTIONS,
        preset="full",
        every=10,
    ),
    Entry(
        "curvature_noise",
        "curvature",
        "ggn_top_eigen",
        "Curvature and slope noise along the top GGN directions",
        _DIRECTIONS,
        preset="full",
        every=10,
    ),
    Entry(
        "loss",
        "performance",
        "loss",
        "Loss",
        "The mini-batch loss with the spread of the per-sample losses around it, next "
        "to what you logged yourself: a validation loss that rises while the training "
        "loss falls means overfitting.",
        preset="economy",
    ),
    Entry(
        "early_stopping",
        "performance",
        "early_stopping",
        "Early stopping",
        "Above 0 the gradient cannot be told apart from noise at this batch size: more "
        "training on this data mostly fits noise, so consider stopping.",
        only=PLAIN_SGD,
    ),
    Entry(
        "step_time",
        "overhead",
        "overhead",
        "Step time",
        "The wall time of each tracked step, to read the tracker's time against.",
        bookkeeping=True,
    ),
    Entry(
        "tracker_time",
        "overhead",
        "overhead",
        "Tracker time",
        "The time the tracker spent in each step: what the instruments cost.",
        bookkeeping=True,
    ),
    Entry(
        "overhead_share",
        "overhead",
        "overhead",
        "Measured overhead share",
        "Under an overhead budget: the share of the wall time the tracker took over "
        "the run so far, calibration included, measured against untracked steps, "
        "the log writer's CPU time included; it should stay at or under the budget.",
        bookkeeping=True,
    ),
)
"""Every log key, in the dashboard's order."""
