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

Their transposed Jacobian is autograd's own max-pooling backward kernel
(``max_pool{2,3}d_with_indices_backward``, one call per column ``v``) on those
indices, not BackPACK's ``zeros`` and ``scatter_add_`` over an index tensor expanded
to ``[V, N, C, O]``: the same sums in the same order, so the same bits (3c3d's first
pooling: 3 ms instead of 12). An input stored in another memory layout than
contiguous (channels-last) keeps BackPACK's scatter.
"""

from __future__ import annotations

import torch
from backpack.core.derivatives.maxpool2d import MaxPool2DDerivatives
from backpack.core.derivatives.maxpool3d import MaxPool3DDerivatives
from backpack.utils.subsampling import subsample
from torch import Tensor, nn

#: The backward nodes of the poolings that keep their indices as ``_saved_result1``.
_POOLING_NODES = frozenset(
    {"MaxPool2DWithIndicesBackward0", "MaxPool3DWithIndicesBackward0"}
)

#: Spatial dimensions -> autograd's max-pooling backward kernel, writing into ``out``.
_BACKWARD_KERNELS = {
    2: torch.ops.aten.max_pool2d_with_indices_backward.grad_input,
    3: torch.ops.aten.max_pool3d_with_indices_backward.grad_input,
}


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


def _pool_arguments(module: nn.Module, dims: int) -> tuple:
    """The pooling's ``kernel_size, stride, padding, dilation`` as ``dims``-tuples."""
    return tuple(
        value if isinstance(value, tuple) else (value,) * dims
        for value in (
            module.kernel_size,
            module.stride,
            module.padding,
            module.dilation,
        )
    )


class _SavedIndices:
    """Indices from :func:`saved_indices`, else BackPACK's pooling.

    The transposed Jacobian by autograd's backward kernel on those indices.
    """

    N: int

    def get_pooling_idx(
        self, module: nn.Module, subsampling: list[int] | None = None
    ) -> Tensor:
        indices = saved_indices(module)
        if indices is None:
            return super().get_pooling_idx(module, subsampling=subsampling)  # type: ignore[misc]
        return subsample(indices, subsampling=subsampling)

    def _jac_t_mat_prod(
        self,
        module: nn.Module,
        g_inp: tuple[Tensor, ...],
        g_out: tuple[Tensor, ...],
        mat: Tensor,
        subsampling: list[int] | None = None,
    ) -> Tensor:
        """``(J^T M)[v]``, ``[V, N, C, *in]``: ``M [V, N, C, *out]`` scattered back."""
        input0 = subsample(module.input0, subsampling=subsampling)
        if not input0.is_contiguous():
            return super()._jac_t_mat_prod(  # type: ignore[misc]
                module, g_inp, g_out, mat, subsampling=subsampling
            )
        indices = self.get_pooling_idx(module, subsampling=subsampling)
        arguments = _pool_arguments(module, self.N)
        backward = _BACKWARD_KERNELS[self.N]
        result = mat.new_empty((mat.shape[0], *input0.shape))
        # The ``out=`` form refuses inputs that require grad (a backward pass with
        # ``create_graph=True`` runs the hooks in grad mode); nothing differentiates
        # through the backpropagated factor.
        with torch.no_grad():
            for column, out in zip(mat, result, strict=True):
                backward(
                    column,
                    input0,
                    *arguments,
                    module.ceil_mode,
                    indices,
                    grad_input=out,
                )
        return result


class SavedIndexMaxPool2d(_SavedIndices, MaxPool2DDerivatives):
    """BackPACK's ``MaxPool2d`` derivatives on autograd's saved indices."""


class SavedIndexMaxPool3d(_SavedIndices, MaxPool3DDerivatives):
    """BackPACK's ``MaxPool3d`` derivatives on autograd's saved indices."""
