"""The batch replay's two routes for the backward passes, timed on models of all sizes.

:mod:`cockpit.engines.batch_replay` pulls the cotangents ``e_n`` of the per-sample
losses back through the replayed batch's graph either in vmapped chunks
(``autograd.grad(..., is_grads_batched=True)``) or one plain backward pass each, and
switches at :data:`~cockpit.engines.batch_replay.LOOP_WIDTH` parameters. This script
times both routes on one graph per model: BatchNorm CNNs of growing width, a small
LSTM classifier and, with ``--resnet18``, torchvision's ResNet-18 on the overhead
benchmark's batch of 32 images. Training thread's CPU time with one intra-op thread,
the best of ``--repeats``, in ms per cotangent::

    cd benchmarks && ../.venv/bin/python replay_routes.py --resnet18
"""

from __future__ import annotations

import argparse
import functools
import time
from collections.abc import Callable

import torch
from _overhead.problems import make_problem
from torch import Tensor, nn

from cockpit.engines.batch_replay import LOOP_WIDTH

BATCH = 32


def bn_cnn(width: int) -> nn.Module:
    """Two 3x3 convolutions of ``width`` channels with BatchNorm, on 8x8 images."""
    return nn.Sequential(
        nn.Conv2d(3, width, 3, padding=1),
        nn.BatchNorm2d(width),
        nn.ReLU(),
        nn.Conv2d(width, width, 3, padding=1),
        nn.BatchNorm2d(width),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(width * 64, 10),
    )


class LastState(nn.Module):
    """An LSTM's last hidden state, then a Linear (the batch replay's RNN case)."""

    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.LSTM(4, 8, batch_first=True)
        self.out = nn.Linear(8, 10)

    def forward(self, x: Tensor) -> Tensor:
        return self.out(self.rnn(x)[0][:, -1])


def cases(resnet18: bool) -> dict[str, tuple[nn.Module, Tensor, Tensor]]:
    """Name -> model in training mode, inputs and labels of a batch."""
    gen = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 10, (BATCH,), generator=gen)
    found = {
        f"bn_cnn width {w}": (bn_cnn(w), torch.randn(BATCH, 3, 8, 8, generator=gen))
        for w in (4, 32, 128)
    }
    found["lstm"] = (LastState(), torch.randn(BATCH, 5, 4, generator=gen))
    out = {name: (model, x, labels) for name, (model, x) in found.items()}
    if resnet18:
        problem = make_problem("resnet18", torch.device("cpu"))
        model = problem.make_model()
        model.load_state_dict(problem.initial)
        x, y = problem.batches[0]
        out["resnet18"] = (model, x, y)
    return out


def pull(losses: Tensor, params: list[Tensor], eye: Tensor, chunk: int) -> list:
    """The vjps of ``losses`` with the rows of ``eye``, ``chunk`` at a time (1: plain
    backward passes, else vmapped)."""
    return [
        torch.autograd.grad(
            losses,
            params,
            eye[first : first + chunk] if chunk > 1 else eye[first],
            retain_graph=True,
            is_grads_batched=chunk > 1,
        )
        for first in range(0, eye.shape[0], chunk)
    ]


def best_ms(run: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.thread_time()
        run()
        times.append(time.thread_time() - start)
    return 1e3 * min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--resnet18", action="store_true")
    parser.add_argument("--chunks", nargs="+", type=int, default=[4, 32])
    parser.add_argument("--cotangents", type=int, default=8, help="ResNet-18's")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    chunks = " | ".join(f"vmapped, chunk {c}" for c in args.chunks)
    print(f"| model | parameters | route chosen | one pass each | {chunks} |")
    print(f"|---|---:|---|---:|{'---:|' * len(args.chunks)}")
    for name, (model, x, y) in cases(args.resnet18).items():
        model.train()
        params = list(model.parameters())
        width = sum(p.numel() for p in params)
        losses = nn.functional.cross_entropy(model(x), y, reduction="none")
        count = args.cotangents if name == "resnet18" else BATCH
        eye = torch.eye(BATCH)[:count]
        cells = [
            best_ms(functools.partial(pull, losses, params, eye, c), args.repeats)
            / count
            for c in [1, *args.chunks]
        ]
        route = "one pass each" if width >= LOOP_WIDTH else "vmapped"
        row = " | ".join(f"{c:.2f}" for c in cells)
        print(f"| {name} | {width:,} | {route} | {row} |")


if __name__ == "__main__":
    main()
