"""``ggn_top_eigen``: the largest eigenvalues of the mini-batch GGN (ViViT)."""

from __future__ import annotations

from cockpit.quantities._context import StepContext
from cockpit.quantities._gram import GramQuantity
from cockpit.stats.ggn_eigen import top_eigen


class GgnTopEigen(GramQuantity):
    """The k largest eigenvalues of the GGN of the mean loss over the used samples.

    From the eigenvalues of the ``M n x M n`` Gram matrix ``(1/n) V^T V`` of the
    GGN's factor (Dangel, Tatzel, Hennig 2022), never the ``D x D`` GGN; logged as
    ``{"1": lambda_1, ..., "k": lambda_k}``, descending. Options and costs: see
    :class:`~cockpit.quantities._gram.GramQuantity`.
    """

    name = "ggn_top_eigen"

    def compute(self, ctx: StepContext):
        def finish(gram, cross, n, rtol):
            values, _ = top_eigen(gram, n, self.k)
            return {str(i + 1): float(v) for i, v in enumerate(values)}

        return self.gram_on_host(ctx, finish)
