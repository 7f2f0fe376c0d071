"""Tiny convolution problems of every geometry, shared by the convolution tests."""

from __future__ import annotations

import torch
from torch import nn

N = 5

#: (name, convolution, input shape without batch): stride, padding (also "same"
#: and reflected), dilation, groups, with and without bias, and the other
#: convolution types' biases. All ungrouped Conv2d take the factor route.
CONVOLUTIONS = [
    ("plain", lambda: nn.Conv2d(3, 8, 3), (3, 5, 5)),
    ("stride", lambda: nn.Conv2d(3, 5, 3, stride=2), (3, 7, 7)),
    ("padding", lambda: nn.Conv2d(3, 8, (3, 2), padding=(1, 0)), (3, 3, 3)),
    ("dilation-no-bias", lambda: nn.Conv2d(2, 8, 2, dilation=2, bias=False), (2, 5, 5)),
    ("all", lambda: nn.Conv2d(3, 6, 3, stride=2, padding=1, dilation=2), (3, 7, 7)),
    (
        "reflect",
        lambda: nn.Conv2d(3, 8, 3, padding=1, padding_mode="reflect"),
        (3, 3, 3),
    ),
    ("same", lambda: nn.Conv2d(2, 8, (2, 3), padding="same", dilation=2), (2, 3, 3)),
    ("groups", lambda: nn.Conv2d(4, 6, 3, groups=2, padding=1), (4, 4, 4)),
    ("many-positions", lambda: nn.Conv2d(3, 2, 2), (3, 6, 6)),
    ("conv1d", lambda: nn.Conv1d(3, 4, 3, stride=2), (3, 9)),
    ("transpose", lambda: nn.ConvTranspose2d(3, 2, 3, stride=2), (3, 3, 3)),
]


def problem(make_conv, shape):
    """float64 ``conv -> tanh -> flatten -> linear`` on N inputs, cross-entropy."""
    torch.manual_seed(0)
    conv = make_conv().double()
    with torch.no_grad():
        features = conv(torch.zeros(1, *shape, dtype=torch.float64)).numel()
    model = nn.Sequential(conv, nn.Tanh(), nn.Flatten(), nn.Linear(features, 3))
    model = model.double()
    x = torch.randn(N, *shape, dtype=torch.float64)
    y = torch.randint(0, 3, (N,))
    return model, nn.CrossEntropyLoss(), x, y
