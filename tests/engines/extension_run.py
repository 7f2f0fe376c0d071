"""One backward pass with a BackPACK extension under the tracker's hooks."""

from __future__ import annotations

import copy
from collections.abc import Callable

from backpack import backpack
from backpack.extensions.backprop_extension import BackpropExtension
from torch import Tensor, nn

from cockpit.engines._backpack_hooks import attach_hooks
from cockpit.engines._derivatives import cheaper_derivatives


def run(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    make_extension: Callable[[], BackpropExtension],
    cheaper: bool,
) -> dict:
    """The extension's savefields after one backward pass with the tracker's hooks.

    On a copy of ``model``, cross-entropy loss; with ``cheaper``, the extension's
    derivatives are :func:`~cockpit.engines._derivatives.cheaper_derivatives`'.
    The hooks run the extensions on each output's gradient, before the pooling's
    backward node frees its saved indices (BackPACK's own module backward hooks run
    after it, so the saved-index route would always fall back there), and tolerate
    in-place ReLUs.
    """
    model = copy.deepcopy(model)
    loss_fn = nn.CrossEntropyLoss()
    extension = make_extension()
    if cheaper:
        cheaper_derivatives(extension)
    leaves = [m for m in model.modules() if not list(m.children())]
    handles = attach_hooks(leaves, keep_outputs=True, loss_fn=loss_fn)
    loss = loss_fn(model(x), y)
    with backpack(extension):
        loss.backward()
    for handle in handles:
        handle.remove()
    field = extension.savefield
    out = {}
    for name, p in model.named_parameters():
        value = getattr(p, field)
        out[name] = [v.clone() for v in value] if isinstance(value, list) else value
        delattr(p, field)
    return out
