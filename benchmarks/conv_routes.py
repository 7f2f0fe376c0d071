"""Conv2d weights: the factor route against BackPACK's grouped convolution, CPU time.

One tracked backward pass of ``Conv2d(C_in, C_out, k)`` on ``[128, C_in, hw, hw]``
inputs, then ReLU, Flatten and a ``Linear`` to 10 classes, with the statistics of
``economy`` (norms, dots, element-wise second moments, a histogram sample, a
projection now and one kept for later), once with the ``Conv2d`` weight on the
factor route (``cockpit/engines/_conv_factors.py``) and once on BackPACK's
``BatchGrad``. Reported: the median CPU time of the thread (1 intra-op thread) of a
plain and a tracked step, in ms::

    .venv/bin/python benchmarks/conv_routes.py 3 64 5 32   # C_in C_out k hw
"""

from __future__ import annotations

import statistics
import sys
import time

import torch
from backpack import backpack
from torch import nn

from cockpit.engines import backpack_engine
from cockpit.engines.layer_stats import SampleRequest


def _cpu_ms(step, repeats: int = 5) -> float:
    step()
    times = []
    for _ in range(repeats):
        start = time.thread_time()
        step()
        times.append(time.thread_time() - start)
    return statistics.median(times) * 1e3


def main() -> None:
    c_in, c_out, k, hw = map(int, sys.argv[1:5])
    torch.set_num_threads(1)
    torch.manual_seed(0)
    side = hw - k + 1
    model = nn.Sequential(
        nn.Conv2d(c_in, c_out, k),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(c_out * side**2, 10),
    )
    x, y = torch.randn(128, c_in, hw, hw), torch.randint(0, 10, (128,))
    loss_fn = nn.CrossEntropyLoss()
    params = dict(model.named_parameters())
    generator = torch.Generator().manual_seed(0)

    def plain() -> None:
        model.zero_grad()
        loss_fn(model(x), y).backward()

    def tracked() -> None:
        model.zero_grad()
        request = SampleRequest(
            mean_reduction=True,
            sum_sq=True,
            hist_budget=2**20,
            total_params=900_000,
            generator=lambda device: generator,
            directions={id(p): torch.randn(p.numel()) for p in params.values()},
            keep_for_projection=True,
        )
        handles = backpack_engine.attach_hooks(list(model.modules())[1:])
        with backpack(backpack_engine.PerSampleStats(request)):
            loss_fn(model(x), y).backward()
        for handle in handles:
            handle.remove()
        grads = {name: p.grad.reshape(-1) for name, p in params.items()}
        found = backpack_engine.collect(params, request, grads)
        for name, stats in found.items():
            stats.project(torch.randn(params[name].numel()))

    factors = backpack_engine.factor_route
    for label, rule in (("BatchGrad", lambda module: False), ("factors", factors)):
        backpack_engine.factor_route = rule
        print(
            f"{label}: plain {_cpu_ms(plain):.1f} ms, tracked {_cpu_ms(tracked):.1f} ms"
        )


if __name__ == "__main__":
    main()
