"""The block's own gradient: read from ``.grad`` as the backward pass ends, or kept
as it arrives at each parameter (``cockpit/_block_grads.py``).

It is scaled as it is taken (the scaled product is the copy the block keeps), so what
changes ``.grad`` in place later inside the block does not reach the statistics.
"""

from __future__ import annotations

import pytest
import torch

import cockpit
from cockpit.exceptions import UsageError
from tests.quantities.tracking import assert_per_layer, linear_cockpit


def _batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(6, 4, generator=gen, dtype=torch.float64)
    return x, torch.randn(6, 3, generator=gen, dtype=torch.float64)


def _norms(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """``||.grad||`` per parameter and in total, the layout ``grad_norm`` logs."""
    norms = {n: p.grad.norm() for n, p in model.named_parameters()}
    norms["total"] = torch.stack(list(norms.values())).norm()
    return norms


def _untracked_norms(model, loss_fn, x, y) -> dict[str, torch.Tensor]:
    """:func:`_norms` of an untracked backward pass; ``.grad`` emptied after."""
    loss_fn(model(x), y).backward()
    norms = _norms(model)
    model.zero_grad(set_to_none=True)
    return norms


def test_clipping_inside_the_block_does_not_change_the_logged_gradient(tmp_path):
    model, loss_fn, ck = linear_cockpit(tmp_path, {"grad_norm": 1}, (4, 3))
    x, y = _batch()
    expected = _untracked_norms(model, loss_fn, x, y)
    with ck.track():
        loss_fn(model(x), y).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1e-3)
    ck.close()
    assert_per_layer(cockpit.load(ck.run_dir), "grad_norm", 0, expected)


def test_two_backward_passes_in_a_block_add_up(tmp_path):
    model, loss_fn, ck = linear_cockpit(tmp_path, {"grad_norm": 1}, (4, 3))
    x, y = _batch(1)
    with ck.track():
        loss = loss_fn(model(x), y)
        loss.backward(retain_graph=True)
        (0.5 * loss).backward()
    ck.close()
    # Each pass's gradient is divided by its own loss scale (1, then 0.5): 2 g.
    expected = {n: p.grad.norm() / 1.5 * 2 for n, p in model.named_parameters()}
    expected["total"] = torch.stack(list(expected.values())).norm()
    assert_per_layer(cockpit.load(ck.run_dir), "grad_norm", 0, expected)


def test_a_backward_pass_not_through_the_loss_is_refused(tmp_path):
    model, loss_fn, ck = linear_cockpit(tmp_path, {"grad_norm": 1}, (4, 3))
    x, y = _batch(2)
    refused = pytest.raises(UsageError, match="before the backward pass reached")
    with refused, ck.track():
        loss_fn(model(x), y)
        model(x).square().sum().backward()
    ck.close()


def test_a_hook_after_accumulation_does_not_change_the_logged_gradient(tmp_path):
    """A parameter hook run after its gradient is accumulated may change ``.grad``
    before the backward pass ends: the gradient is then kept as it arrives, not read
    from ``.grad``."""
    model, loss_fn, ck = linear_cockpit(tmp_path, {"grad_norm": 1}, (4, 3))
    x, y = _batch(3)
    expected = _untracked_norms(model, loss_fn, x, y)

    def inflate(p: torch.Tensor) -> None:
        p.grad.mul_(10.0)

    for p in model.parameters():
        p.register_post_accumulate_grad_hook(inflate)
    with ck.track():
        loss_fn(model(x), y).backward()
    ck.close()
    assert_per_layer(cockpit.load(ck.run_dir), "grad_norm", 0, expected)


def test_a_usual_block_hooks_no_parameter(tmp_path):
    """With every ``.grad`` empty as the block opens, the block's gradient is read as
    its backward pass ends: no hook on any parameter, and the logged gradient is
    that of the step."""
    model, loss_fn, ck = linear_cockpit(tmp_path, {"grad_norm": 1}, (4, 3))
    x, y = _batch(4)
    with ck.track():
        hooked = [len(p._backward_hooks or {}) for p in model.parameters()]
        loss_fn(model(x), y).backward()
    ck.close()
    assert hooked == [0, 0]
    expected = _norms(model)
    assert_per_layer(cockpit.load(ck.run_dir), "grad_norm", 0, expected)


def test_gradients_zeroed_inside_the_block_are_not_added(tmp_path):
    """``zero_grad(set_to_none=False)`` after the block opened (as a trainer may do)
    leaves zeros in ``.grad`` before the backward pass: the logged gradient is the
    pass's own, as it arrives."""
    model, loss_fn, ck = linear_cockpit(tmp_path, {"grad_norm": 1}, (4, 3))
    x, y = _batch(5)
    expected = _untracked_norms(model, loss_fn, x, y)
    with ck.track():
        model.zero_grad(set_to_none=False)
        loss_fn(model(x), y).backward()
    ck.close()
    assert_per_layer(cockpit.load(ck.run_dir), "grad_norm", 0, expected)
