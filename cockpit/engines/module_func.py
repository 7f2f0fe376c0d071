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
Layers with a closed form (:mod:`cockpit.engines.closed_forms`: the norms, ``Linear``,
``Embedding``, Hugging Face's ``Conv1D`` and RMSNorms) skip the ``vmap``; those whose
gradient is a sum of outer products keep its factors, and their statistics come from
:func:`~cockpit.engines._summed_factors.from_summed_factors`.

This needs every call's output to carry the batch dimension. One case without it is
made to carry it (:func:`_spread_width`): a lookup of integer indices with leading
dimension 1 (Hugging Face GPT-2's position table ``wpe`` on ``position_ids`` ``[1, T]``)
whose output ``[1, T, C]`` the model adds to ``[N, T, C]`` by broadcasting. The forward
hook returns ``output.expand(N, T, C)`` instead (a stride-0 view, no copy) and keeps
the indices expanded alike, so the closed form sees N samples. The broadcast add gives
the same values, and autograd's backward of ``expand`` sums the ``[N, T, C]`` gradient
to ``[1, T, C]`` with the same ``sum_to`` as the broadcast add's backward: ``.grad`` is
bit for bit the same (``tests/engines/test_unbatched_lookup.py`` and
``tests/models/test_matrix.py`` train GPT-2 with its default ``position_ids`` tracked
and untracked). N is the leading dimension of the model's
first tensor argument at its first call in the step. A model that uses such an output
other than under broadcasting against ``[N, ...]`` tensors sees N copies: an in-place
update of it raises, a sum over all its elements is N times larger; the first tracked
step's check that per-sample gradients add up to ``.grad`` does not see that, so the
rule is kept this narrow (integer inputs only, N > 1, no input carrying N).

Any other module called on inputs without the batch dimension (a position embedding
on ``arange(T)`` of shape ``[T]``) cannot split its gradient by sample and is reported
in :attr:`ModuleGrads.failed`, so that the caller uses the whole-model replay
(:mod:`cockpit.engines.func_engine`) for it instead.
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

from cockpit.engines._summed_factors import from_summed_factors
from cockpit.engines.closed_forms import Factors, closed_form
from cockpit.engines.func_engine import FALLBACK_WARNING
from cockpit.engines.layer_stats import (
    LayerStats,
    SampleRequest,
    from_per_sample,
    widen,
)


class ModuleGrads:
    """Hooks that accumulate per-sample gradients of some modules' parameters.

    Args:
        owners: Module -> ``[(tracked name, attribute name)]`` of its parameters to
            differentiate.
        batch_size: N, once the loss has been computed.
        scale: ``N -> factor`` from output gradients of the user's loss to
            per-sample gradients (:meth:`SampleRequest.scale`: undoes a mean's
            ``1/N`` and the user's loss scale).
        model: The tracked model, whose first tensor argument gives N during the
            forward pass (``None``: unbatched lookups are not spread, they fail).

    """

    def __init__(
        self,
        owners: dict[nn.Module, list[tuple[str, str]]],
        batch_size: Callable[[], int],
        scale: Callable[[int], int | Tensor],
        model: nn.Module | None = None,
    ):
        self.owners = owners
        self.batch_size = batch_size
        self.scale = scale
        self.model = model
        self.forward_batch: int | None = None
        self.per_sample: dict[str, Tensor | Factors] = {}
        self.failed: set[str] = set()
        self.errors: dict[str, str] = {}
        self.rounding: dict[str, float] = {}
        self._inside = False

    def attach(self) -> list[RemovableHandle]:
        """Forward hooks on every owner module (and a pre-hook on the model for N).

        Remove them after the step.
        """
        handles = []
        if self.model is not None:
            handles.append(
                self.model.register_forward_pre_hook(self._take_batch, with_kwargs=True)
            )
        return handles + [
            module.register_forward_hook(self._forward, with_kwargs=True)
            for module in self.owners
        ]

    def _take_batch(self, model: nn.Module, args: tuple, kwargs: dict) -> None:
        """N: the leading dimension of the model's first tensor argument (first call)."""
        if self.forward_batch is None:
            first = next(
                (v for v in (*args, *kwargs.values()) if isinstance(v, Tensor)), None
            )
            if first is not None and first.dim() > 0:
                self.forward_batch = first.shape[0]

    def _forward(
        self, module: nn.Module, args: tuple, kwargs: dict, output: object
    ) -> Tensor | None:
        if self._inside:
            return None  # the vmapped call below
        if not (isinstance(output, Tensor) and output.requires_grad):
            self._fail(module)
            return None
        n = _spread_width(self.forward_batch, args, kwargs, output)
        if n is not None:
            # Broadcast by the model anyway: the view gives the closed form N samples.
            output = output.expand(n, *output.shape[1:])
            args = tuple(_spread(a, n) for a in args)
            kwargs = {k: _spread(v, n) for k, v in kwargs.items()}
        inputs = (
            tuple(a.detach() if isinstance(a, Tensor) else a for a in args),
            {k: v.detach() if isinstance(v, Tensor) else v for k, v in kwargs.items()},
        )
        output.register_hook(functools.partial(self._backward, module, inputs))
        return None if n is None else output

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
        # Under autocast: the statistics in the parameters' dtype (not bfloat16).
        dtype = getattr(module, names[0][1]).dtype
        keys = [k for k, v in [*enumerate(args), *kwargs.items()] if _floating(v)]
        values = [args[k] if isinstance(k, int) else kwargs[k] for k in keys]
        (delta, *values), rounding = widen([grad_output.detach(), *values], dtype)
        for key, value in zip(keys, values, strict=True):
            if isinstance(key, int):
                args = (*args[:key], value, *args[key + 1 :])
            else:
                kwargs = {**kwargs, key: value}
            if key in batched:
                batched[key] = value
        for name, _ in names:
            self.rounding[name] = max(self.rounding.get(name, 0.0), rounding)
        delta = delta * self.scale(n)
        function = closed_form(module)
        if function is not None and len(args) == 1 and not kwargs:
            self._add(names, function(module, args[0], delta))
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

    def _add(self, names: list[tuple[str, str]], grads: dict) -> None:
        """Add one call's per-sample gradients (by attribute) to the sums.

        Factors of several calls are concatenated along their position axis
        (``sum_t`` runs over the positions of every call).
        """
        for name, attr in names:
            grad, before = grads[attr], self.per_sample.get(name)
            if before is None:
                self.per_sample[name] = grad
            elif isinstance(grad, Factors) and isinstance(before, Factors):
                self.per_sample[name] = Factors(
                    torch.cat([before.left, grad.left], 1),
                    torch.cat([before.right, grad.right], 1),
                )
            else:
                self.per_sample[name] = _dense(before) + _dense(grad)

    def collect(
        self, params: dict[str, nn.Parameter], request: SampleRequest
    ) -> dict[str, LayerStats]:
        """Reduce the accumulated per-sample gradients (of every call) per parameter.

        In the order of the backward pass (the histogram draws follow it), each
        entry dropped as it is taken: a layer's factors are freed before the next
        layer's per-sample gradients are formed (some of which are kept for later
        projections), so that the two do not all exist at once.
        """
        stats: dict[str, LayerStats] = {}
        while self.per_sample:
            name, grads = next(iter(self.per_sample.items()))
            del self.per_sample[name]
            if name in self.failed:
                continue
            stats[name] = (
                from_summed_factors(grads.left, grads.right, params[name], request)
                if isinstance(grads, Factors)
                else from_per_sample(grads, params[name], request)
            )
            stats[name].rounding = self.rounding.get(name, 0.0)
        return stats


def _spread_width(
    n: int | None, args: tuple, kwargs: dict, output: Tensor
) -> int | None:
    """N if this call is an unbatched lookup to spread over the batch, else ``None``.

    A lookup: every tensor argument holds integer indices with leading dimension 1
    (``position_ids`` ``[1, T]``), and so does the output, while the batch has N > 1.
    """
    tensors = [v for v in (*args, *kwargs.values()) if isinstance(v, Tensor)]
    lookup = bool(tensors) and all(
        not t.is_floating_point()
        and not t.is_complex()
        and t.dim() > 0
        and t.shape[0] == 1
        for t in tensors
    )
    if n is None or n <= 1 or not lookup or output.dim() == 0 or output.shape[0] != 1:
        return None
    return n


def _spread(value: object, n: int) -> object:
    """``value`` expanded from leading dimension 1 to N (a view), if it is a tensor."""
    if isinstance(value, Tensor) and value.dim() > 0 and value.shape[0] == 1:
        return value.expand(n, *value.shape[1:])
    return value


def _floating(value: object) -> bool:
    return isinstance(value, Tensor) and value.is_floating_point()


def _dense(grad: Tensor | Factors) -> Tensor:
    return grad.dense() if isinstance(grad, Factors) else grad


__all__ = ["ModuleGrads"]
