"""Per-sample parameter gradients of common layers in closed form (no ``vmap``).

Each function takes a module, its input ``x`` (``[N, ...]``) and the gradient of the
per-sample losses w.r.t. its output ``delta`` (same leading axes as the output) and
returns the per-sample gradients by attribute name: ``{"weight": [N, *shape], ...}``.
Layers whose weight gradient is a sum of outer products (``Linear``-like layers on
``[N, T, in]`` inputs) return it as its two factors instead (:class:`Factors`), so that
the reduction chooses how to form the statistics: by ``T x T`` Gram matrices without
the ``[N, in, out]`` gradients where no element-wise statistic is due and that is
cheaper, else by forming them once, all at a time or a chunk of samples at a time
(:func:`cockpit.engines._summed_factors.from_summed_factors`).

:func:`closed_form` finds the function for a module, or ``None`` (then the per-module
engine differentiates it with ``vmap`` of ``vjp``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["ClosedForm", "Factors", "closed_form"]


@dataclass
class Factors:
    """A per-sample gradient ``g_n = sum_t left_{n,t} right_{n,t}^T`` by its factors.

    Attributes:
        left: ``[N, T, p]``.
        right: ``[N, T, q]``; ``g_n`` has the parameter's shape ``[p, q]``.

    """

    left: Tensor
    right: Tensor

    def dense(self) -> Tensor:
        """``[N, p, q]``, the per-sample gradients themselves."""
        return self.left.transpose(1, 2) @ self.right


#: ``(module, x, delta) -> {attribute: [N, *shape] per-sample gradients or Factors}``.
ClosedForm = Callable[[Any, Tensor, Tensor], dict[str, Tensor | Factors]]


def _scale_and_shift(
    module: nn.Module,
    delta: Tensor,
    normalized: Callable[[], Tensor],
    summed: tuple[int, ...],
) -> dict[str, Tensor | Factors]:
    """``g_n(w) = sum delta_n * x_hat_n``, ``g_n(b) = sum delta_n`` over ``summed``.

    For ``y = x_hat * w + b`` with the normalized input ``x_hat`` (computed only if
    the layer has a weight; the bias term only if it has a bias).
    """

    def reduce(values: Tensor) -> Tensor:
        return values.sum(summed) if summed else values

    grads: dict[str, Tensor | Factors] = {}
    if getattr(module, "bias", None) is not None:
        grads["bias"] = reduce(delta)
    if module.weight is not None:
        grads["weight"] = reduce(delta * normalized())
    return grads


def _group_norm(module: nn.GroupNorm, x: Tensor, delta: Tensor) -> dict:
    """``GroupNorm``: ``x_hat`` normalized per sample and group.

    ``w`` and ``b`` act per channel (axis 1), so the sums run over the positions
    (axes 2 and up).
    """
    return _scale_and_shift(
        module,
        delta,
        lambda: nn.functional.group_norm(x, module.num_groups, eps=module.eps),
        tuple(range(2, x.dim())),
    )


def _layer_norm(module: nn.LayerNorm, x: Tensor, delta: Tensor) -> dict:
    """``LayerNorm``: ``x_hat`` normalized over the last ``len(normalized_shape)`` axes.

    The sums run over the axes between the batch and the normalized ones.
    """
    return _scale_and_shift(
        module,
        delta,
        lambda: nn.functional.layer_norm(x, module.normalized_shape, eps=module.eps),
        tuple(range(1, x.dim() - len(module.normalized_shape))),
    )


def _rms_norm(module: nn.RMSNorm, x: Tensor, delta: Tensor) -> dict:
    """``RMSNorm``: ``y = w * x / sqrt(mean(x^2) + eps)``, so ``g_n(w) = sum delta x_hat``.

    The mean runs over the last ``len(normalized_shape)`` axes, the sum over the axes
    between the batch and those.
    """
    shape = module.normalized_shape
    return _scale_and_shift(
        module,
        delta,
        lambda: nn.functional.rms_norm(x, shape, eps=module.eps),
        tuple(range(1, x.dim() - len(shape))),
    )


def _library_rms_norm(module: nn.Module, x: Tensor, delta: Tensor) -> dict:
    """Hugging Face RMSNorms (``LlamaRMSNorm`` and kin): ``w`` times ``x_hat``.

    ``x_hat = x / sqrt(mean(x^2, last axis) + eps)``, computed in float32 and cast
    back to ``x``'s dtype as those modules do. Variants that scale by ``1 + w``
    (Gemma) have the same weight gradient ``sum delta * x_hat``.
    """
    eps = getattr(module, "variance_epsilon", getattr(module, "eps", None))
    wide = x.float()
    scale = torch.rsqrt(wide.pow(2).mean(-1, keepdim=True) + eps)
    x_hat = (wide * scale).to(x.dtype)
    return {"weight": (delta * x_hat).sum(tuple(range(1, x.dim() - 1)))}


def _linear(module: nn.Linear, x: Tensor, delta: Tensor) -> dict:
    """``Linear`` (shared or called twice): ``g_n(W) = sum_t delta_{n,t} x_{n,t}^T``.

    ``g_n(b) = sum_t delta_{n,t}``, over the positions t between the batch and the
    feature axis.
    """
    n = x.shape[0]
    rows = delta.reshape(n, -1, delta.shape[-1])
    grads: dict[str, Tensor | Factors] = {
        "weight": rows.transpose(1, 2) @ x.reshape(n, -1, x.shape[-1])
    }
    if module.bias is not None:
        grads["bias"] = rows.sum(1)
    return grads


def _transposed_linear(module: nn.Module, x: Tensor, delta: Tensor) -> dict:
    """Hugging Face ``Conv1D``, ``y = x @ W + b`` with ``W`` ``[in, out]``.

    ``g_n(W) = sum_t x_{n,t} delta_{n,t}^T``, kept as its factors ``x`` ``[N, T, in]``
    and ``delta`` ``[N, T, out]``; ``g_n(b) = sum_t delta_{n,t}``.
    """
    n = x.shape[0]
    rows = delta.reshape(n, -1, delta.shape[-1])
    grads: dict[str, Tensor | Factors] = {
        "weight": Factors(x.reshape(n, -1, x.shape[-1]), rows)
    }
    if module.bias is not None:
        grads["bias"] = rows.sum(1)
    return grads


def _embedding(module: nn.Embedding, tokens: Tensor, delta: Tensor) -> dict:
    """``Embedding`` (e.g. tied to an output layer).

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


def _is_library_rms_norm(module: nn.Module) -> bool:
    """A Hugging Face-style RMSNorm: one 1D ``weight`` and a float epsilon."""
    params = dict(module.named_parameters(recurse=False))
    eps = getattr(module, "variance_epsilon", getattr(module, "eps", None))
    return (
        type(module).__name__.endswith("RMSNorm")
        and list(params) == ["weight"]
        and params["weight"].dim() == 1
        and isinstance(eps, float)
    )


def _is_library_conv1d(module: nn.Module) -> bool:
    """``transformers.pytorch_utils.Conv1D`` (without importing transformers)."""
    kind = type(module)
    return kind.__name__ == "Conv1D" and kind.__module__.startswith("transformers.")


#: Layer types with a closed form, and when it applies.
_BY_TYPE: dict[type[nn.Module], tuple[ClosedForm, Callable[[nn.Module], bool]]] = {
    nn.LayerNorm: (_layer_norm, lambda module: True),
    nn.GroupNorm: (_group_norm, lambda module: True),
    nn.RMSNorm: (_rms_norm, lambda module: True),
    nn.Linear: (_linear, lambda module: True),
    nn.Embedding: (_embedding, _plain_embedding),
}

#: Library layers recognized by their structure (their packages are not imported).
_BY_SHAPE: list[tuple[Callable[[nn.Module], bool], ClosedForm]] = [
    (_is_library_conv1d, _transposed_linear),
    (_is_library_rms_norm, _library_rms_norm),
]


def closed_form(module: nn.Module) -> ClosedForm | None:
    """The closed form of ``module``'s per-sample gradients, if it has one."""
    if type(module) in _BY_TYPE:
        function, applies = _BY_TYPE[type(module)]
        return function if applies(module) else None
    return next((f for matches, f in _BY_SHAPE if matches(module)), None)
