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
from collections.abc import Callable, Iterable

import torch
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

from cockpit.engines._savefield import take
from cockpit.engines.curvature import CHAIN_BROKEN
from cockpit.engines.layer_stats import (
    CHUNK_ELEMENTS,
    LayerStats,
    SampleRequest,
    from_chunks,
    from_linear_factors,
    from_per_sample,
)
from cockpit.exceptions import UnsupportedModelError, UsageError

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
        x = module.input0
        if x.dim() == 2 and ext.request.hist_budget != 0:
            delta = self._delta(ext, g_out)
            stats = from_linear_factors(delta, x, module.weight, ext.request)
        else:
            n = x.shape[0]
            delta = g_out[0].reshape(n, -1, g_out[0].shape[-1])
            x = x.reshape(n, -1, x.shape[-1])
            # The per-sample scale goes on the smaller of the two factors.
            scale = ext.scale(n)
            if x.shape[-1] < delta.shape[-1]:
                x = x * scale
            else:
                delta = delta * scale
            per_sample = delta.transpose(1, 2) @ x
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
            # Scale the small output gradient, not the large per-sample result.
            scaled = (g_out[0] * ext.scale(g_out[0].shape[0]),)
            per_sample = getattr(self._batch_grad, name)(
                ext, module, g_inp, scaled, bp_quantities
            )
            stats = from_per_sample(per_sample, getattr(module, name), ext.request)
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
        # Detached: the projection may run after backward with grad mode on.
        x, weight = module.input0.detach(), module.weight
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

    def scale(self, batch_size: int) -> int:
        """Factor from BackPACK's gradients of the batch loss to per-sample gradients.

        A mean-reduced loss carries ``1/N`` in its output gradient; a summed one not.
        """
        return batch_size if self.request.mean_reduction else 1


def attach_hooks(
    modules: Iterable[nn.Module],
    keep_outputs: bool = False,
    loss_fn: nn.Module | None = None,
    sampling_seed: Callable[[], int] | None = None,
    reused: set[int] | None = None,
    broken: list[nn.Module] | None = None,
    failed: dict[int, str] | None = None,
) -> list[RemovableHandle]:
    """Store the layer inputs and run the extensions on each output's gradient.

    Like ``backpack.extend``, but the handles are returned so the hooks can be removed
    after the tracked step. The extensions run from a hook on the layer's *output
    tensor* rather than a module backward hook: that tolerates in-place operations on
    the output (``ReLU(inplace=True)``), which module backward hooks forbid, and the
    hook receives the gradient w.r.t. the output before the in-place change, which is
    what the extensions consume.

    Args:
        modules: The modules to hook.
        keep_outputs: Keep each module's output (second-order extensions link
            modules through it); otherwise a storage-free stand-in is kept.
        loss_fn: The loss module, hooked too (second-order extensions start there).
        sampling_seed: Seeds the random draws of Monte-Carlo extensions at the loss
            module, inside a fork of the global random state.
        reused: If given, a module that runs twice is added to it (by ``id``) and
            its extensions are skipped, instead of an error; the caller computes
            its parameters' statistics otherwise.
        broken: If given, modules where a second-order extension found the chain of
            modules broken are appended to it, instead of an error.
        failed: If given, an extension that raises on a module (a call without
            batch dimension, say an embedding of ``arange(T)``) records the error
            here by the module's ``id`` and the backward pass goes on, instead of
            the error stopping it.

    Raises:
        UsageError: From the forward pass, if a module runs twice in one tracked
            step (a reused module) and ``reused`` is not given: its stored input
            would be overwritten and its statistics wrong.
        UnsupportedModelError: From the backward pass, if a second-order extension
            finds the chain of modules broken and ``broken`` is not given.

    """
    seen: set[int] = set()
    skip = reused if reused is not None else set()

    def store_and_watch(module: nn.Module, inputs: tuple, output: Tensor) -> None:
        if id(module) in seen:
            if reused is not None:
                reused.add(id(module))
                return
            raise UsageError(
                f"{type(module).__name__} module {module} ran twice in one tracked "
                "step: a second forward pass in the block, or a module reused inside "
                "one. engine='backpack' needs each hooked module to run once per "
                "step; use engine='auto' or engine='torch.func' for reused modules."
            )
        seen.add(id(module))
        hook_store_io(module, inputs, output)
        if not keep_outputs:
            # BackPACK's first-order derivatives read only the output's shape;
            # holding the output would keep it alive through the backward pass
            # (25 MB for the first convolution of the 3c3d CNN).
            module.output = torch.empty_like(output, device="meta")
        if isinstance(output, Tensor) and output.requires_grad:
            seed = sampling_seed if module is loss_fn else None
            output.register_hook(
                functools.partial(_run_extensions, module, seed, skip, broken, failed)
            )

    targets = [*modules, *([loss_fn] if loss_fn is not None else [])]
    return [module.register_forward_hook(store_and_watch) for module in targets]


def _run_extensions(
    module: nn.Module,
    seed: Callable[[], int] | None,
    skip: set[int],
    broken: list[nn.Module] | None,
    failed: dict[int, str] | None,
    grad_output: Tensor,
) -> None:
    if id(module) in skip or (failed is not None and id(module) in failed):
        return
    try:
        if seed is None:
            hook_run_extensions(module, (None,), (grad_output,))
            return
        device = grad_output.device
        cuda = device.type == "cuda"
        with torch.random.fork_rng(devices=[device] if cuda else []):
            value = seed()
            torch.default_generator.manual_seed(value)
            if cuda:
                with torch.cuda.device(device):
                    torch.cuda.manual_seed(value)
            hook_run_extensions(module, (None,), (grad_output,))
    except Exception as error:
        chain = isinstance(error, AssertionError) and (
            "expects a backpropagation quantity" in str(error)
        )
        if chain and broken is not None:
            broken.append(module)
        elif chain:
            raise UnsupportedModelError(
                CHAIN_BROKEN.format(module=module, kind=type(module).__name__)
            ) from error
        elif failed is not None:
            failed[id(module)] = f"{type(error).__name__}: {error}"
        else:
            raise


def collect(params: dict[str, nn.Parameter]) -> dict[str, LayerStats]:
    """Take the statistics the extension left on the parameters (and remove them)."""
    return take(params, SAVEFIELD)
