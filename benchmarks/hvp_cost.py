"""What one Hessian-vector product costs on a benchmark problem, by route.

``hess_max_ev`` spends one replayed forward pass, one backward pass that builds the
gradient's graph, then one Hessian-vector product per Lanczos iteration. This times
each part against a plain training step, interleaved in rounds in one process
(medians), on the problem's first batch:

* ``plain step``: ``zero_grad``, forward, ``backward`` (what the ratios divide by);
* ``replayed forward``: the forward pass alone (what keeping the user's graph would
  save; it would also hold the graph's activations until the solve ends);
* ``forward + gradient graph``: forward and ``autograd.grad(create_graph=True)``;
* ``product, reverse-over-reverse``: ``autograd.grad`` through the gradient's graph
  (the tracker's route);
* ``product, forward-over-reverse``: ``torch.func.jvp(torch.func.grad(loss))``,
  which recomputes the gradient with every product;
* ``product, linearized``: ``torch.func.linearize`` of the gradient, traced once,
  then only the tangent pass per product; ``linearize (trace)`` is its set-up.

Run::

    .venv/bin/python benchmarks/hvp_cost.py --problem 3c3d --rounds 7

The load average is printed with the table: on a shared CPU only ratios measured in
the same rounds mean anything.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import torch
from _overhead.problems import PROBLEMS, make_problem
from torch import nn
from torch.func import functional_call, grad, jvp, linearize


def routes(name: str) -> dict[str, Callable[[], object]]:
    """The timed parts, as functions of nothing, on ``name``'s first batch."""
    problem = make_problem(name, torch.device("cpu"))
    model = problem.make_model()
    model.load_state_dict(problem.initial)
    x, y = problem.batches[0]
    to_loss = problem.loss_input or (lambda out: out)
    loss_fn = nn.CrossEntropyLoss()
    names = [n for n, _ in model.named_parameters()]
    params = [p for _, p in model.named_parameters()]
    detached = tuple(p.detach() for p in params)
    generator = torch.Generator().manual_seed(0)
    vector = tuple(torch.randn(p.shape, generator=generator) for p in params)

    def loss_of(values: tuple[torch.Tensor, ...]) -> torch.Tensor:
        out = functional_call(model, dict(zip(names, values, strict=True)), (x,))
        return loss_fn(to_loss(out), y)

    def plain() -> None:
        model.zero_grad()
        loss_fn(to_loss(model(x)), y).backward()

    def graph() -> tuple[torch.Tensor, ...]:
        loss = loss_fn(to_loss(model(x)), y)
        return torch.autograd.grad(loss, params, create_graph=True)

    gradient = graph()
    _, linear = linearize(grad(loss_of), detached)
    return {
        "plain step": plain,
        "replayed forward": lambda: model(x),
        "forward + gradient graph": graph,
        "product, reverse-over-reverse": lambda: torch.autograd.grad(
            gradient, params, vector, retain_graph=True
        ),
        "product, forward-over-reverse": lambda: jvp(
            grad(loss_of), (detached,), (vector,)
        ),
        "product, linearized": lambda: linear(vector),
        "linearize (trace)": lambda: linearize(grad(loss_of), detached),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--problem", choices=PROBLEMS, default="3c3d")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    parts = routes(args.problem)
    times: dict[str, list[float]] = {name: [] for name in parts}
    for _ in range(args.rounds):
        for name, part in parts.items():
            start = time.perf_counter()
            part()
            times[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(t) for name, t in times.items()}
    plain = medians["plain step"]
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(
        f"`benchmarks/hvp_cost.py --problem {args.problem} --rounds {args.rounds}`: "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, cpu, load "
        f"average at the end {load}.\n"
    )
    print("| part | median ms | ratio to a plain step |")
    print("|---|---:|---:|")
    for name, seconds in medians.items():
        print(f"| {name} | {1e3 * seconds:.1f} | {seconds / plain:.2f} |")


if __name__ == "__main__":
    main()
