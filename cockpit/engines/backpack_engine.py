"""BackPACK engine: one backward pass, per-sample statistics reduced per layer.

:class:`PerSampleStats` is a first-order BackPACK extension. For each parameter of a
supported layer it computes the layer's :class:`~cockpit.engines.layer_stats.LayerStats`
inside BackPACK's backward hook and stores them on the parameter (``param.<SAVEFIELD>``),
so per-sample gradients live for one layer at a time. ``Linear`` layers on 2D inputs
(and every ``Linear`` bias) use the outer-product factorization and never form
per-sample gradients: their hooks keep the two factors, and :func:`collect` reduces
all layers of equal shapes together after the backward pass, so that the work per
step grows with the number of distinct layer shapes rather than the depth. Every
convolution's bias is such a factor pair too, and ungrouped ``Conv2d`` weights keep
their input and output gradient, reduced by :func:`collect` with the layer's gradient
from autograd (:mod:`cockpit.engines._conv_factors`). Other layers use BackPACK's
``BatchGrad`` module extensions (inside ``weight_jac_t_save_memory``, which roughly
halves its cost for convolutions).
Under autocast, inputs and output gradients are cast to the parameter's dtype first
(:func:`~cockpit.engines.layer_stats.widen`).

Hooks are attached only for tracked steps (:func:`attach_hooks`, from
:mod:`cockpit.engines._backpack_hooks`) and removed after, so untracked steps run the
user's model untouched.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterable

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

from cockpit.engines._backpack_hooks import DirectCapture, DirectHandler, attach_hooks
from cockpit.engines._conv_factors import ConvFactors, factor_route, reduce_all
from cockpit.engines._linear_factors import Factors, from_linear_factor_groups
from cockpit.engines._savefield import take
from cockpit.engines.layer_stats import (
    LayerStats,
    SampleRequest,
    from_per_sample,
    widen,
)

__all__ = [
    "SAVEFIELD",
    "SUPPORTED_LAYERS",
    "DirectCapture",
    "PerSampleStats",
    "attach_hooks",
    "collect",
]

SAVEFIELD = "_cockpit_layer_stats"


class _LinearStats(FirstOrderModuleExtension):
    """``Linear``: factors for 2D inputs and biases, per-sample gradients otherwise.

    The factors are kept, not reduced, in the hook: :func:`collect` reduces all
    layers of equal shapes together once the backward pass is over. Where no other
    extension needs BackPACK, the same functions run without BackPACK: after the
    backward pass for ``[N, in]`` inputs (:meth:`PerSampleStats.linear_layers`),
    in the hook otherwise (:meth:`PerSampleStats.linear`).
    """

    def __init__(self) -> None:
        super().__init__(params=["bias", "weight"])

    def weight(self, ext, module, g_inp, g_out, bp_quantities) -> LayerStats | Factors:
        start = time.perf_counter()
        found = _linear_weight(ext, module.weight, module.input0, g_out[0])
        ext.seconds += time.perf_counter() - start
        return found

    def bias(self, ext, module, g_inp, g_out, bp_quantities) -> Factors:
        start = time.perf_counter()
        found = _linear_bias(ext, module.bias, g_out[0])
        ext.seconds += time.perf_counter() - start
        return found


def _linear_weight(
    ext: PerSampleStats, weight: Tensor, x: Tensor, out: Tensor
) -> LayerStats | Factors:
    """The weight's factors ``(delta [N, out], x [N, in])``, or its statistics.

    Inputs with more than one position per sample (``[N, T, in]``) form the
    per-sample gradients ``sum_t delta_{n,t} x_{n,t}^T`` and reduce them here.
    """
    (x, out), rounding = widen([x, out], weight.dtype)
    if x.dim() == 2 and ext.request.hist_budget != 0:
        scale = ext.scale(out.shape[0])
        return Factors(out, x, weight, rounding, scale)
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
    stats = from_per_sample(per_sample, weight, ext.request)
    stats.rounding = rounding
    return stats


def _linear_bias(ext: PerSampleStats, bias: Tensor, out: Tensor) -> Factors:
    """The bias's per-sample gradient ``delta_n``: the factors ``(delta, None)``."""
    (out,), rounding = widen([out], bias.dtype)
    n = out.shape[0]
    if out.dim() > 2:
        out = out.reshape(n, -1, out.shape[-1]).sum(1)
    return Factors(out, None, bias, rounding, ext.scale(n))


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


class _ConvStats(_BatchGradStats):
    """Convolutions: biases as factors; ``Conv2d`` weights as factors where cheaper.

    A convolution's per-sample bias gradient is its output gradient summed over the
    output positions, ``delta_n.sum(positions)`` (``[p]``): it becomes the factor
    pair ``(delta_n, 1)`` of a ``Linear`` bias and is reduced with them. A ``Conv2d``
    weight on the factor route (:func:`~cockpit.engines._conv_factors.factor_route`)
    keeps its input and output gradient (:class:`ConvFactors`), reduced by
    :func:`collect`; other weights get BackPACK's ``BatchGrad``.
    """

    def __init__(self, batch_grad: FirstOrderModuleExtension, params: list[str]):
        super().__init__(batch_grad, params)
        self._batch_grad_weight = self.weight
        self.weight = self._weight
        self.bias = self._bias

    def _weight(self, ext, module, g_inp, g_out, bp_quantities):
        delta = g_out[0]
        if not isinstance(module, nn.Conv2d) or not factor_route(module):
            return self._batch_grad_weight(ext, module, g_inp, g_out, bp_quantities)
        start = time.perf_counter()
        scale = ext.scale(delta.shape[0])
        found = ConvFactors.arrive(module, delta, ext.request, scale)
        ext.seconds += time.perf_counter() - start
        return found

    def _bias(self, ext, module, g_inp, g_out, bp_quantities) -> Factors:
        start = time.perf_counter()
        (out,), rounding = widen([g_out[0]], module.bias.dtype)
        n = out.shape[0]
        summed = out.flatten(2).sum(2)
        scale = ext.scale(n)
        found = Factors(summed, None, module.bias, rounding, scale)
        ext.seconds += time.perf_counter() - start
        return found


@functools.cache
def _module_extensions() -> dict[type[nn.Module], FirstOrderModuleExtension]:
    """One set of module extensions, shared by every step's :class:`PerSampleStats`.

    They hold no state of a step (that is on the extension they are called with),
    and building them anew cost about 25 microseconds of Python per tracked step.
    """
    weight_and_bias = ["bias", "weight"]
    return {
        nn.Linear: _LinearStats(),
        nn.Conv1d: _ConvStats(conv1d.BatchGradConv1d(), weight_and_bias),
        nn.Conv2d: _ConvStats(conv2d.BatchGradConv2d(), weight_and_bias),
        nn.Conv3d: _ConvStats(conv3d.BatchGradConv3d(), weight_and_bias),
        nn.ConvTranspose1d: _ConvStats(
            conv_transpose1d.BatchGradConvTranspose1d(), weight_and_bias
        ),
        nn.ConvTranspose2d: _ConvStats(
            conv_transpose2d.BatchGradConvTranspose2d(), weight_and_bias
        ),
        nn.ConvTranspose3d: _ConvStats(
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
        #: ``batch_size -> factor`` from BackPACK's gradients of the batch loss to
        #: per-sample gradients (:meth:`SampleRequest.scale`), bound here: no
        #: wrapper call per layer.
        self.scale: Callable[[int], int | Tensor] = request.scale
        self.seconds = 0.0

    def direct(self) -> dict[type[nn.Module], DirectHandler]:
        """Layer types whose statistics need no BackPACK, run in the backward pass.

        For the inputs :class:`DirectCapture` does not defer (``[N, T, in]``): timed
        into :attr:`seconds`, as BackPACK's hooks are.
        """
        return {nn.Linear: self.linear}

    def linear_layers(
        self,
        layers: Iterable[tuple[nn.Module, Tensor, Tensor]],
        on_error: Callable[[nn.Module, Exception], None],
    ) -> None:
        """:meth:`linear_params` on ``(module, x [N, in], output gradient)`` triples.

        Run after the backward pass (:class:`DirectCapture`), in the order the
        gradients arrived, and not timed here (the block's exit is). Where the input,
        output gradient and parameters share a dtype and a histogram sample is
        drawn (or none is due), each parameter keeps its factors with the step's
        scale; otherwise :meth:`linear_params` widens them or forms per-sample
        gradients. An error on a layer goes to ``on_error`` and the others go on.
        """
        factors = self.request.hist_budget != 0
        last, scale = None, 1
        for module, x, out in layers:
            try:
                bias, weight = module.bias, module.weight
                dtype = weight.dtype
                if not (
                    factors
                    and x.dtype == dtype
                    and out.dtype == dtype
                    and (bias is None or bias.dtype == dtype)
                ):
                    self.linear_params(module, x, out)
                    continue
                n = out.shape[0]
                # One scale per batch size, dtype and device, not per layer (a
                # Python call each).
                if (n, dtype, out.device) != last:
                    last = (n, dtype, out.device)
                    scale = self.scale(n)
                if bias is not None and bias.requires_grad:
                    setattr(bias, SAVEFIELD, Factors(out, None, bias, 0.0, scale))
                if weight.requires_grad:
                    setattr(weight, SAVEFIELD, Factors(out, x, weight, 0.0, scale))
            except Exception as error:
                on_error(module, error)

    def linear(self, module: nn.Module, x: Tensor, grad_output: Tensor) -> None:
        """:meth:`linear_params`, timed into :attr:`seconds`."""
        start = time.perf_counter()
        self.linear_params(module, x, grad_output)
        self.seconds += time.perf_counter() - start

    def linear_params(self, module: nn.Module, x: Tensor, grad_output: Tensor) -> None:
        """What ``_LinearStats`` leaves on a ``Linear``'s parameters, without BackPACK.

        Bias first, then weight: BackPACK's order.
        """
        bias, weight = module.bias, module.weight
        if isinstance(bias, Tensor) and bias.requires_grad:
            setattr(bias, SAVEFIELD, _linear_bias(self, bias, grad_output))
        if isinstance(weight, Tensor) and weight.requires_grad:
            setattr(weight, SAVEFIELD, _linear_weight(self, weight, x, grad_output))


def collect(
    params: dict[str, nn.Parameter],
    request: SampleRequest,
    grads: dict[str, Tensor],
) -> dict[str, LayerStats]:
    """Take the statistics the extension left on the parameters (and remove them).

    ``Linear`` layers and biases left their factors: they are reduced here, all
    layers of equal shapes in one batched operation (:func:`from_linear_factor_groups`).
    ``Conv2d`` weights left theirs too, reduced with their mini-batch gradient from
    ``grads`` (:func:`~cockpit.engines._conv_factors.reduce_all`).

    Args:
        params: Parameter name -> parameter.
        request: What the statistics hold.
        grads: Parameter name -> flat gradient of the mean loss ``[D_l]``.

    """
    found = take(params, SAVEFIELD)
    pending = {n: f for n, f in found.items() if isinstance(f, Factors)}
    reduced = from_linear_factor_groups(list(pending.values()), request)
    found.update(zip(pending, reduced, strict=True))
    convolutions = {n: f for n, f in found.items() if isinstance(f, ConvFactors)}
    found.update(reduce_all(convolutions, grads, request))
    return found
