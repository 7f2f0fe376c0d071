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
  built by plain autograd (the tracker's route before the lean routes);
* ``forward + gradient graph, lean routes`` and ``product, lean routes``: the same
  with the forward pass under
  :class:`~cockpit.engines._lean_double_backward.LeanDoubleBackward`, as the
  tracker's replay runs it (same values, less second-order work);
* ``product, lean routes, hidden convolutions by autograd``: the same without the
  hidden convolutions' route (``LeanDoubleBackward(hidden_convolutions=False)``), so
  that route's saving is measured in the same rounds;
* ``product, forward-over-reverse``: ``torch.func.jvp(torch.func.grad(loss))``,
  which recomputes the gradient with every product;
* ``product, linearized``: ``torch.func.linearize`` of the gradient, traced once,
  then only the tangent pass per product; ``linearize (trace)`` is its set-up.

Run::

    .venv/bin/python benchmarks/hvp_cost.py --problem 3c3d --rounds 7
    .venv/bin/python benchmarks/hvp_cost.py --threads 1  # the thread CPU time
    .venv/bin/python benchmarks/hvp_cost.py --threads 1 --profile 3  # + ATen ops

``--profile K`` adds, for the two reverse-over-reverse products, torch.profiler's
ATen operations by self CPU time over K products (with input shapes).

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

from cockpit.engines._lean_double_backward import LeanDoubleBackward


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

    def lean_graph(hidden_convolutions: bool = True) -> tuple[torch.Tensor, ...]:
        with LeanDoubleBackward(hidden_convolutions):
            return graph()

    gradient, lean_gradient = graph(), lean_graph()
    autograds_hidden = lean_graph(hidden_convolutions=False)
    _, linear = linearize(grad(loss_of), detached)
    return {
        "plain step": plain,
        "replayed forward": lambda: model(x),
        "forward + gradient graph": graph,
        "product, reverse-over-reverse": lambda: torch.autograd.grad(
            gradient, params, vector, retain_graph=True
        ),
        "forward + gradient graph, lean routes": lean_graph,
        "product, lean routes": lambda: torch.autograd.grad(
            lean_gradient, params, vector, retain_graph=True
        ),
        "product, lean routes, hidden convolutions by autograd": lambda: (
            torch.autograd.grad(autograds_hidden, params, vector, retain_graph=True)
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
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--profile", type=int, default=0, metavar="K")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    parts = routes(args.problem)
    times: dict[str, list[float]] = {name: [] for name in parts}
    for _ in range(args.rounds):
        for name, part in parts.items():
            start = time.thread_time() if args.threads == 1 else time.perf_counter()
            part()
            end = time.thread_time() if args.threads == 1 else time.perf_counter()
            times[name].append(end - start)
    medians = {name: statistics.median(t) for name, t in times.items()}
    plain = medians["plain step"]
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(
        f"`benchmarks/hvp_cost.py --problem {args.problem} --rounds {args.rounds}"
        f"{'' if args.threads is None else f' --threads {args.threads}'}`: "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, cpu, load "
        f"average at the end {load}"
        f"{'; the thread CPU time' if args.threads == 1 else ''}.\n"
    )
    print("| part | median ms | ratio to a plain step |")
    print("|---|---:|---:|")
    for name, seconds in medians.items():
        print(f"| {name} | {1e3 * seconds:.1f} | {seconds / plain:.2f} |")
    for name in ("product, reverse-over-reverse", "product, lean routes"):
        if args.profile:
            profile_ops(name, parts[name], args.profile)


def profile_ops(name: str, part: Callable[[], object], products: int) -> None:
    """torch.profiler's table of ``products`` calls of ``part``, by self CPU time."""
    with torch.profiler.profile(record_shapes=True) as profiler:
        for _ in range(products):
            part()
    table = profiler.key_averages(group_by_input_shape=True).table(
        sort_by="self_cpu_time_total", row_limit=16, max_shapes_column_width=90
    )
    print(f"\n{name}, {products} products:\n\n```\n{table}```")


if __name__ == "__main__":
    main()
