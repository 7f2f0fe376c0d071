"""Max-pooling Jacobians from the indices autograd saved, not from a second pooling.

A max-pooling layer ``y = maxpool(x)`` has the Jacobian of a selection: each output
element ``y[n, c, o]`` is the input element ``x[n, c, idx[n, c, o]]``, so

    (J^T M)[v, n, c, i] = sum_{o : idx[n, c, o] = i} M[v, n, c, o]

(a scatter-add of ``M [V, N, C, O]`` by ``idx [N, C, O]``), and ``J M`` is the gather.
BackPACK's derivatives find ``idx`` by pooling the stored input a second time with
``return_indices=True``: on 3c3d's business step that second pooling was the largest
part of the max-pooling Jacobians (``benchmarks/results/convecon/README.md``).
Autograd already holds the same indices: the forward pass of ``max_pool2d`` and
``max_pool3d`` with gradients runs ``max_pool{2,3}d_with_indices``, whose backward
node keeps them as ``_saved_result1``. :class:`SavedIndexMaxPool2d` and
:class:`SavedIndexMaxPool3d` read them from the layer's output's ``grad_fn``.

They fall back to BackPACK's second pooling (the same indices, only slower) when the
node is not there or not the pooling's: an output changed in place afterwards
(``ReLU(inplace=True)`` after the pooling makes the output's ``grad_fn`` the ReLU's),
a pooling without gradients, or a saved tensor already freed (BackPACK's own module
backward hooks run after the pooling's node; the tracker's hooks on the output's
gradient run before it).
"""

from __future__ import annotations

from backpack.core.derivatives.maxpool2d import MaxPool2DDerivatives
from backpack.core.derivatives.maxpool3d import MaxPool3DDerivatives
from backpack.extensions.backprop_extension import BackpropExtension
from backpack.utils.subsampling import subsample
from torch import Tensor, nn

from cockpit.engines._savefield import module_table

#: The backward nodes of the poolings that keep their indices as ``_saved_result1``.
_POOLING_NODES = frozenset(
    {"MaxPool2DWithIndicesBackward0", "MaxPool3DWithIndicesBackward0"}
)


def saved_indices(module: nn.Module) -> Tensor | None:
    """The indices ``[N, C, *out]`` autograd saved for ``module.output``, if any.

    ``None`` where the output's ``grad_fn`` is not the pooling's own node (see the
    module docstring) or its indices do not have the output's shape.
    """
    output = getattr(module, "output", None)
    node = getattr(output, "grad_fn", None)
    if type(node).__name__ not in _POOLING_NODES:
        return None
    try:
        indices = node._saved_result1
    except RuntimeError:  # freed after the node's backward ran
        return None
    if not isinstance(indices, Tensor) or indices.shape != output.shape:
        return None
    return indices


class _SavedIndices:
    """``get_pooling_idx`` from :func:`saved_indices`, else BackPACK's pooling."""

    def get_pooling_idx(
        self, module: nn.Module, subsampling: list[int] | None = None
    ) -> Tensor:
        indices = saved_indices(module)
        if indices is None:
            return super().get_pooling_idx(module, subsampling=subsampling)  # type: ignore[misc]
        return subsample(indices, subsampling=subsampling)


class SavedIndexMaxPool2d(_SavedIndices, MaxPool2DDerivatives):
    """BackPACK's ``MaxPool2d`` derivatives on autograd's saved indices."""


class SavedIndexMaxPool3d(_SavedIndices, MaxPool3DDerivatives):
    """BackPACK's ``MaxPool3d`` derivatives on autograd's saved indices."""


#: Module class -> (BackPACK's derivatives class, the replacement).
_REPLACEMENTS = {
    nn.MaxPool2d: (MaxPool2DDerivatives, SavedIndexMaxPool2d),
    nn.MaxPool3d: (MaxPool3DDerivatives, SavedIndexMaxPool3d),
}


def reuse_saved_pool_indices(extension: BackpropExtension) -> BackpropExtension:
    """Give ``extension``'s max-pooling module extensions the saved-index derivatives.

    Only module extensions holding BackPACK's own pooling derivatives are changed
    (in place: each extension object has its own module extension instances).
    Returns ``extension``.
    """
    table = module_table(extension)
    for module_class, (original, replacement) in _REPLACEMENTS.items():
        module_extension = table.get(module_class)
        if type(getattr(module_extension, "derivatives", None)) is original:
            module_extension.derivatives = replacement()
    return extension
