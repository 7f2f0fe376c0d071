"""torch.func per module: per-sample gradients from each module call's own hooks.

For a leaf module that treats samples independently (LayerNorm, GroupNorm, RMSNorm,
a custom layer), the per-sample gradient of its parameters is the vector-Jacobian
product of the module alone, at sample n's input, with sample n's output gradient:
``g_n = (d m(x_n; theta) / d theta)^T delta_n``. A forward hook keeps each call's
inputs and a hook on the output tensor receives ``delta`` in the user's own backward
pass; ``vmap`` over samples of ``vjp`` through ``functional_call(module, ...)`` then
gives ``[N, *shape]`` for every parameter of the module, with no second pass through
the model. Contributions of several calls add up, which makes shared parameters
(weight tying between modules) and modules that run several times exact.

This needs every call's output to carry the batch dimension: a module called on
inputs without it (a position embedding on ``arange(T)``) cannot split its gradient
by sample and is reported in :attr:`ModuleGrads.failed`, so that the caller uses
the whole-model replay (:mod:`cockpit.engines.func_engine`) for it instead.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call, vjp, vmap
from torch.utils.hooks import RemovableHandle

from cockpit.engines.func_engine import FALLBACK_WARNING
from cockpit.engines.layer_stats import LayerStats, SampleRequest, from_per_sample


class ModuleGrads:
    """Hooks that accumulate per-sample gradients of some modules' parameters.

    Args:
        owners: Module -> ``[(tracked name, attribute name)]`` of its parameters to
            differentiate.
        batch_size: N, once the loss has been computed.
        mean_reduction: The loss averages over samples (its output gradients carry
            ``1/N``, undone here).

    """

    def __init__(
        self,
        owners: dict[nn.Module, list[tuple[str, str]]],
        batch_size: Callable[[], int],
        mean_reduction: bool,
    ):
        self.owners = owners
        self.batch_size = batch_size
        self.mean = mean_reduction
        self.per_sample: dict[str, Tensor] = {}
        self.failed: set[str] = set()
        self.errors: dict[str, str] = {}
        self._inside = False

    def attach(self) -> list[RemovableHandle]:
        """Forward hooks on every owner module; remove them after the step."""
        return [
            module.register_forward_hook(self._forward, with_kwargs=True)
            for module in self.owners
        ]

    def _forward(self, module: nn.Module, args: tuple, kwargs: dict, output) -> None:
        if self._inside:
            return  # the vmapped call below
        if not (isinstance(output, Tensor) and output.requires_grad):
            self._fail(module)
            return
        inputs = (
            tuple(a.detach() if isinstance(a, Tensor) else a for a in args),
            {k: v.detach() if isinstance(v, Tensor) else v for k, v in kwargs.items()},
        )
        output.register_hook(functools.partial(self._backward, module, inputs))

    def _fail(self, module: nn.Module) -> None:
        self.failed.update(name for name, _ in self.owners[module])

    def _backward(self, module: nn.Module, inputs: tuple, grad_output: Tensor) -> None:
        n = self.batch_size()
        args, kwargs = inputs
        batched = {
            key: value
            for key, value in [*enumerate(args), *kwargs.items()]
            if isinstance(value, Tensor) and value.dim() > 0 and value.shape[0] == n
        }
        if grad_output.shape[0] != n or not batched:
            self._fail(module)
            return
        names = self.owners[module]
        delta = grad_output.detach() * (n if self.mean else 1)
        closed_form, applies = _CLOSED_FORMS.get(type(module), (None, None))
        if (
            closed_form is not None
            and applies(module)
            and len(args) == 1
            and not kwargs
        ):
            self._add(names, closed_form(module, args[0], delta))
            return
        params = {attr: getattr(module, attr).detach() for _, attr in names}

        def one(sample: dict[Any, Tensor], delta_n: Tensor) -> dict[str, Tensor]:
            call_args = tuple(
                sample[i].unsqueeze(0) if i in sample else a for i, a in enumerate(args)
            )
            call_kwargs = {
                k: sample[k].unsqueeze(0) if k in sample else v
                for k, v in kwargs.items()
            }

            def call(p: dict[str, Tensor]) -> Tensor:
                return functional_call(module, p, call_args, call_kwargs)

            _, pull = vjp(call, params)
            return pull(delta_n.unsqueeze(0))[0]

        self._inside = True
        try:
            with warnings.catch_warnings(), torch.enable_grad():
                warnings.filterwarnings("ignore", message=FALLBACK_WARNING)
                grads = vmap(one)(batched, delta)
        except Exception as error:  # never break the user's backward pass
            # An operation torch.func cannot vectorize (or data-dependent control
            # flow) in the module: the replay differentiates it instead.
            self.errors[type(module).__name__] = f"{type(error).__name__}: {error}"
            self._fail(module)
            return
        finally:
            self._inside = False
        self._add(names, grads)

    def _add(self, names: list[tuple[str, str]], grads: dict[str, Tensor]) -> None:
        """Add one call's per-sample gradients (by attribute) to the sums."""
        for name, attr in names:
            grad = grads[attr]
            self.per_sample[name] = (
                grad if name not in self.per_sample else self.per_sample[name] + grad
            )

    def collect(
        self, params: dict[str, nn.Parameter], request: SampleRequest
    ) -> dict[str, LayerStats]:
        """Reduce the accumulated per-sample gradients (of every call) per parameter."""
        stats = {
            name: from_per_sample(grads, params[name], request)
            for name, grads in self.per_sample.items()
            if name not in self.failed
        }
        self.per_sample = {}
        return stats


def _scale_and_shift(
    module: nn.Module,
    delta: Tensor,
    normalized: Callable[[], Tensor],
    summed: tuple[int, ...],
) -> dict[str, Tensor]:
    """``g_n(w) = sum delta_n * x_hat_n``, ``g_n(b) = sum delta_n`` over ``summed``.

    For ``y = x_hat * w + b`` with the normalized input ``x_hat`` (computed only if
    the layer has a weight).
    """

    def reduce(values: Tensor) -> Tensor:
        return values.sum(summed) if summed else values

    grads = {"bias": reduce(delta)}
    if module.weight is not None:
        grads["weight"] = reduce(delta * normalized())
    return grads


def _group_norm_grads(module: nn.GroupNorm, x: Tensor, delta: Tensor) -> dict:
    """Per-sample gradients of ``GroupNorm``'s weight and bias, in closed form.

    ``x_hat`` is normalized per sample and group; ``w`` and ``b`` act per channel
    (axis 1), so the sums run over the positions (axes 2 and up).
    """
    return _scale_and_shift(
        module,
        delta,
        lambda: nn.functional.group_norm(x, module.num_groups, eps=module.eps),
        tuple(range(2, x.dim())),
    )


def _layer_norm_grads(module: nn.LayerNorm, x: Tensor, delta: Tensor) -> dict:
    """Per-sample gradients of ``LayerNorm``'s weight and bias, in closed form.

    ``x_hat`` is normalized over the last ``len(normalized_shape)`` axes; the sums
    run over the axes between the batch and the normalized ones (a handful of
    operations instead of a vectorized ``vjp``).
    """
    return _scale_and_shift(
        module,
        delta,
        lambda: nn.functional.layer_norm(x, module.normalized_shape, eps=module.eps),
        tuple(range(1, x.dim() - len(module.normalized_shape))),
    )


def _linear_grads(module: nn.Linear, x: Tensor, delta: Tensor) -> dict:
    """Per-sample gradients of a ``Linear`` layer (shared or called twice).

    ``g_n(W) = sum_t delta_{n,t} x_{n,t}^T`` and ``g_n(b) = sum_t delta_{n,t}`` over
    the positions t between the batch and the feature axis.
    """
    n = x.shape[0]
    rows = delta.reshape(n, -1, delta.shape[-1])
    grads = {"weight": rows.transpose(1, 2) @ x.reshape(n, -1, x.shape[-1])}
    if module.bias is not None:
        grads["bias"] = rows.sum(1)
    return grads


def _embedding_grads(module: nn.Embedding, tokens: Tensor, delta: Tensor) -> dict:
    """Per-sample gradients of an ``Embedding`` (e.g. tied to an output layer).

    Row v of ``g_n(W)`` sums ``delta_{n,t}`` over the positions t where sample n
    looks up token v.
    """
    n, width = tokens.shape[0], delta.shape[-1]
    index = tokens.reshape(n, -1, 1).expand(-1, -1, width)
    grads = delta.new_zeros(n, module.num_embeddings, width)
    return {"weight": grads.scatter_add_(1, index, delta.reshape(n, -1, width))}


def _plain_embedding(module: nn.Module) -> bool:
    """An embedding without the options that change its gradient."""
    return (
        module.padding_idx is None
        and module.max_norm is None
        and not module.scale_grad_by_freq
    )


#: Layers whose per-sample parameter gradients have a closed form (no ``vmap``),
#: and when it applies.
_CLOSED_FORMS: dict[
    type[nn.Module],
    tuple[Callable[[Any, Tensor, Tensor], dict], Callable[[nn.Module], bool]],
] = {
    nn.LayerNorm: (_layer_norm_grads, lambda module: True),
    nn.GroupNorm: (_group_norm_grads, lambda module: True),
    nn.Linear: (_linear_grads, lambda module: True),
    nn.Embedding: (_embedding_grads, _plain_embedding),
}


__all__ = ["ModuleGrads"]
