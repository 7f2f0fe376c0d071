"""A track() block inside ``optimizer.step(closure)`` logs the step that closure led to.

PyTorch Lightning runs the training step and its backward pass inside the optimizer's
closure, after the step's pre-hooks; the tracker must still see the step taken.
"""

from __future__ import annotations

import torch
from torch import nn

import cockpit


def test_block_inside_the_closure_logs_the_step_taken(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 2)).double()
    loss_fn = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.3, momentum=0.9)
    ck = cockpit.Cockpit(
        model,
        loss_fn,
        optimizer,
        logdir=tmp_path,
        preset=None,
        quantities=["update_size", "loss"],
    )
    expected = []
    for _ in range(3):
        x = torch.randn(5, 4, dtype=torch.float64)
        y = torch.randint(2, (5,))

        def closure(x=x, y=y):
            optimizer.zero_grad()
            with ck.track():
                loss = loss_fn(model(x), y)
                loss.backward()
            return loss

        before = torch.cat([p.detach().reshape(-1).clone() for p in model.parameters()])
        optimizer.step(closure)
        after = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
        expected.append(torch.linalg.vector_norm(after - before).item())
    ck.close()

    run = cockpit.load(ck.run_dir)
    logged = run.scalar("update_size")
    assert logged.index.tolist() == [0, 1, 2]
    torch.testing.assert_close(
        torch.tensor(logged.to_numpy()),
        torch.tensor(expected, dtype=torch.float64),
        rtol=1e-12,
        atol=0,
    )
