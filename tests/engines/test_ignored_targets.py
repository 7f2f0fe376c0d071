"""Per-sample losses and gradients when the loss ignores some targets.

A mean-reduced ``CrossEntropyLoss`` with ``ignore_index`` targets divides its summed
elements by the count ``Z`` of the targets it keeps, not by the number of
elements; the per-sample losses ``l_n = N sum_e loss_{n,e} / Z`` keep ``mean_n l_n``
equal to the loss, and every engine's per-sample gradients are those of these ``l_n``
(brute force: ``torch.autograd.grad`` of each ``l_n``).
"""

import pytest
import torch
from torch import nn

import cockpit
from tests import reference


def _brute_norm_test(model, loss_fn, x, y):
    out = model(x).transpose(1, 2)
    elementwise = nn.CrossEntropyLoss(reduction="none")(out, y)
    total = loss_fn(out, y)
    n = x.shape[0]
    z = elementwise.sum().detach() / total.detach()
    losses = elementwise.reshape(n, -1).sum(1) * n / z
    torch.testing.assert_close(losses.mean(), total)
    params = [p for p in model.parameters()]
    rows = [
        torch.cat(
            [
                g.reshape(-1)
                for g in torch.autograd.grad(loss, params, retain_graph=True)
            ]
        )
        for loss in losses
    ]
    return losses.detach(), reference.norm_test(torch.stack(rows))


@pytest.mark.parametrize("engine", ["backpack", "torch.func"])
def test_ignored_targets(tmp_path, engine):
    torch.manual_seed(0)
    model = nn.Linear(4, 5).double()
    loss_fn = nn.CrossEntropyLoss()
    x = torch.randn(3, 6, 4, dtype=torch.float64)
    y = torch.randint(0, 5, (3, 6))
    y[0, 1:] = -100
    y[2, :2] = -100
    losses, expected = _brute_norm_test(model, loss_fn, x, y)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    ck = cockpit.Cockpit(
        model,
        loss_fn,
        optimizer,
        logdir=tmp_path,
        preset=None,
        quantities=["loss", "norm_test"],
        engine=engine,
        loss_input=lambda out: out.transpose(1, 2),
    )
    optimizer.zero_grad()
    with ck.track():
        loss_fn(model(x).transpose(1, 2), y).backward()
    optimizer.step()
    ck.close()
    run = cockpit.load(ck.run_dir)
    assert run.scalar("loss").iloc[0] == pytest.approx(losses.mean().item(), rel=1e-12)
    assert run.scalar("loss.variance").iloc[0] == pytest.approx(
        losses.var().item(), rel=1e-10
    )
    assert run.scalar("norm_test").iloc[0] == pytest.approx(expected.item(), rel=1e-9)
