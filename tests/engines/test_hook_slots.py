"""The hooks' per-module work at a block's entry and in the backward pass.

``HookTargets`` keeps the hooked modules across blocks and must give what a fresh
walk of the model gives whenever the model or the engines change; ``HookSlots``
puts the forward hooks back under kept handles and must leave nothing installed
after a block, with the user's own hooks still running in their order;
``DirectCapture`` stores each ``Linear``'s output gradient in the backward pass and
must hand over the layer's own gradient (before an in-place change of its output).
"""

from __future__ import annotations

import torch
from torch import nn

from cockpit.engines._backpack_hooks import DirectCapture, attach_hooks
from cockpit.engines._hook_slots import HookSlots, HookTargets
from cockpit.engines.choice import assign


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(3, 4), nn.Tanh(), nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))
    )


def _engines(model: nn.Module):
    params = dict(model.named_parameters())
    return assign(model, params, "backpack", ["grad_norm"])


def test_targets_are_a_fresh_walk_of_the_model_after_every_change():
    model = _model()
    engines = _engines(model)
    slots = HookSlots()
    targets = HookTargets(slots)
    first = targets.layers(engines, model)
    for module in first:
        slots.install(module, lambda *_: None).remove()
    assert first == engines.layers(model)
    assert targets.layers(engines, model) is first  # kept: no walk
    # A replaced leaf, then a replaced parent on the way to two leaves: the kept
    # modules no longer run, and the new ones must be hooked.
    replaced = model[2][1]
    model[2][1] = nn.Linear(4, 2)
    assert targets.layers(engines, model) == engines.layers(model)
    assert replaced not in slots._handles  # not kept alive by its handle
    assert model[2][1] in targets.layers(engines, model)
    model[2] = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))
    found = targets.layers(engines, model)
    assert found == engines.layers(model) and model[2][0] in found
    # A parameter moved off BackPACK (a move found at a step).
    engines.backpack.remove("0.weight")
    engines.backpack.remove("0.bias")
    assert targets.layers(engines, model) == engines.layers(model)
    assert model[0] not in targets.layers(engines, model)
    # Another model with the same names.
    other = _model()
    assert targets.layers(engines, other) == engines.layers(other)


def test_slots_run_the_hook_each_block_and_leave_none_between_blocks():
    layer = nn.Linear(2, 2)
    slots = HookSlots()
    calls: list[str] = []
    for block in range(3):
        handle = slots.install(layer, lambda *_, b=block: calls.append(f"ours{b}"))
        if block == 1:  # the user's hook, registered while ours is installed
            mine = layer.register_forward_hook(lambda *_: calls.append("user"))
        layer(torch.ones(1, 2))
        handle.remove()
        assert len(layer._forward_hooks) == (1 if block >= 1 else 0)
        layer(torch.ones(1, 2))  # untracked: ours does not run
    mine.remove()
    assert not layer._forward_hooks
    # Ours goes in last at each block, after hooks registered before it.
    assert calls == ["ours0", "ours1", "user", "user", "user", "ours2", "user"]


def test_slots_register_again_when_the_hook_dict_was_replaced():
    layer = nn.Linear(2, 2)
    slots = HookSlots()
    slots.install(layer, lambda *_: None).remove()
    layer._forward_hooks = type(layer._forward_hooks)()
    ran = []
    handle = slots.install(layer, lambda *_: ran.append(1))
    layer(torch.ones(1, 2))
    handle.remove()
    assert ran == [1] and not layer._forward_hooks


def test_captured_output_gradient_is_the_layers_before_an_in_place_change():
    """``Linear -> ReLU(inplace) -> * 3``: the gradient w.r.t. the layer's output is
    ``3 * 1[out > 0]``, not the gradient w.r.t. the changed tensor."""
    torch.manual_seed(0)
    layer = nn.Linear(3, 4).double()
    x = torch.randn(5, 3, dtype=torch.float64)
    seen: list = []
    capture = DirectCapture(
        {nn.Linear: lambda *_: None}, lambda layers, on_error: seen.extend(layers)
    )
    (handle,) = attach_hooks([layer], direct=capture)
    out = layer(x)
    reference = out.detach().clone()
    torch.relu_(out)
    (out * 3).sum().backward()
    handle.remove()
    assert not seen  # nothing runs in the backward pass
    capture.finish()
    ((module, kept_x, grad),) = seen
    assert module is layer and kept_x is x
    torch.testing.assert_close(grad, 3.0 * (reference > 0).double())


def test_finish_reports_a_failing_layer_and_goes_on():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
    failed: dict[int, str] = {}
    done = []

    def later(layers, on_error):
        for module, _, _ in layers:
            if module is model[1]:
                on_error(module, ValueError("no batch dimension"))
            else:
                done.append(module)

    capture = DirectCapture({nn.Linear: lambda *_: None}, later, failed=failed)
    handles = attach_hooks(list(model), direct=capture)
    model(torch.ones(3, 2)).sum().backward()
    for handle in handles:
        handle.remove()
    capture.finish()
    assert done == [model[0]]
    assert failed == {id(model[1]): "ValueError: no batch dimension"}
