"""Shared base of the ViViT quantities (``ggn_top_eigen``, ``curvature_noise``)."""

from __future__ import annotations

from typing import Any

import torch

from cockpit._record import OnHost
from cockpit.engines.curvature import CurvatureRequest, GramRequest
from cockpit.exceptions import ConfigurationError
from cockpit.quantities._base import Quantity
from cockpit.quantities._view import StepStates
from cockpit.schedules import Schedule
from cockpit.stats.ggn_eigen import per_sample_scaling


class GramQuantity(Quantity):
    """A quantity from the Gram matrix of the GGN's symmetric factor.

    Cost: the factor has M columns per sample (``exact``: M = C classes; otherwise
    ``mc_samples``), so BackPACK backpropagates ``[M, n, ...]`` and each layer adds
    ``O((M n)^2)`` memory and ``O((M n)^2 D_l)`` time (``Linear`` layers:
    ``O((M n)^2 (in + out))``); the eigen-decomposition of the ``M n x M n`` matrix
    runs on the host. The defaults (one Monte-Carlo column, at most 32 samples) keep
    this small; ``samples=None`` uses the whole batch.

    Args:
        schedule: When it is due.
        k: How many of the largest eigenvalues (at most ``M n``).
        exact: Exact loss-Hessian factor instead of Monte-Carlo.
        mc_samples: Monte-Carlo columns per sample.
        samples: Use the first ``samples`` samples of the batch (``None``: all).

    """

    states = frozenset({"losses", "gram", "mean_reduction"})

    def __init__(
        self,
        schedule: Schedule | int = 1,
        k: int = 4,
        exact: bool = False,
        mc_samples: int = 1,
        samples: int | None = 32,
    ):
        super().__init__(schedule)
        for label, value in (
            ("k", k),
            ("mc_samples", mc_samples),
            ("samples", samples),
        ):
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ConfigurationError(
                    f"{self.name}: {label} must be an int >= 1, got {value!r}."
                )
        if not exact and samples is not None and k > mc_samples * samples:
            raise ConfigurationError(
                f"{self.name}: k={k} eigenvalues, but the GGN factor has at most "
                f"mc_samples * samples = {mc_samples * samples} columns, so the GGN "
                f"has rank <= {mc_samples * samples}. Pass k <= "
                f"{mc_samples * samples}, or raise mc_samples or samples."
            )
        self.k = k
        self.request = GramRequest(exact=exact, mc_samples=mc_samples, samples=samples)

    def options(self) -> dict[str, Any]:
        return {
            "k": self.k,
            "exact": self.request.exact,
            "mc_samples": self.request.mc_samples,
            "samples": self.request.samples,
        }

    def amend_curvature(self, request: CurvatureRequest) -> None:
        request.add_gram(self.request, self.name)

    def gram_on_host(self, states: StepStates, finish) -> OnHost:
        """``finish(gram, cross, n, rtol)`` on the host, in per-sample scaling."""
        part = states["gram"]
        columns, n = part.gram.shape[0], part.cross.shape[0]
        if self.k > columns:
            raise ConfigurationError(
                f"{self.name}: k={self.k} eigenvalues, but at this step the GGN "
                f"factor has {columns} columns ({n} samples x {columns // n} per "
                f"sample), so the GGN has rank <= {columns}. Pass k <= {columns}, or "
                "use more samples or mc_samples."
            )
        rtol = torch.finfo(part.gram.dtype).eps * columns * 10
        batch, mean = states.batch_size, states["mean_reduction"]

        def on_host(gram, cross):
            gram, cross = per_sample_scaling(gram, cross, batch, mean)
            return finish(gram, cross, n, rtol)

        return OnHost(on_host, (part.gram, part.cross), decomposes=True)
