"""One Monte-Carlo GGN factor, backpropagated once for every extension that samples it.

BackPACK's ``DiagGGNMC`` (``hess_trace``, ``tic_diag``, ``tic_trace``), ``KFAC``
(``kfac_block``) and ``SqrtGGNMC`` (ViViT's Gram matrices: ``ggn_top_eigen``,
``curvature_noise``) each draw labels from the model's predictive distribution at
the loss and backpropagate their own factor ``S`` (``[M, N, *output]``, ``M``
Monte-Carlo samples, ``GGN ~ sum_{m,n} J_n^T s_mn s_mn^T J_n``) through every module
by the same rule, ``S_in = J^T S_out``. Where two or more of them are due at one step
with the same ``M``, :func:`shared_extension` backpropagates one factor for all
``N`` samples and hands it, at each parameter, to each extension's own module
extension, which forms from it what it forms from its own factor: the diagonal
``sum_{m,n} (J_n^T s_mn)^2``, KFAC's output factor ``sum_{m,n} s_mn s_mn^T``, the
Gram parts (of the first ``samples`` samples: the factor's first columns, whose
draws are distributed as a sub-sampled ``SqrtGGNMC``'s). The backpropagation runs
once instead of once per extension.

Each estimate keeps its distribution, so each stays unbiased; what changes is their
joint distribution at one step: they come from the same draw, so their Monte-Carlo
errors are correlated (before, each extension drew its own labels).
The results are left under one savefield and handed to the extensions' own
savefields by :func:`unpack` before :func:`~cockpit.engines.curvature.collect`.
"""

from __future__ import annotations

from typing import Any

from backpack.extensions import SqrtGGNMC
from backpack.extensions.backprop_extension import BackpropExtension
from backpack.extensions.module_extension import ModuleExtension
from torch import Tensor, nn

from cockpit.engines._derivatives import cheaper_derivatives
from cockpit.engines._savefield import module_table, take

__all__ = ["SAVEFIELD", "SharedMonteCarlo", "shared_extension", "unpack"]

SAVEFIELD = "_cockpit_shared_mc"


def _first_samples(factor: Tensor, extension: BackpropExtension) -> Tensor:
    """The factor's columns of the samples ``extension`` uses (its sub-sampling)."""
    active = extension.get_subsampling()
    if active is None:
        return factor
    # The Gram extension sub-samples the first samples of the batch.
    assert list(active) == list(range(len(active))), active
    return factor.narrow(1, 0, len(active))


class _Consumers(ModuleExtension):
    """A module's backpropagation by one rule, its parameters by every extension."""

    def __init__(
        self,
        backprop: ModuleExtension,
        consumers: list[tuple[BackpropExtension, ModuleExtension]],
    ):
        self._backprop = backprop
        self._consumers = consumers
        params = sorted({p for _, m in consumers for p in m._ModuleExtension__params})
        for name in params:
            setattr(self, name, self._make(name))
        super().__init__(params=params)

    def _make(self, name: str):
        def each(ext, module, g_inp, g_out, backproped) -> dict[str, Any]:
            return {
                consumer.savefield: getattr(module_ext, name)(
                    consumer,
                    module,
                    g_inp,
                    g_out,
                    _first_samples(backproped, consumer),
                )
                for consumer, module_ext in self._consumers
                if name in module_ext._ModuleExtension__params
            }

        return each

    def backpropagate(self, ext, module, g_inp, g_out, backproped):
        return self._backprop.backpropagate(ext, module, g_inp, g_out, backproped)


class SharedMonteCarlo(SqrtGGNMC):
    """``SqrtGGNMC`` on all samples whose parameters' results are the consumers'.

    Args:
        mc_samples: ``M``, the consumers' common number of Monte-Carlo samples.
        consumers: The extensions sharing the factor (``DiagGGNMC``, ``KFAC``,
            ``SqrtGGNMC``, possibly with cockpit's module extensions). Each must
            draw ``M`` samples and support every module of the model.

    """

    def __init__(self, mc_samples: int, consumers: list[BackpropExtension]):
        super().__init__(mc_samples=mc_samples)
        self.savefield = SAVEFIELD
        rules = module_table(cheaper_derivatives(self))
        backprop = dict(rules)
        rules.clear()
        kinds = set(backprop).intersection(*map(module_table, consumers))
        for kind in kinds:
            parts = [(c, module_table(c)[kind]) for c in consumers]
            rules[kind] = _Consumers(backprop[kind], parts)


def shared_extension(
    consumers: list[BackpropExtension], mc_samples: int
) -> list[BackpropExtension]:
    """``consumers`` as one :class:`SharedMonteCarlo`, or as they are if fewer than 2."""
    if len(consumers) < 2:
        return consumers
    return [SharedMonteCarlo(mc_samples, consumers)]


def unpack(params: dict[str, nn.Parameter]) -> None:
    """Hand each parameter's shared results to the consumers' own savefields."""
    for name, results in take(params, SAVEFIELD).items():
        for savefield, value in results.items():
            setattr(params[name], savefield, value)
