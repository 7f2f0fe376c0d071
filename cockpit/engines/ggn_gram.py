"""ViViT's Gram matrices: the GGN's eigen-structure without the ``D x D`` matrix.

BackPACK's ``SqrtGGNExact``/``SqrtGGNMC`` backpropagate a symmetric factor of the
generalized Gauss-Newton matrix, ``GGN = V V^T`` with ``V [D, M n]`` (M = classes for
the exact factor, MC samples otherwise; n = samples used). Instead of storing each
layer's block of ``V`` (``[M, n, *shape]``, which for a wide layer is far larger than
the layer), the extensions here reduce it in the layer's backward hook to:

- ``gram = V_l^T V_l``, ``[M n, M n]``, whose eigenvalues (summed over layers) are the
  GGN's nonzero eigenvalues (Dangel, Tatzel, Hennig 2022, "ViViT");
- ``cross = G_l V_l``, ``[n, M n]``, with ``G_l [n, D_l]`` the same samples' gradients
  ``grad l_n`` scaled like BackPACK's gradient (``1/N`` for a mean-reduced loss): the
  per-sample slopes along the GGN's eigenvectors come from it.

Both are in BackPACK's scaling (``V`` carries ``1/sqrt(N)`` for a mean-reduced loss,
``N`` the full batch, even with sub-sampling); :mod:`cockpit.stats.ggn_eigen` undoes it.
Index ``m * n + i`` of the ``M n`` axis is factor column m of sample i.

``Linear`` layers on ``[n, in]`` inputs use the outer-product structure
``V_l[m, i] = s_{m,i} x_i^T``: ``gram = (S S^T) * (X X^T)`` tiled over m, so no block of
``V`` is formed. Other layers form the block one layer at a time and reduce it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from backpack.extensions import SqrtGGNExact, SqrtGGNMC
from backpack.extensions.module_extension import ModuleExtension
from torch import Tensor, nn

from cockpit.engines._savefield import module_table, take

SAVEFIELD = "_cockpit_ggn_gram"


@dataclass
class GramPart:
    """One parameter's contribution to the Gram matrices (BackPACK scaling).

    Attributes:
        gram: ``[M n, M n]``, ``V_l^T V_l``.
        cross: ``[n, M n]``, ``G_l V_l`` (per-sample gradients times the factor).

    """

    gram: Tensor
    cross: Tensor


def _active(tensor: Tensor, subsampling: list[int] | None) -> Tensor:
    return tensor if subsampling is None else tensor[subsampling]


def _linear_part(
    ext, module: nn.Linear, g_out: tuple[Tensor, ...], backproped: Tensor, name: str
) -> GramPart:
    """``Linear`` on 2D inputs: Gram matrices from the factors, never from ``V_l``."""
    sub = ext.get_subsampling()
    factors = backproped.flatten(0, 1)  # [M n, out]
    delta = _active(g_out[0], sub)  # [n, out]
    gram = factors @ factors.T
    cross = delta @ factors.T
    if name == "weight":
        x = _active(module.input0, sub)
        repeats = backproped.shape[0]
        inputs = (x @ x.T).repeat(repeats, repeats)
        gram = gram * inputs
        cross = cross * inputs[: x.shape[0]]
    return GramPart(gram=gram, cross=cross)


def _reduce_with(module_ext: ModuleExtension, name: str):
    """A param function that forms ``V_l`` with BackPACK, then reduces it."""
    make_factor = getattr(module_ext, name)

    def gram_part(ext, module, g_inp, g_out, backproped) -> GramPart:
        if isinstance(module, nn.Linear) and module.input0.dim() == 2:
            return _linear_part(ext, module, g_out, backproped, name)
        sub = ext.get_subsampling()
        factor = make_factor(ext, module, g_inp, g_out, backproped).flatten(2)
        grads = module_ext.derivatives.param_mjp(
            name,
            module,
            g_inp,
            g_out,
            _active(g_out[0], sub).unsqueeze(0),
            sum_batch=False,
            subsampling=sub,
        )[0].flatten(1)
        factor = factor.flatten(0, 1)  # [M n, D_l]
        return GramPart(gram=factor @ factor.T, cross=grads @ factor.T)

    return gram_part


def _with_gram_parts(extension):
    """Make ``extension`` save :class:`GramPart` under :data:`SAVEFIELD`."""
    extension.savefield = SAVEFIELD
    for module_ext in module_table(extension).values():
        for name in module_ext._ModuleExtension__params:
            setattr(module_ext, name, _reduce_with(module_ext, name))
    return extension


def gram_extension(
    exact: bool, mc_samples: int, samples: int | None, batch_size: Callable[[], int]
) -> SqrtGGNExact | SqrtGGNMC:
    """The BackPACK extension that leaves a :class:`GramPart` on each parameter.

    Args:
        exact: Exact loss Hessian factor (M = C classes) or Monte-Carlo (M = samples).
        mc_samples: M for the Monte-Carlo factor.
        samples: Use the first ``samples`` samples (``None``: all).
        batch_size: The step's batch size, known once the loss has been computed
            (all samples are used if there are no more than ``samples``).

    """
    ext = SqrtGGNExact() if exact else SqrtGGNMC(mc_samples=mc_samples)

    def subsampling() -> list[int] | None:
        n = batch_size()
        return None if samples is None or samples >= n else list(range(samples))

    ext.get_subsampling = subsampling
    return _with_gram_parts(ext)


def collect(params: dict[str, nn.Parameter]) -> dict[str, GramPart]:
    """Take the Gram parts the extension left on the parameters (and remove them)."""
    return take(params, SAVEFIELD)


def total(parts: dict[str, GramPart]) -> GramPart:
    """The whole network's Gram matrices: the sum over parameters."""
    values = list(parts.values())
    return GramPart(
        gram=torch.stack([p.gram for p in values]).sum(0),
        cross=torch.stack([p.cross for p in values]).sum(0),
    )


__all__ = ["SAVEFIELD", "GramPart", "collect", "gram_extension", "total"]
