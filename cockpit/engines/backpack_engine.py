"""BackPACK engine: one backward pass, per-sample statistics reduced per layer.

:class:`PerSampleStats` is a first-order BackPACK extension. For each parameter of a
supported layer it computes the layer's :class:`~cockpit.engines.layer_stats.LayerStats`
inside BackPACK's backward hook and stores them on the parameter (``param.<SAVEFIELD>``),
so per-sample gradients live for one layer at a time. ``Linear`` layers on 2D inputs
use the outer-product factorization and never form per-sample gradients; other layers
use BackPACK's ``BatchGrad`` module extensions (inside
``weight_jac_t_save_memory``, which roughly halves its cost for convolutions).

Hooks are attached only for tracked steps (:func:`attach_hooks`) and removed after, so
untracked steps run the user's model untouched.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterable

from backpack import hook_run_extensions, hook_store_io
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
from torch.utils.hooks import RemovableHandle

from cockpit.engines.layer_stats import (
    LayerStats,
    SampleRequest,
    from_linear_factors,
    from_per_sample,
)

SAVEFIELD = "_cockpit_layer_stats"


class _LinearStats(FirstOrderModuleExtension):
    """``Linear``: factored statistics for 2D inputs, per-sample gradients otherwise."""

    def __init__(self) -> None:
        super().__init__(params=["bias", "weight"])

    @staticmethod
    def _delta(ext: PerSampleStats, g_out: tuple[Tensor, ...]) -> Tensor:
        return g_out[0] * ext.scale(g_out[0].shape[0])

    def weight(self, ext, module, g_inp, g_out, bp_quantities) -> LayerStats:
        start = time.perf_counter()
        delta, x = self._delta(ext, g_out), module.input0
        if x.dim() == 2 and ext.request.hist_budget != 0:
            stats = from_linear_factors(delta, x, module.weight, ext.request)
        else:
            n = x.shape[0]
            per_sample = delta.reshape(n, -1, delta.shape[-1]).transpose(
                1, 2
            ) @ x.reshape(n, -1, x.shape[-1])
            stats = from_per_sample(per_sample, module.weight, ext.request)
        ext.seconds += time.perf_counter() - start
        return stats

    def bias(self, ext, module, g_inp, g_out, bp_quantities) -> LayerStats:
        start = time.perf_counter()
        delta = self._delta(ext, g_out)
        per_sample = delta.reshape(delta.shape[0], -1, delta.shape[-1]).sum(1)
        stats = from_per_sample(per_sample, module.bias, ext.request)
        ext.seconds += time.perf_counter() - start
        return stats


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
            per_sample = getattr(self._batch_grad, name)(
                ext, module, g_inp, g_out, bp_quantities
            )
            per_sample = per_sample * ext.scale(per_sample.shape[0])
            stats = from_per_sample(per_sample, getattr(module, name), ext.request)
            ext.seconds += time.perf_counter() - start
            return stats

        return reduce


def _module_extensions() -> dict[type[nn.Module], FirstOrderModuleExtension]:
    weight_and_bias = ["bias", "weight"]
    return {
        nn.Linear: _LinearStats(),
        nn.Conv1d: _BatchGradStats(conv1d.BatchGradConv1d(), weight_and_bias),
        nn.Conv2d: _BatchGradStats(conv2d.BatchGradConv2d(), weight_and_bias),
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

    def scale(self, batch_size: int) -> int:
        """Factor from BackPACK's gradients of the batch loss to per-sample gradients.

        A mean-reduced loss carries ``1/N`` in its output gradient; a summed one not.
        """
        return batch_size if self.request.mean_reduction else 1


def attach_hooks(modules: Iterable[nn.Module]) -> list[RemovableHandle]:
    """Store the layer inputs and run the extensions on each output's gradient.

    Like ``backpack.extend``, but the handles are returned so the hooks can be removed
    after the tracked step. The extensions run from a hook on the layer's *output
    tensor* rather than a module backward hook: that tolerates in-place operations on
    the output (``ReLU(inplace=True)``), which module backward hooks forbid, and the
    hook receives the gradient w.r.t. the output before the in-place change, which is
    what the first-order extensions consume.
    """
    return [module.register_forward_hook(_store_and_watch) for module in modules]


def _store_and_watch(module: nn.Module, inputs: tuple, output: Tensor) -> None:
    hook_store_io(module, inputs, output)
    if isinstance(output, Tensor) and output.requires_grad:
        output.register_hook(functools.partial(_run_extensions, module))


def _run_extensions(module: nn.Module, grad_output: Tensor) -> None:
    hook_run_extensions(module, (None,), (grad_output,))


def collect(params: dict[str, nn.Parameter]) -> dict[str, LayerStats]:
    """Take the statistics the extension left on the parameters (and remove them)."""
    found = {}
    for name, param in params.items():
        stats = getattr(param, SAVEFIELD, None)
        if stats is not None:
            found[name] = stats
            delattr(param, SAVEFIELD)
    return found
