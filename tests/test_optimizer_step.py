"""The step taken, read around ``optimizer.step()`` from flat views made once.

The views are remade when a parameter's storage moves; a step across such a move is
still the difference of the values before and after it.
"""

from __future__ import annotations

import torch
from torch import nn

import cockpit
from cockpit._optimizer_step import AwaitingStep, OptimizerWatch, _FlatParams
from cockpit.engines import fill
from cockpit.states import StepTaken
from tests.quantities.tracking import assert_per_layer, linear_cockpit


def test_flat_views_follow_in_place_updates_and_storage_moves():
    model = nn.Linear(3, 2).double()
    params = dict(model.named_parameters())
    flat = _FlatParams(params)
    first = flat.views()
    with torch.no_grad():
        model.weight.mul_(2.0)
    assert flat.views() is first
    torch.testing.assert_close(first[0], model.weight.detach().reshape(-1))
    model.weight.data = torch.randn(2, 3, dtype=torch.float64)
    moved = flat.views()
    assert moved is not first
    torch.testing.assert_close(moved[0], model.weight.detach().reshape(-1))
    assert moved[0].data_ptr() == model.weight.data_ptr()


def test_a_non_contiguous_parameter_is_flattened_afresh_each_time():
    model = nn.Linear(3, 2).double()
    model.weight.data = torch.randn(3, 2, dtype=torch.float64).t()
    flat = _FlatParams(dict(model.named_parameters()))
    first = flat.views()
    with torch.no_grad():
        model.weight.add_(1.0)
    second = flat.views()
    assert second is not first
    torch.testing.assert_close(second[0], model.weight.detach().reshape(-1))


def test_the_step_length_is_the_norm_of_the_per_parameter_norms():
    gen = torch.Generator().manual_seed(0)
    delta = {
        name: torch.randn(size, generator=gen, dtype=torch.float64)
        for name, size in [("a", 7), ("b", 1), ("c", 40)]
    }
    taken = StepTaken(delta)
    assert taken.names == list(delta)
    norms = torch.stack([s.norm() for s in delta.values()])
    torch.testing.assert_close(taken.norm_rows, norms, rtol=1e-15, atol=0)
    whole = torch.cat(list(delta.values())).norm()
    torch.testing.assert_close(taken.length, whole, rtol=1e-14, atol=0)


def test_update_size_across_a_replaced_parameter(tmp_path):
    model, loss_fn, ck = linear_cockpit(tmp_path, {"update_size": 1}, (4, 3))
    optimizer = ck.optimizer
    gen = torch.Generator().manual_seed(0)
    steps = []
    for step in range(3):
        x = torch.randn(5, 4, generator=gen, dtype=torch.float64)
        y = torch.randn(5, 3, generator=gen, dtype=torch.float64)
        if step == 1:  # new storage: views made at step 0 would read the old one
            model.weight.data = model.weight.detach().clone() + 1.0
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        optimizer.zero_grad()
        with ck.track():
            loss_fn(model(x), y).backward()
        optimizer.step()
        steps.append(
            {n: (p.detach() - before[n]).norm() for n, p in model.named_parameters()}
        )
    ck.close()
    run = cockpit.load(ck.run_dir)
    for step, expected in enumerate(steps):
        expected["total"] = torch.stack(list(expected.values())).norm()
        assert_per_layer(run, "update_size", step, expected)


def test_the_snapshot_is_released_before_the_step_states_are_filled(
    tmp_path, monkeypatch
):
    """The parameters' copy from before ``optimizer.step()`` is spent once the step
    is taken: holding it while the quantities run (the unit step, alpha's
    projections) added one buffer of the parameters' size to the phase's peak."""
    model, loss_fn, ck = linear_cockpit(tmp_path, {"update_size": 1}, (4, 3))
    waiting: list[AwaitingStep] = []
    held: list[list[torch.Tensor]] = []
    wait, fill_step_states = OptimizerWatch.wait, fill.step_states

    def keep_waiting(self, awaiting, seconds):
        waiting.append(awaiting)
        wait(self, awaiting, seconds)

    def step_states(*args, **kwargs):
        held.append(waiting[-1].before)
        return fill_step_states(*args, **kwargs)

    monkeypatch.setattr(OptimizerWatch, "wait", keep_waiting)
    monkeypatch.setattr(fill, "step_states", step_states)
    x = torch.randn(5, 4, dtype=torch.float64)
    y = torch.randn(5, 3, dtype=torch.float64)
    for _ in range(2):
        ck.optimizer.zero_grad()
        with ck.track():
            loss_fn(model(x), y).backward()
        ck.optimizer.step()
    ck.close()
    assert held == [[], []]
