"""A gradient that is zero by symmetry stays with its engine.

Adding the same bias to every key leaves softmax attention unchanged, so the key
bias's gradient is zero up to roundoff on both sides of the first step's check that
per-sample gradients add up to ``.grad``; rounding is no evidence of a use outside the
module, so the bias is not moved to the replay.
"""

import torch
from torch import nn

import cockpit


class KeyBiasAttention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.q = nn.Linear(4, 4, bias=False)
        self.k = nn.Linear(4, 4)
        self.v = nn.Linear(4, 4, bias=False)
        self.out = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scores = self.q(x) @ self.k(x).transpose(1, 2)
        return self.out((scores.softmax(-1) @ self.v(x)).mean(1))


def test_key_bias_stays_with_its_engine(tmp_path):
    torch.manual_seed(0)
    model = KeyBiasAttention()
    loss_fn = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    ck = cockpit.Cockpit(
        model,
        loss_fn,
        optimizer,
        logdir=tmp_path,
        preset=None,
        quantities=["norm_test"],
    )
    x, y = torch.randn(6, 5, 4), torch.randint(0, 3, (6,))
    optimizer.zero_grad()
    with ck.track():
        loss_fn(model(x), y).backward()
    optimizer.step()
    ck.close()
    assert model.k.bias.grad.abs().max() < 1e-6  # zero by symmetry, up to roundoff
    assert "k.bias" not in ck.engines.replay
    assert "k.bias" in ck.engines.backpack
