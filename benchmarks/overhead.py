"""Tracker overhead: step time and extra peak memory, as ratios to plain training.

Full run (both problems, every configuration, timing and memory; about 13 minutes on
an otherwise idle 2-core CPU, 4 of them timing and 9 the 108 memory probes; longer
while other processes use the CPUs)::

    .venv/bin/python benchmarks/overhead.py --memory

Other uses::

    .venv/bin/python benchmarks/overhead.py                       # timing only
    .venv/bin/python benchmarks/overhead.py --problems 3c3d --configs economy alpha
    .venv/bin/python benchmarks/overhead.py --rounds 3 --steps 3 --warmup 1
    .venv/bin/python benchmarks/overhead.py --device cuda --memory
    .venv/bin/python benchmarks/overhead.py --memory-child 3c3d economy  # one probe

Problems (models from ``cockpit.zoo.models``, built in ``_overhead/problems.py``):

* ``mlp``: ``digits_mlp``, Flatten 64 -> 128 -> ReLU -> 64 -> ReLU -> 10 on
  scikit-learn's ``load_digits`` (1x8x8 images scaled to [0, 1], in the fixed order of
  ``cockpit.zoo.digits``), batch 64.
* ``3c3d``: ``cnn_3c3d``, a DeepOBS-style 3c3d CNN (about 0.9 M parameters) on
  3x32x32 standard normal inputs with random labels (a fixed pool of 4 batches),
  batch 128::

      Conv2d(3, 64, 5) ReLU MaxPool2d(2)                    32 -> 28 -> 14
      Conv2d(64, 96, 3) ReLU MaxPool2d(2)                   14 -> 12 -> 6
      Conv2d(96, 128, 3, padding=1) ReLU MaxPool2d(2)        6 -> 6 -> 3
      Flatten Linear(1152, 512) ReLU Linear(512, 256) ReLU Linear(256, 10)

* ``transformer``: ``CharTransformer`` (2 blocks, width 64, 4 heads, context 64, 99
  characters, tied embedding; about 110,000 parameters) on a fixed pool of 4 batches
  of 32 windows of the standard library's source text (``cockpit.zoo.text``). The
  loss takes ``logits.transpose(1, 2)`` (``loss_input=`` for the tracker).
* ``resnet``: ``resnet_digits``, the residual CNN with GroupNorm of
  ``examples/resnet_digits.py`` (about 20,000 parameters) on the digits as 1x8x8
  images, batch 64.
* ``deep_mlp``: 64 hidden ``Linear(64, 64)`` layers with Tanh (orthogonal weights)
  between the digits' 64 inputs and 10 classes (132 parameter tensors, about 271,000
  parameters), batch 32: little arithmetic per step, so the tracker's cost per
  parameter tensor shows.

Library models (only with ``--problems``; they need the ``test`` extra's torchvision
and transformers, and are built with random weights, nothing downloaded):

* ``resnet18``: torchvision's ``resnet18(num_classes=10)`` (11.2 M parameters,
  BatchNorm in training mode) on the 3x32x32 noise images, batch 32.
* ``gpt2``: Hugging Face ``GPT2LMHeadModel`` from a config (4 layers, 4 heads, width
  128, context 64, 256 tokens; about 0.83 M parameters) on the text windows, batch
  16; the loss takes ``out.logits.transpose(1, 2)``.
* ``vit``: torchvision's ``VisionTransformer`` (32x32 images, 4x4 patches, 4 layers, 4
  heads, width 128, MLP 256, 10 classes; about 0.55 M parameters) on the noise images,
  batch 32.

Two problems have the sizes of GPU training (issue 12) and are meant for
``--device cuda``; on a CPU one step of them takes seconds:

* ``resnet18_cifar``: the ``resnet18`` above on batches of 128 noise images.
* ``gpt2_small``: GPT-2 small from the default ``GPT2Config`` (124 M parameters,
  dropout off) on 8 windows of 512 random token ids. ``benchmarks/gpu_check.sh``
  runs these, 3c3d and the transformer on a GPU machine in one go.

All train with ``CrossEntropyLoss`` and plain SGD (lr 0.01, no momentum, no weight
decay), so every quantity, ``early_stopping`` and ``cabs`` included, is defined.
The transformer and the residual network need the torch.func engine for some
parameters and for curvature (``engine="auto"`` chooses it; ``kfac_block`` is not
defined there and is left out with a warning).

Configurations (``_overhead/configs.py``): ``plain`` (no Cockpit at all), each preset in ``PRESETS`` with all of
its quantities at every step (``full``'s default schedule runs the costly curvature
quantities only every 10th step; ``full-scheduled`` is that default, whose cost shows in
the mean, not the median), and each quantity in ``REGISTRY`` alone
(``preset=None, quantities=[name]``) at every step, with its default options, and
``ggn_top_eigen/lanczos`` (``GgnTopEigen(method="lanczos")``, matrix-free),
``hess_max_ev/settled`` and ``full/settled`` (``HessMaxEv(max_error=None)``: the
estimate settled to ``tol`` alone, the stopping rule before the residual rule became
the default; alone, and with every quantity of ``full`` at every step) and
``hutchinson+hess_max_ev`` (``hess_trace`` with ``curvature="hessian"`` and
``hess_max_ev`` together: one replay and one gradient graph). A
configuration followed by ``/torch.func`` forces that engine (``economy/torch.func``;
the default is ``engine="auto"``), to compare it with BackPACK on a model both
handle; a preset followed by ``/replay8`` (``economy/replay8``) gives the Cockpit
``replay_samples=8``, the batch replay on 8 random samples per step (BatchNorm
models such as ``resnet18``), and by ``/hist64k`` (``economy/hist64k``)
``hist_samples=2**16``, a histogram sample 16 times smaller than the default. ``plain`` is always run, as the baseline of the ratios.

Timing (``_overhead/timing.py``): every configuration's model, optimizer and Cockpit are built once (same
initial weights, same batch sequence, so all train along the same trajectory). In
each of ``--rounds`` rounds, the configurations run in a shuffled order (seeded):
``--warmup`` untimed steps, then ``--steps`` steps each timed with
``time.perf_counter`` around ``zero_grad`` + forward + backward + ``step`` (after
``torch.cuda.synchronize()`` on a GPU). The Cockpit's writer thread runs in the
background as it does in training; after each configuration's block the script waits
(untimed, recorded per block as ``flush_s`` in the JSON) until that writer is idle, so
that one configuration's backlog does not slow down the next one. Reported: the median
over all timed steps and its ratio to plain's median, the ratio of the means (which
counts the occasional costly step of a schedule), and "host ms": the median CPU time
of the training thread per step (``time.thread_time`` around the step, before the
closing synchronize), which on a GPU is the host work that launches the step's
kernels and the tracker's Python.

CPU contention: while another process computes, a parallel CPU step slows down many
times over (an MLP step from 0.5 ms to 120 ms, a 3c3d step from 90 ms to 600 ms on 2
cores), so timings from a shared machine mean nothing unless checked. Each timed block
compares ``/proc/stat`` with this process's own CPU time; if other processes used more
than ``--contention-threshold`` of all CPUs during the block, it is run again once the
CPUs are quiet, for at most ``--patience`` seconds in all. The tables' footers count
repeated blocks and contended blocks that had to be kept.

Memory (``--memory``, ``_overhead/memory.py``): each configuration runs in a fresh subprocess
(``--memory-child PROBLEM CONFIG``) that builds everything, measures memory, runs 5
steps, closes the Cockpit (so the writer's work counts) and measures the peak. The
peak varies by some 10% between identical processes, so each configuration is probed
``--memory-repeats`` times (default 3, round-robin) and the median is reported.

* CPU: RSS after setup (``VmRSS``) and the peak RSS during the steps (``VmHWM`` of
  ``/proc/self/status``, reset to the current RSS right after setup by writing ``5``
  to ``/proc/self/clear_refs``). ``getrusage(RUSAGE_SELF).ru_maxrss`` is recorded in
  the JSON too but not used: a child started by ``fork``/``vfork`` + ``exec`` inherits
  the parent's peak RSS there (the kernel folds the old address space's high-water
  mark into it at ``exec``), so it reads the big timing process's peak, and it can
  never be reset after setup.
* CUDA: ``torch.cuda.memory_allocated`` after setup and ``max_memory_allocated``
  after ``reset_peak_memory_stats()``.

"Extra peak MB" = peak - after setup (MB = 10^6 bytes): the working memory of the
steps (activations, gradients, and the tracker's per-sample statistics and records).

Output (``_overhead/report.py``): a Markdown table per problem on stdout, and ``overhead-<device>.md`` / ``.json``
(raw numbers, command line, versions, date, CPU count, load average) in
``benchmarks/results/`` (``--output-dir``). ``<device>`` is ``cpu`` or the CUDA card's
name, slugified. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from _overhead.configs import CONFIGS, DEFAULT_CONFIGS, LR, PLAIN
from _overhead.memory import MEMORY_STEPS, measure_memory, memory_child
from _overhead.problems import DEFAULT_PROBLEMS, PROBLEMS, SEED
from _overhead.report import (
    environment,
    log,
    markdown_table,
    settings,
    summarize,
    write_results,
)
from _overhead.timing import CpuMonitor, time_problem


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n", 1)[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Configurations: " + ", ".join(CONFIGS),
    )
    parser.add_argument(
        "--problems", nargs="+", choices=PROBLEMS, default=DEFAULT_PROBLEMS
    )
    parser.add_argument(
        "--configs",
        nargs="+",
        choices=CONFIGS,
        default=DEFAULT_CONFIGS,
        metavar="CONFIG",
        help="configurations (plain is always added); default: all but the "
        "/torch.func variants other than economy/torch.func and business/torch.func",
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--steps", type=int, default=5, help="timed steps per config and round"
    )
    parser.add_argument(
        "--warmup", type=int, default=2, help="untimed steps per config and round"
    )
    parser.add_argument(
        "--memory", action="store_true", help="also measure extra peak memory"
    )
    parser.add_argument(
        "--memory-repeats",
        type=int,
        default=3,
        help="memory probes per configuration; the median is reported (default 3)",
    )
    parser.add_argument(
        "--device",
        default="cuda" if torch.cuda.is_available() else "cpu",
        help="cpu or cuda (default: cuda if available)",
    )
    parser.add_argument(
        "--contention-threshold",
        type=float,
        default=0.15,
        help="repeat a timed block if other processes used more than this share of "
        "all CPUs while it ran (default 0.15; 1 turns the check off)",
    )
    parser.add_argument(
        "--patience",
        type=float,
        default=180.0,
        help="seconds in all to spend waiting for quiet CPUs and repeating blocks",
    )
    parser.add_argument(
        "--output-dir", type=Path, default=Path(__file__).resolve().parent / "results"
    )
    parser.add_argument(
        "--memory-child",
        nargs=2,
        metavar=("PROBLEM", "CONFIG"),
        help="internal: measure one configuration's memory and print it as JSON",
    )
    args = parser.parse_args(argv)
    if min(args.rounds, args.steps, args.memory_repeats) < 1 or args.warmup < 0:
        parser.error(
            "--rounds, --steps and --memory-repeats must be >= 1, --warmup >= 0"
        )
    if args.memory_child and (
        args.memory_child[0] not in PROBLEMS or args.memory_child[1] not in CONFIGS
    ):
        parser.error(f"--memory-child takes one of {PROBLEMS} and one of {CONFIGS}")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    if args.memory_child:
        memory_child(*args.memory_child, device)
        return
    configs = [PLAIN, *(c for c in CONFIGS if c in args.configs and c != PLAIN)]
    env = environment(device)
    log(
        f"torch {env['torch']}, {env['torch_threads']} threads, {env['cpu_count']} "
        f"CPUs, device {device}; configs: {', '.join(configs)}"
    )
    started = time.perf_counter()
    results: dict[str, Any] = {}
    tables = []
    monitor = CpuMonitor(args.contention_threshold, args.patience)
    for problem in args.problems:
        timing = time_problem(problem, configs, args, device, monitor)
        memory = None
        if args.memory:
            memory = measure_memory(problem, configs, device, args.memory_repeats)
        rows = summarize(timing, memory)
        table = markdown_table(problem, timing, rows)
        tables.append(table)
        results[problem] = {"timing": timing, "memory": memory, "summary": rows}
        print(table + "\n", flush=True)
    env["wall_s"] = time.perf_counter() - started
    env["load_average_end"] = os.getloadavg()
    contention = (monitor.spent, monitor.available)
    options = settings(args, device, MEMORY_STEPS, LR, SEED, contention)
    write_results(args.output_dir, device, env, options, tables, results)


if __name__ == "__main__":
    main()
