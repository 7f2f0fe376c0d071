"""Cross-entropy's element-wise losses read from the user's autograd graph.

``nn.CrossEntropyLoss`` with class-index targets computes ``logp = log_softmax(f, 1)``
and then ``nll_loss(logp, y)``, and autograd keeps ``logp`` for the backward pass. The
element-wise loss is a gather from it:

    loss_e = -w_{y_e} logp_{e, y_e}        (0 where y_e is ignore_index)

``[N, ...]`` numbers, where recomputing it (:func:`~cockpit.engines.loss_factors.unreduced`)
costs a second log-softmax over ``[N, C, ...]``: on GPT-2's vocabulary that is the
size of the model's last layer, and on CUDA a slow kernel when the class axis is not
last (a sequence model's ``logits.transpose(1, 2)``). The numbers are those of
``reduction="none"`` bit for bit: the same ``logp``, the same products.

Below :data:`MIN_ELEMENTS` log-probabilities the recomputation is cheaper than the
gather's few more operations (``benchmarks/class_axis.py --shapes``: on this
project's CPU 42 against 96 µs for ``[64, 10]``, 184 against 145 µs for
``[16, 256, 8]``; the crossover lay between 9,000 and 16,000 numbers in two runs),
so small losses are recomputed.

Only the plain modules take this route (``nn.CrossEntropyLoss``, ``nn.NLLLoss``,
their ``forward`` not overridden), and only where the graph is the one expected: the
output's node is ``nll_loss``'s, no label smoothing, class-index targets, a plain
tensor (not a ``DTensor`` or other subclass), and no saved-tensor hooks (offloading,
checkpointing), under which reading the saved tensor would move or recompute it.
Anything else returns ``None`` and is recomputed as before.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["MIN_ELEMENTS", "elementwise_from_graph"]

#: Fewest log-probabilities (``N C ...``) read from the graph rather than recomputed.
MIN_ELEMENTS = 2**14

#: Autograd nodes of ``nll_loss`` (``NllLoss2D`` for inputs with positions).
_NLL_NODES = frozenset({"NllLossBackward0", "NllLoss2DBackward0"})
#: ``forward`` methods whose graph ends in ``nll_loss`` of the saved log-probabilities.
_PLAIN_FORWARDS = (nn.CrossEntropyLoss.forward, nn.NLLLoss.forward)


def elementwise_from_graph(
    loss_fn: nn.Module, output: Tensor, target: object
) -> Tensor | None:
    """The element-wise loss (shape of ``target``) from ``output``'s graph, or ``None``.

    Args:
        loss_fn: The loss module that produced ``output``.
        output: Its reduced output, just computed (before any backward pass).
        target: The target it was called with.

    Returns:
        ``-w_{y} logp_{y}`` per element (``0`` at ignored targets), detached; ``None``
        where the graph is not the plain ``nll_loss`` one or the loss is small
        (then recompute).
    """
    node = output.grad_fn
    if (
        node is None
        or type(node).__name__ not in _NLL_NODES
        or type(loss_fn).forward not in _PLAIN_FORWARDS
        or getattr(loss_fn, "label_smoothing", 0.0) != 0.0
        or not isinstance(target, Tensor)
        or target.is_floating_point()
        or _saved_tensor_hooks_active()
    ):
        return None
    log_probs, classes = node._saved_self.detach(), node._saved_target
    if (
        type(log_probs) is not Tensor  # a subclass (DTensor, ...): its own rules
        or log_probs.numel() < MIN_ELEMENTS
        or log_probs.dim() < 2
        or classes.numel() != target.numel()
    ):
        return None
    with torch.no_grad():
        kept = classes != node._saved_ignore_index
        index = torch.where(kept, classes, 0)
        loss = log_probs.gather(1, index.unsqueeze(1)).squeeze(1).neg()
        weight = node._saved_weight
        if weight is not None:
            loss = loss * weight[index]
        return loss.masked_fill(~kept, 0.0).view(target.shape)


def _saved_tensor_hooks_active() -> bool:
    """Whether saved-tensor hooks pack what autograd saves now (then do not unpack)."""
    top = getattr(torch._C._autograd, "_top_saved_tensors_default_hooks", None)
    if top is None:  # an older torch: assume they may be
        return True
    try:
        return top(False) is not None
    except TypeError:  # a torch whose function takes no argument
        return top() is not None
