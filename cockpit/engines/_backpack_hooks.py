"""Hooks that run BackPACK's extensions for one tracked step, and come off after it.

Like ``backpack.extend``, but removable, tolerant of in-place operations on a layer's
output, and able to record modules that run twice, break the chain of modules, or
make an extension fail, instead of stopping the backward pass. Layer types with a
*direct* handler (first-order statistics only: ``Linear``) skip BackPACK
(:class:`DirectCapture`): on ``[N, in]`` inputs the forward hook keeps the layer's
input and the backward pass only stores the output gradient (a C-level dict
assignment, no Python frame per layer); the handlers run on both after the backward
pass, in the order the gradients arrived, and leave what BackPACK's module extension
would, without BackPACK's per-module dispatch, its attributes on the module, or their
cleanup.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping

import torch
from backpack import hook_run_extensions, hook_store_io
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from cockpit.engines._hook_slots import HookSlots
from cockpit.engines.curvature import CHAIN_BROKEN
from cockpit.exceptions import UnsupportedModelError, UsageError

__all__ = ["DeferredHandler", "DirectCapture", "DirectHandler", "attach_hooks"]

#: ``(module, input, output gradient) -> None``: a layer's first-order statistics
#: without BackPACK (:func:`attach_hooks`).
DirectHandler = Callable[[nn.Module, Tensor, Tensor], None]
#: ``(layers, on_error) -> None``: the direct handlers' work on every
#: ``(module, input, output gradient)`` at once, after the backward pass
#: (:class:`DirectCapture`); an error on a module goes to ``on_error(module, error)``.
DeferredHandler = Callable[
    [list[tuple[nn.Module, Tensor, Tensor]], Callable[[nn.Module, Exception], None]],
    None,
]

_RAN_TWICE = (
    "{kind} module {module} ran twice in one tracked step: a second forward pass in "
    "the block, or a module reused inside one. engine='backpack' needs each hooked "
    "module to run once per step; use engine='auto' or engine='torch.func' for "
    "reused modules."
)


class DirectCapture:
    """The inputs and output gradients of the direct layers, reduced after backward.

    The forward hook (:meth:`store`) keeps a layer's input ``x`` and puts
    ``functools.partial(grads.__setitem__, module)`` on its output tensor, so the
    backward pass runs no Python per layer: it stores the output gradient (the
    gradient w.r.t. the output before any in-place change, as a tensor hook
    registered before the change receives it). :meth:`finish` runs the handlers
    after the backward pass, in the order the gradients arrived (the order the
    hooks ran them in before, so the histogram positions are the same draws). A
    second backward pass through a layer replaces its gradient, as its handler's
    result replaced the first before. Inputs with more than one position per sample
    (``[N, T, in]``) run their handler in the backward pass as before: it reduces
    the per-sample gradients there, and keeping ``[N, T, out]`` output gradients of
    every layer until the end would raise the backward pass's peak memory.

    Args:
        handlers: Layer type -> handler, for modules of exactly that type, run in
            the backward pass.
        later: The handlers' work on every stored ``(module, x, output gradient)``,
            run by :meth:`finish` (untimed: the caller times it); errors go to its
            second argument.
        reused: As for :func:`attach_hooks`.
        failed: As for :func:`attach_hooks`.

    """

    def __init__(
        self,
        handlers: Mapping[type[nn.Module], DirectHandler],
        later: DeferredHandler,
        reused: set[int] | None = None,
        failed: dict[int, str] | None = None,
    ) -> None:
        self.handlers = handlers
        self.later = later
        self.reused = reused
        self.failed = failed
        self.inputs: dict[nn.Module, Tensor] = {}
        self.grads: dict[nn.Module, Tensor] = {}

    def store(self, module: nn.Module, inputs: tuple, output: Tensor) -> None:
        """Forward hook: keep the input, store the output's gradient when it comes."""
        if module in self.inputs:
            if self.reused is None:
                raise UsageError(
                    _RAN_TWICE.format(kind=type(module).__name__, module=module)
                )
            self.reused.add(id(module))
            return
        x = self.inputs[module] = inputs[0]
        if not (isinstance(output, Tensor) and output.requires_grad):
            return
        if x.dim() == 2:
            output.register_hook(functools.partial(self.grads.__setitem__, module))
            return
        run = functools.partial(self.handlers[type(module)], module, x)
        skip = self.reused if self.reused is not None else set()
        output.register_hook(
            functools.partial(
                _run_extensions, module, run, None, skip, None, self.failed
            )
        )

    def finish(self) -> None:
        """Run the handlers on the stored gradients, once, after the backward pass."""
        grads, inputs, skip = self.grads, self.inputs, self.reused or ()
        self.grads, self.inputs = {}, {}
        self.later(
            [(m, inputs[m], grad) for m, grad in grads.items() if id(m) not in skip],
            functools.partial(_failure, broken=None, failed=self.failed),
        )


def attach_hooks(
    modules: Iterable[nn.Module],
    keep_outputs: bool = False,
    loss_fn: nn.Module | None = None,
    sampling_seed: Callable[[], int] | None = None,
    reused: set[int] | None = None,
    broken: list[nn.Module] | None = None,
    failed: dict[int, str] | None = None,
    direct: DirectCapture | None = None,
    slots: HookSlots | None = None,
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
        direct: Modules of its handlers' types are hooked by it instead of
            BackPACK's extensions (only where no extension needs BackPACK's chain of
            modules): nothing is stored on those modules, so they need no
            ``memory_cleanup``; call :meth:`DirectCapture.finish` after the
            backward pass.
        slots: If given, the forward hooks go in through its kept handles (cheaper
            than registering anew at every block); remove them the same way.

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

    def store_and_watch(module: nn.Module, inputs: tuple, output: Tensor) -> None:
        if id(module) in seen:
            if reused is not None:
                reused.add(id(module))
                return
            raise UsageError(
                _RAN_TWICE.format(kind=type(module).__name__, module=module)
            )
        seen.add(id(module))
        hook_store_io(module, inputs, output)
        if not keep_outputs:
            # BackPACK's first-order derivatives read only the output's shape;
            # holding the output would keep it alive through the backward pass
            # (25 MB for the first convolution of the 3c3d CNN). Layers of equal
            # output shapes share one stand-in (no operation per layer).
            module.output = _stand_in(output, stand_ins)
        if isinstance(output, Tensor) and output.requires_grad:
            seed = sampling_seed if module is loss_fn else None
            run = functools.partial(_backpack, module)
            output.register_hook(
                functools.partial(
                    _run_extensions, module, run, seed, skip, broken, failed
                )
            )

    handlers = direct.handlers if direct is not None else {}
    targets = [*modules, *([loss_fn] if loss_fn is not None else [])]
    install = slots.install if slots is not None else _register
    return [
        install(
            module,
            direct.store
            if direct is not None and type(module) in handlers
            else store_and_watch,
        )
        for module in targets
    ]


def _register(module: nn.Module, hook: Callable) -> RemovableHandle:
    return module.register_forward_hook(hook)


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
        _failure(module, error, broken, failed)


def _failure(
    module: nn.Module,
    error: Exception,
    broken: list[nn.Module] | None,
    failed: dict[int, str] | None,
) -> None:
    """Record an extension's error on ``module`` where asked to, else raise it."""
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
        raise error
