"""Hooks that run BackPACK's extensions for one tracked step, and come off after it.

Like ``backpack.extend``, but removable, tolerant of in-place operations on a layer's
output, and able to record modules that run twice, break the chain of modules, or
make an extension fail, instead of stopping the backward pass. Layer types with a
*direct* handler (first-order statistics only: ``Linear``) skip BackPACK: the hook
keeps the layer's input and hands it with the output gradient to the handler, which
leaves what BackPACK's module extension would, without BackPACK's per-module
dispatch, its attributes on the module, or their cleanup.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping

import torch
from backpack import hook_run_extensions, hook_store_io
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from cockpit.engines.curvature import CHAIN_BROKEN
from cockpit.exceptions import UnsupportedModelError, UsageError

__all__ = ["DirectHandler", "attach_hooks"]

#: ``(module, input, output gradient) -> None``: a layer's first-order statistics
#: without BackPACK (:func:`attach_hooks`).
DirectHandler = Callable[[nn.Module, Tensor, Tensor], None]


def attach_hooks(
    modules: Iterable[nn.Module],
    keep_outputs: bool = False,
    loss_fn: nn.Module | None = None,
    sampling_seed: Callable[[], int] | None = None,
    reused: set[int] | None = None,
    broken: list[nn.Module] | None = None,
    failed: dict[int, str] | None = None,
    direct: Mapping[type[nn.Module], DirectHandler] | None = None,
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
        direct: Layer type -> handler for modules of exactly that type, run
            instead of BackPACK's extensions (only where no extension needs
            BackPACK's chain of modules): nothing is stored on those modules, so
            they need no ``memory_cleanup``.

    Raises:
        UsageError: From the forward pass, if a module runs twice in one tracked
            step (a reused module) and ``reused`` is not given: its stored input
            would be overwritten and its statistics wrong.
        UnsupportedModelError: From the backward pass, if a second-order extension
            finds the chain of modules broken and ``broken`` is not given.

    """
    seen: set[int] = set()
    skip = reused if reused is not None else set()
    stand_ins: dict[tuple, Tensor] = {}
    handlers = direct if direct is not None else {}

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
        handler = handlers.get(type(module))
        if handler is not None:
            run = functools.partial(handler, module, inputs[0])
        else:
            hook_store_io(module, inputs, output)
            if not keep_outputs:
                # BackPACK's first-order derivatives read only the output's shape;
                # holding the output would keep it alive through the backward pass
                # (25 MB for the first convolution of the 3c3d CNN). Layers of equal
                # output shapes share one stand-in (no operation per layer).
                module.output = _stand_in(output, stand_ins)
            run = functools.partial(_backpack, module)
        if isinstance(output, Tensor) and output.requires_grad:
            seed = sampling_seed if module is loss_fn else None
            output.register_hook(
                functools.partial(
                    _run_extensions, module, run, seed, skip, broken, failed
                )
            )

    targets = [*modules, *([loss_fn] if loss_fn is not None else [])]
    return [module.register_forward_hook(store_and_watch) for module in targets]


def _stand_in(output: Tensor, made: dict[tuple, Tensor]) -> Tensor:
    """A storage-free ``meta`` tensor like ``output``, one per shape, stride, dtype."""
    key = (output.shape, output.stride(), output.dtype)
    if key not in made:
        made[key] = torch.empty_like(output, device="meta")
    return made[key]


def _backpack(module: nn.Module, grad_output: Tensor) -> None:
    """BackPACK's extensions on ``module``, from the gradient of its output."""
    hook_run_extensions(module, (None,), (grad_output,))


def _run_extensions(
    module: nn.Module,
    run: Callable[[Tensor], None],
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
            run(grad_output)
            return
        device = grad_output.device
        cuda = device.type == "cuda"
        with torch.random.fork_rng(devices=[device] if cuda else []):
            value = seed()
            torch.default_generator.manual_seed(value)
            if cuda:
                with torch.cuda.device(device):
                    torch.cuda.manual_seed(value)
            run(grad_output)
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
