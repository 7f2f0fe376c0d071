"""BackPACK engine: one backward pass, per-sample statistics reduced per layer.

:class:`PerSampleStats` is a first-order BackPACK extension. For each parameter of a
supported layer it computes the layer's :class:`~cockpit.engines.layer_stats.LayerStats`
inside BackPACK's backward hook and stores them on the parameter (``param.<SAVEFIELD>``),
so per-sample gradients live for one layer at a time. ``Linear`` layers on 2D inputs
(and every ``Linear`` bias) use the outer-product factorization and never form
per-sample gradients: their hooks keep the two factors, and :func:`collect` reduces
all layers of equal shapes together after the backward pass, so that the work per
step grows with the number of distinct layer shapes rather than the depth; other layers
use BackPACK's ``BatchGrad`` module extensions (inside
``weight_jac_t_save_memory``, which roughly halves its cost for convolutions).
Under autocast, inputs and output gradients are cast to the parameter's dtype first
(:func:`~cockpit.engines.layer_stats.widen`).

Hooks are attached only for tracked steps (:func:`attach_hooks`, from
:mod:`cockpit.engines._backpack_hooks`) and removed after, so untracked steps run the
user's model untouched.
"""

from __future__ import annotations

import time

import torch
from backpack.extensions.firstorder.base import (
    FirstOrderBackpropExtension,
    FirstOrderModuleExtension,
)
from backpack.extensions.firstorder.batch_grad import (
    conv1d,
    conv2d,
    conv3d,
    conv_transpose1d,
    conv_transpose2d,
    conv_transpose3d,
    embedding,
)
from torch import Tensor, nn

from cockpit.engines._backpack_hooks import attach_hooks
from cockpit.engines._linear_factors import Factors, from_linear_factor_groups
from cockpit.engines._savefield import take
from cockpit.engines.layer_stats import (
    CHUNK_ELEMENTS,
    LayerStats,
    SampleRequest,
    from_chunks,
    from_per_sample,
    widen,
)

__all__ = [
    "SAVEFIELD",
    "SUPPORTED_LAYERS",
    "PerSampleStats",
    "attach_hooks",
    "collect",
]

SAVEFIELD = "_cockpit_layer_stats"


class _LinearStats(FirstOrderModuleExtension):
    """``Linear``: factors for 2D inputs and biases, per-sample gradients otherwise.

    The factors are kept, not reduced, in the hook: :func:`collect` reduces all
    layers of equal shapes together once the backward pass is over.
    """

    def __init__(self) -> None:
        super().__init__(params=["bias", "weight"])

    def weight(self, ext, module, g_inp, g_out, bp_quantities) -> LayerStats | Factors:
        start = time.perf_counter()
        (x, out), rounding = widen([module.input0, g_out[0]], module.weight.dtype)
        if x.dim() == 2 and ext.request.hist_budget != 0:
            scale = ext.scale(out.shape[0])
            found = Factors.arrive(out, x, module.weight, ext.request, rounding, scale)
            ext.seconds += time.perf_counter() - start
            return found
        n = x.shape[0]
        delta = out.reshape(n, -1, out.shape[-1])
        x = x.reshape(n, -1, x.shape[-1])
        # The per-sample scale goes on the smaller of the two factors.
        scale = ext.scale(n)
        if x.shape[-1] < delta.shape[-1]:
            x = x * scale
        else:
            delta = delta * scale
        per_sample = delta.transpose(1, 2) @ x
        stats = from_per_sample(per_sample, module.weight, ext.request)
        stats.rounding = rounding
        ext.seconds += time.perf_counter() - start
        return stats

    def bias(self, ext, module, g_inp, g_out, bp_quantities) -> Factors:
        """The bias's per-sample gradient ``delta_n`` is the factor pair (delta, 1)."""
        start = time.perf_counter()
        (out,), rounding = widen([g_out[0]], module.bias.dtype)
        n = out.shape[0]
        if out.dim() > 2:
            out = out.reshape(n, -1, out.shape[-1]).sum(1)
        ones = ext.ones(out, n)
        scale = ext.scale(n)
        found = Factors.arrive(out, ones, module.bias, ext.request, rounding, scale)
        ext.seconds += time.perf_counter() - start
        return found


class _BatchGradStats(FirstOrderModuleExtension):
    """Any layer BackPACK's ``BatchGrad`` supports: per-sample gradients, then reduce."""

    def __init__(self, batch_grad: FirstOrderModuleExtension, params: list[str]):
        self._batch_grad = batch_grad
        for name in params:
            setattr(self, name, self._make(name))
        super().__init__(params=params)

    def _make(self, name: str):
        def reduce(ext, module, g_inp, g_out, bp_quantities) -> LayerStats:
            start = time.perf_counter()
            param = getattr(module, name)
            kept = module.input0
            (module.input0, out), rounding = widen([kept, g_out[0]], param.dtype)
            # Scale the small output gradient, not the large per-sample result.
            scaled = (out * ext.scale(out.shape[0]),)
            try:
                per_sample = getattr(self._batch_grad, name)(
                    ext, module, g_inp, scaled, bp_quantities
                )
            finally:
                module.input0 = kept
            stats = from_per_sample(per_sample, param, ext.request)
            stats.rounding = rounding
            ext.seconds += time.perf_counter() - start
            return stats

        return reduce


class _Conv2dStats(_BatchGradStats):
    """``Conv2d``: per-sample weight gradients chunk by chunk when P <= 2 out.

    The per-sample weight gradient is ``delta_n [out, P] @ unfold(x_n)^T [P, in k^2]``
    over the P output positions. When ``P <= 2 out`` the unfolded input is at most
    twice the result, and batched matrix products over chunks of samples beat
    BackPACK's grouped convolution on a CPU (on the 3c3d CNN's third convolution:
    14 vs 70 ms). Each chunk is reduced at once (:func:`from_chunks`), so the
    ``[N, D_l]`` per-sample gradients never exist. A projection needed after
    ``optimizer.step()`` (alpha) uses ``g_n . V = <delta_n, conv(x_n, V)>``: one
    forward convolution with V as the weight, from the kept input and output
    gradient. Otherwise, and for grouped convolutions, BackPACK's ``BatchGrad``
    computes the per-sample gradients.
    """

    def __init__(self) -> None:
        super().__init__(conv2d.BatchGradConv2d(), ["bias", "weight"])
        self._batch_grad_weight = self.weight
        self.weight = self._weight

    def _weight(self, ext, module, g_inp, g_out, bp_quantities) -> LayerStats:
        delta = g_out[0]
        n, d_out = delta.shape[:2]
        positions = delta[0, 0].numel()
        if module.groups != 1 or positions > 2 * d_out:
            return self._batch_grad_weight(ext, module, g_inp, g_out, bp_quantities)
        start = time.perf_counter()
        weight = module.weight
        # Detached: the projection may run after backward with grad mode on.
        (x, delta), rounding = widen([module.input0.detach(), delta], weight.dtype)
        geometry = {
            "stride": module.stride,
            "padding": module.padding,
            "dilation": module.dilation,
        }
        scale = ext.scale(n)
        grad = nn.grad.conv2d_weight(x, weight.shape, delta, **geometry) * (scale / n)
        scaled = delta.flatten(2) * scale
        unfold_rows = weight[0].numel()
        chunk = max(1, CHUNK_ELEMENTS // (unfold_rows * max(positions, d_out)))
        buffer = delta.new_empty((chunk, d_out, unfold_rows))

        def per_sample(rows: slice) -> Tensor:
            unfolded = nn.functional.unfold(
                x[rows], module.kernel_size, **geometry
            ).transpose(1, 2)
            out = buffer[: unfolded.shape[0]]
            return torch.bmm(scaled[rows], unfolded, out=out).flatten(1)

        def project(direction: Tensor) -> Tensor:
            response = nn.functional.conv2d(x, direction.view_as(weight), **geometry)
            return (response.flatten(2) * scaled).sum((1, 2))

        stats = from_chunks(
            per_sample, project, n, chunk, grad.reshape(-1), weight, ext.request
        )
        stats.rounding = rounding
        ext.seconds += time.perf_counter() - start
        return stats


def _module_extensions() -> dict[type[nn.Module], FirstOrderModuleExtension]:
    weight_and_bias = ["bias", "weight"]
    return {
        nn.Linear: _LinearStats(),
        nn.Conv1d: _BatchGradStats(conv1d.BatchGradConv1d(), weight_and_bias),
        nn.Conv2d: _Conv2dStats(),
        nn.Conv3d: _BatchGradStats(conv3d.BatchGradConv3d(), weight_and_bias),
        nn.ConvTranspose1d: _BatchGradStats(
            conv_transpose1d.BatchGradConvTranspose1d(), weight_and_bias
        ),
        nn.ConvTranspose2d: _BatchGradStats(
            conv_transpose2d.BatchGradConvTranspose2d(), weight_and_bias
        ),
        nn.ConvTranspose3d: _BatchGradStats(
            conv_transpose3d.BatchGradConvTranspose3d(), weight_and_bias
        ),
        nn.Embedding: _BatchGradStats(embedding.BatchGradEmbedding(), ["weight"]),
    }


#: Layer types whose parameters this engine gives per-sample statistics for.
SUPPORTED_LAYERS: tuple[type[nn.Module], ...] = tuple(_module_extensions())


class PerSampleStats(FirstOrderBackpropExtension):
    """BackPACK extension that leaves :class:`LayerStats` on each parameter.

    Args:
        request: What the due quantities need at this step.

    """

    def __init__(self, request: SampleRequest):
        super().__init__(savefield=SAVEFIELD, module_exts=_module_extensions())
        self.request = request
        self.seconds = 0.0
        self._ones: dict[tuple, Tensor] = {}

    def ones(self, like: Tensor, n: int) -> Tensor:
        """``[N, 1]`` ones, the input factor of every bias: one tensor per step."""
        key = (n, like.dtype, like.device)
        if key not in self._ones:
            self._ones[key] = like.new_ones(n, 1)
        return self._ones[key]

    def scale(self, batch_size: int) -> int | Tensor:
        """Factor from BackPACK's gradients of the batch loss to per-sample gradients.

        See :meth:`~cockpit.engines.layer_stats.SampleRequest.scale`.
        """
        return self.request.scale(batch_size)


def collect(
    params: dict[str, nn.Parameter], request: SampleRequest
) -> dict[str, LayerStats]:
    """Take the statistics the extension left on the parameters (and remove them).

    ``Linear`` layers left their factors: they are reduced here, all layers of equal
    shapes in one batched operation (:func:`from_linear_factor_groups`).
    """
    found = take(params, SAVEFIELD)
    pending = {n: f for n, f in found.items() if isinstance(f, Factors)}
    reduced = from_linear_factor_groups(list(pending.values()), request)
    found.update(zip(pending, reduced, strict=True))
    return found
