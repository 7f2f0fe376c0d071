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

Problems:

* ``mlp``: the digits MLP, 64 -> 128 -> ReLU -> 64 -> ReLU -> 10 on scikit-learn's
  ``load_digits`` (8x8 images flattened, scaled to [0, 1]), batch 64.
* ``3c3d``: a DeepOBS-style 3c3d CNN (about 0.9 M parameters) on 3x32x32 standard
  normal inputs with random labels (a fixed pool of 4 batches), batch 128::

      Conv2d(3, 64, 5) ReLU MaxPool2d(2)                    32 -> 28 -> 14
      Conv2d(64, 96, 3) ReLU MaxPool2d(2)                   14 -> 12 -> 6
      Conv2d(96, 128, 3, padding=1) ReLU MaxPool2d(2)        6 -> 6 -> 3
      Flatten Linear(1152, 512) ReLU Linear(512, 256) ReLU Linear(256, 10)

* ``transformer``: ``examples/char_transformer.py``'s model (2 blocks, width 64, 4
  heads, context 64, 99 characters, tied embedding; about 110,000 parameters) on a
  fixed pool of 4 batches of 32 windows of the standard library's source text. The
  loss takes ``logits.transpose(1, 2)`` (``loss_input=`` for the tracker).
* ``resnet``: ``examples/resnet_digits.py``'s residual CNN with GroupNorm (about
  20,000 parameters) on the digits as 1x8x8 images, batch 64.

All train with ``CrossEntropyLoss`` and plain SGD (lr 0.01, no momentum, no weight
decay), so every quantity, ``early_stopping`` and ``cabs`` included, is defined.
The transformer and the residual network need the torch.func engine for some
parameters and for curvature (``engine="auto"`` chooses it; ``kfac_block`` is not
defined there and is left out with a warning).

Configurations: ``plain`` (no Cockpit at all), each preset in ``PRESETS`` with all of
its quantities at every step (``full``'s default schedule runs the costly curvature
quantities only every 10th step; ``full-scheduled`` is that default, whose cost shows in
the mean, not the median), and each quantity in ``REGISTRY`` alone
(``preset=None, quantities=[name]``) at every step, with its default options, and
``ggn_top_eigen/lanczos`` (``GgnTopEigen(method="lanczos")``, matrix-free). A
configuration followed by ``/torch.func`` forces that engine (``economy/torch.func``;
the default is ``engine="auto"``), to compare it with BackPACK on a model both
handle. ``plain`` is always run, as the baseline of the ratios.

Timing: every configuration's model, optimizer and Cockpit are built once (same
initial weights, same batch sequence, so all train along the same trajectory). In
each of ``--rounds`` rounds, the configurations run in a shuffled order (seeded):
``--warmup`` untimed steps, then ``--steps`` steps each timed with
``time.perf_counter`` around ``zero_grad`` + forward + backward + ``step`` (after
``torch.cuda.synchronize()`` on a GPU). The Cockpit's writer thread runs in the
background as it does in training; after each configuration's block the script waits
(untimed, recorded per block as ``flush_s`` in the JSON) until that writer is idle, so
that one configuration's backlog does not slow down the next one. Reported: the median
over all timed steps and its ratio to plain's median, and the ratio of the means (which
counts the occasional costly step of a schedule).

CPU contention: while another process computes, a parallel CPU step slows down many
times over (an MLP step from 0.5 ms to 120 ms, a 3c3d step from 90 ms to 600 ms on 2
cores), so timings from a shared machine mean nothing unless checked. Each timed block
compares ``/proc/stat`` with this process's own CPU time; if other processes used more
than ``--contention-threshold`` of all CPUs during the block, it is run again once the
CPUs are quiet, for at most ``--patience`` seconds in all. The tables' footers count
repeated blocks and contended blocks that had to be kept.

Memory (``--memory``): each configuration runs in a fresh subprocess
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

Output: a Markdown table per problem on stdout, and ``overhead-<device>.md`` / ``.json``
(raw numbers, command line, versions, date, CPU count, load average) in
``benchmarks/results/`` (``--output-dir``). ``<device>`` is ``cpu`` or the CUDA card's
name, slugified. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import os
import platform
import random
import re
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

import cockpit
from cockpit.quantities import PRESETS, REGISTRY, GgnTopEigen

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE.parent / "examples")]  # their models
PLAIN = "plain"
#: The full preset with its default schedules (costly curvature every 10th step).
SCHEDULED = "full-scheduled"
FUNC = "/torch.func"
#: Quantities with non-default options, as ``<quantity>/<variant>`` configurations.
VARIANTS = {"ggn_top_eigen/lanczos": lambda: GgnTopEigen(method="lanczos")}
CONFIGS = [PLAIN, *PRESETS, SCHEDULED, *REGISTRY]
assert len(set(CONFIGS)) == len(CONFIGS), "a preset and a quantity share a name"
DEFAULT_CONFIGS = [*CONFIGS, "economy" + FUNC, "business" + FUNC]
CONFIGS += [*VARIANTS]
CONFIGS += [c + FUNC for c in CONFIGS if c != PLAIN]
PROBLEMS = ["mlp", "3c3d", "transformer", "resnet"]
LR = 0.01
SEED = 0
MEMORY_STEPS = 5
CHILD_MARKER = "OVERHEAD-MEMORY-RESULT "


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- problems


def mlp_model() -> nn.Module:
    return nn.Sequential(
        nn.Linear(64, 128),
        nn.ReLU(),
        nn.Linear(128, 64),
        nn.ReLU(),
        nn.Linear(64, 10),
    )


def c3d3_model() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 64, 5),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(64, 96, 3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(96, 128, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(128 * 3 * 3, 512),
        nn.ReLU(),
        nn.Linear(512, 256),
        nn.ReLU(),
        nn.Linear(256, 10),
    )


def mlp_batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.as_tensor(digits.data, dtype=torch.float32) / 16.0
    y = torch.as_tensor(digits.target, dtype=torch.long)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(SEED))
    batch = 64
    return [
        (x[order[i : i + batch]], y[order[i : i + batch]])
        for i in range(0, len(x) - batch + 1, batch)
    ]


def c3d3_batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(SEED)
    return [
        (
            torch.randn(128, 3, 32, 32, generator=gen),
            torch.randint(0, 10, (128,), generator=gen),
        )
        for _ in range(4)
    ]


def transformer_model() -> nn.Module:
    from examples.char_transformer import ALPHABET, CharTransformer

    return CharTransformer(len(ALPHABET), width=64, heads=4, layers=2, context=64)


def transformer_batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    from examples.char_transformer import batches, load_text

    windows = batches(load_text(200_000), batch_size=32, context=64, seed=SEED)
    return [next(windows) for _ in range(4)]


def resnet_model() -> nn.Module:
    from resnet_digits import build_resnet

    return build_resnet()


def resnet_batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(x.view(-1, 1, 8, 8), y) for x, y in mlp_batches()]


def class_axis_second(logits: torch.Tensor) -> torch.Tensor:
    return logits.transpose(1, 2)


@dataclass
class Problem:
    name: str
    make_model: Any
    initial: dict[str, torch.Tensor]
    batches: list[tuple[torch.Tensor, torch.Tensor]]
    n_params: int
    loss_input: Any = None


def make_problem(name: str, device: torch.device) -> Problem:
    make_model, make_batches = {
        "mlp": (mlp_model, mlp_batches),
        "3c3d": (c3d3_model, c3d3_batches),
        "transformer": (transformer_model, transformer_batches),
        "resnet": (resnet_model, resnet_batches),
    }[name]
    torch.manual_seed(SEED)
    model = make_model()
    initial = copy.deepcopy(model.state_dict())
    batches = [(x.to(device), y.to(device)) for x, y in make_batches()]
    n_params = sum(p.numel() for p in model.parameters())
    loss_input = class_axis_second if name == "transformer" else None
    return Problem(name, make_model, initial, batches, n_params, loss_input)


@dataclass
class Run:
    """One configuration's training: model, optimizer, Cockpit (None for plain)."""

    config: str
    model: nn.Module
    loss_fn: nn.Module
    optimizer: torch.optim.Optimizer
    ck: Any
    loss_input: Any = None
    batch_index: int = 0

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        return self.loss_fn(out if self.loss_input is None else self.loss_input(out), y)

    def step(self, batches) -> None:
        x, y = batches[self.batch_index % len(batches)]
        self.batch_index += 1
        self.optimizer.zero_grad()
        if self.ck is None:
            self.loss(x, y).backward()
        else:
            with self.ck.track():
                self.loss(x, y).backward()
        self.optimizer.step()

    def flush(self) -> None:
        if self.ck is not None:
            self.ck.writer.flush()


def build_run(problem: Problem, config: str, device: torch.device, logdir: str) -> Run:
    model = problem.make_model().to(device)
    model.load_state_dict(problem.initial)
    loss_fn = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    ck = None
    if config != PLAIN:
        base = config.removesuffix(FUNC)
        # Presets with every quantity at every step (``full`` by default runs its
        # costly curvature quantities every 10th step only).
        names = list(PRESETS[base]) if base in PRESETS else [base]
        kwargs: dict[str, Any] = {
            "preset": None,
            "quantities": dict.fromkeys(names, 1),
        }
        if base == SCHEDULED:
            kwargs = {"preset": "full"}
        if base in VARIANTS:
            quantity = VARIANTS[base]()
            kwargs["quantities"] = {quantity.name: quantity}
        ck = cockpit.Cockpit(
            model,
            loss_fn,
            optimizer,
            logdir=logdir,
            run_name=f"{problem.name}-{config.replace('/', '-')}",
            engine="torch.func" if config.endswith(FUNC) else "auto",
            loss_input=problem.loss_input,
            **kwargs,
        )
    return Run(config, model, loss_fn, optimizer, ck, problem.loss_input)


def synchronizer(device: torch.device):
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


# ----------------------------------------------------------------------------- timing


class CpuMonitor:
    """Detects other processes using the CPUs, from ``/proc/stat`` and our own usage.

    On a shared machine a parallel step slows down many times over while another
    process computes (the intra-op threads wait for a descheduled sibling), which no
    statistic over steps can undo. So each timed block is checked: if, while it ran,
    other processes used more than ``threshold`` of all CPUs' time, the block is
    discarded and run again once the CPUs are quiet. Waiting and repeating stop after
    ``patience`` seconds in all; later contended blocks are kept and counted.
    """

    def __init__(self, threshold: float, patience: float):
        self.threshold = threshold
        self.patience = patience
        self.spent = 0.0
        self.available = self.snapshot() is not None

    @staticmethod
    def snapshot() -> tuple[int, int, int] | None:
        """``(total, busy, own)`` clock ticks: all CPUs, all busy, this process."""
        try:
            with open("/proc/stat") as stat:
                ticks = [int(v) for v in stat.readline().split()[1:9]]
            with open("/proc/self/stat") as own_stat:
                own = own_stat.read()
        except (OSError, ValueError):
            return None
        fields = own[own.rindex(")") + 2 :].split()
        total = sum(ticks)
        return total, total - ticks[3] - ticks[4], int(fields[11]) + int(fields[12])

    def others_share(self, before, after) -> float:
        """Share of all CPUs' time that other processes used between two snapshots."""
        if before is None or after is None:
            return 0.0
        total = after[0] - before[0]
        others = (after[1] - before[1]) - (after[2] - before[2])
        # Below 2 ticks (20 ms of one CPU) is noise of the tick accounting.
        return others / total if others >= 2 and total > 0 else 0.0

    def contended(self, share: float) -> bool:
        return self.available and share > self.threshold

    def can_wait(self) -> bool:
        return self.available and self.spent < self.patience

    def wait_for_quiet(self, window: float = 0.25, longest: float = 10.0) -> None:
        """Sleep until a ``window`` passes with the other processes quiet."""
        start = time.perf_counter()
        while self.can_wait() and time.perf_counter() - start < longest:
            before = self.snapshot()
            time.sleep(window)
            if not self.contended(self.others_share(before, self.snapshot())):
                break
        self.spent += time.perf_counter() - start


def timed_block(
    run: Run, problem: Problem, args: argparse.Namespace, sync, monitor: CpuMonitor
) -> dict[str, Any]:
    """Warm-up steps, then ``args.steps`` timed steps, repeated while contended."""
    attempts = 0
    while True:
        attempts += 1
        for _ in range(args.warmup):
            run.step(problem.batches)
        sync()
        before = monitor.snapshot()
        times = []
        for _ in range(args.steps):
            sync()
            t0 = time.perf_counter()
            run.step(problem.batches)
            sync()
            times.append(time.perf_counter() - t0)
        share = monitor.others_share(before, monitor.snapshot())
        contended = monitor.contended(share)
        if not contended or not monitor.can_wait():
            break
        t0 = time.perf_counter()
        run.flush()
        monitor.spent += sum(times) + time.perf_counter() - t0
        monitor.wait_for_quiet()
    return {
        "times": times,
        "others_share": share,
        "contended": contended,
        "attempts": attempts,
    }


def time_problem(
    name: str,
    configs: list[str],
    args: argparse.Namespace,
    device: torch.device,
    monitor: CpuMonitor,
) -> dict[str, Any]:
    problem = make_problem(name, device)
    log(f"[{name}] {problem.n_params:,} parameters ({problem.n_params / 1e6:.2f} M)")
    sync = synchronizer(device)
    times: dict[str, list[float]] = {c: [] for c in configs}
    blocks: list[dict[str, Any]] = []
    rng = random.Random(SEED)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="cockpit-overhead-") as logdir:
        runs = {c: build_run(problem, c, device, logdir) for c in configs}
        try:
            for r in range(args.rounds):
                order = list(configs)
                rng.shuffle(order)
                for config in order:
                    run = runs[config]
                    block = timed_block(run, problem, args, sync, monitor)
                    t0 = time.perf_counter()
                    run.flush()
                    block.update(
                        round=r, config=config, flush_s=time.perf_counter() - t0
                    )
                    blocks.append(block)
                    times[config].extend(block["times"])
                    note = f", others used {100 * block['others_share']:.0f}% CPU"
                    log(
                        f"[{name} round {r + 1}/{args.rounds}] {config:<22} median "
                        f"{1e3 * statistics.median(block['times']):8.1f} ms "
                        f"(try {block['attempts']}"
                        f"{note if block['contended'] else ''}; "
                        f"{time.perf_counter() - started:4.0f} s elapsed)"
                    )
        finally:
            for run in runs.values():
                if run.ck is not None:
                    run.ck.close()
        solver = {c: solver_effort(r) for c, r in runs.items()}
    return {
        "parameters": problem.n_params,
        "batch_size": len(problem.batches[0][1]),
        "seconds": time.perf_counter() - started,
        "step_times_s": times,
        "blocks": blocks,
        "solver": {c: effort for c, effort in solver.items() if effort},
    }


def solver_effort(run: Run) -> dict[str, dict[str, float]]:
    """Matrix-vector products per eigensolver solve and the converged share.

    For each quantity of the run that logs its solver's ``iterations``
    (``hess_max_ev``, ``ggn_top_eigen`` with ``method="lanczos"``).
    """
    if run.ck is None:
        return {}
    logged = cockpit.load(run.ck.run_dir)
    effort = {}
    for name in ("hess_max_ev", "ggn_top_eigen"):
        if f"{name}.iterations" not in set(logged.scalars["quantity"]):
            continue
        iterations = logged.scalar(f"{name}.iterations")
        effort[name] = {
            "solves": len(iterations),
            "mean_products": float(iterations.mean()),
            "max_products": float(iterations.max()),
            "converged_share": float(logged.scalar(f"{name}.converged").mean()),
        }
    return effort


# ----------------------------------------------------------------------------- memory


def _status_kib(field: str) -> int | None:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return None


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
    except OSError:
        return False
    return True


def memory_child(problem_name: str, config: str, device: torch.device) -> None:
    """Build one configuration, run a few steps, print the memory numbers as JSON."""
    import gc

    problem = make_problem(problem_name, device)
    sync = synchronizer(device)
    result: dict[str, Any] = {"problem": problem_name, "config": config}
    with tempfile.TemporaryDirectory(prefix="cockpit-overhead-mem-") as logdir:
        run = build_run(problem, config, device, logdir)
        gc.collect()
        sync()
        if device.type == "cuda":
            result["after_setup_bytes"] = torch.cuda.memory_allocated(device)
            torch.cuda.reset_peak_memory_stats(device)
        else:
            result["rss_after_setup_kib"] = _status_kib("VmRSS")
            result["peak_reset"] = _reset_peak_rss()
            result["hwm_after_reset_kib"] = _status_kib("VmHWM")
        for _ in range(MEMORY_STEPS):
            run.step(problem.batches)
        if run.ck is not None:
            run.ck.close()
        sync()
        if device.type == "cuda":
            result["peak_bytes"] = torch.cuda.max_memory_allocated(device)
            extra = result["peak_bytes"] - result["after_setup_bytes"]
        else:
            result["peak_rss_kib"] = _status_kib("VmHWM")
            extra = 1024 * (result["peak_rss_kib"] - result["rss_after_setup_kib"])
        result["ru_maxrss_kib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        result["extra_peak_bytes"] = extra
        result["steps"] = MEMORY_STEPS
    print(CHILD_MARKER + json.dumps(result), flush=True)


def memory_probe(problem: str, config: str, device: torch.device) -> dict[str, Any]:
    """One ``--memory-child`` run in a fresh interpreter."""
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--memory-child",
        problem,
        config,
        "--device",
        str(device),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    lines = [line for line in proc.stdout.splitlines() if line.startswith(CHILD_MARKER)]
    if proc.returncode != 0 or not lines:
        log(f"[{problem} memory] {config}: child failed\n{proc.stderr[-3000:]}")
        return {"error": proc.stderr[-3000:]}
    return json.loads(lines[-1][len(CHILD_MARKER) :])


def measure_memory(
    problem: str, configs: list[str], device: torch.device, repeats: int
) -> dict[str, dict[str, Any]]:
    """Each configuration ``repeats`` times (round-robin); the median extra peak.

    Peak RSS differs by some 10% between identical processes (allocator and thread
    timing), hence the repeats.
    """
    probes: dict[str, list[dict[str, Any]]] = {c: [] for c in configs}
    for r in range(repeats):
        for i, config in enumerate(configs, 1):
            t0 = time.perf_counter()
            probe = memory_probe(problem, config, device)
            probes[config].append(probe)
            if "extra_peak_bytes" in probe:
                log(
                    f"[{problem} memory {r + 1}/{repeats}, {i}/{len(configs)}] "
                    f"{config:<22} extra peak {probe['extra_peak_bytes'] / 1e6:8.1f} MB"
                    f" ({time.perf_counter() - t0:4.1f} s)"
                )
    results: dict[str, dict[str, Any]] = {}
    for config, runs in probes.items():
        extras = [p["extra_peak_bytes"] for p in runs if "extra_peak_bytes" in p]
        results[config] = {"runs": runs}
        if extras:
            results[config]["extra_peak_bytes"] = statistics.median(extras)
    return results


# ---------------------------------------------------------------------------- report


def device_slug(device: torch.device) -> str:
    if device.type != "cuda":
        return device.type
    name = torch.cuda.get_device_name(device)
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def summarize(
    timing: dict[str, Any], memory: dict[str, dict[str, Any]] | None
) -> list[dict[str, Any]]:
    times = timing["step_times_s"]
    base = statistics.median(times[PLAIN])
    base_mem = None
    if memory and "extra_peak_bytes" in memory.get(PLAIN, {}):
        base_mem = memory[PLAIN]["extra_peak_bytes"]
    rows = []
    for config, values in times.items():
        median = statistics.median(values)
        q1, _, q3 = (
            statistics.quantiles(values, n=4, method="inclusive")
            if len(values) > 1
            else (median, median, median)
        )
        row: dict[str, Any] = {
            "config": config,
            "median_ms": 1e3 * median,
            "mean_ms": 1e3 * statistics.fmean(values),
            "mean_ratio": statistics.fmean(values) / statistics.fmean(times[PLAIN]),
            "q1_ms": 1e3 * q1,
            "q3_ms": 1e3 * q3,
            "ratio": median / base,
            "extra_peak_mb": None,
            "memory_ratio": None,
        }
        extra = (memory or {}).get(config, {}).get("extra_peak_bytes")
        if extra is not None:
            row["extra_peak_mb"] = extra / 1e6
            if base_mem:
                row["memory_ratio"] = extra / base_mem
        rows.append(row)
    return rows


def markdown_table(problem: str, timing: dict[str, Any], rows) -> str:
    def fmt(value, spec):
        return "-" if value is None else format(value, spec)

    lines = [
        f"### {problem} ({timing['parameters']:,} parameters, "
        f"batch {timing['batch_size']})",
        "",
        "| config | median step ms | ratio to plain | mean ratio | extra peak MB "
        "| memory ratio to plain |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['config']} | {row['median_ms']:.1f} | {row['ratio']:.2f} "
            f"| {row['mean_ratio']:.2f} "
            f"| {fmt(row['extra_peak_mb'], '.1f')} "
            f"| {fmt(row['memory_ratio'], '.2f')} |"
        )
    for config, quantities in timing.get("solver", {}).items():
        for name, effort in quantities.items():
            lines += [
                "",
                f"{config}: {name} used {effort['mean_products']:.1f} matrix-vector "
                f"products per solve on average (at most {effort['max_products']:.0f}; "
                f"{effort['solves']} solves, {100 * effort['converged_share']:.0f}% "
                "converged).",
            ]
    blocks = timing["blocks"]
    repeated = sum(b["attempts"] - 1 for b in blocks)
    kept = [b for b in blocks if b["contended"]]
    lines += [
        "",
        f"Timed blocks: {len(blocks)}, repeated for CPU contention: {repeated}, "
        f"kept although contended: {len(kept)}"
        + (
            " (" + ", ".join(f"{b['config']} r{b['round'] + 1}" for b in kept) + ")"
            if kept
            else ""
        )
        + ".",
    ]
    return "\n".join(lines)


def environment(device: torch.device) -> dict[str, Any]:
    env = {
        "command": shlex.join([sys.executable, *sys.argv]),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
        "load_average_start": os.getloadavg(),
    }
    if device.type == "cuda":
        env["cuda_device"] = torch.cuda.get_device_name(device)
        env["cuda"] = torch.version.cuda
    return env


# ------------------------------------------------------------------------------- CLI


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n", 1)[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Configurations: " + ", ".join(CONFIGS),
    )
    parser.add_argument("--problems", nargs="+", choices=PROBLEMS, default=PROBLEMS)
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
    parser.add_argument("--output-dir", type=Path, default=HERE / "results")
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


def main(argv=None) -> None:
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
    settings = {
        "rounds": args.rounds,
        "steps": args.steps,
        "warmup": args.warmup,
        "memory": args.memory,
        "memory_steps": MEMORY_STEPS,
        "memory_repeats": args.memory_repeats,
        "lr": LR,
        "seed": SEED,
        "contention_threshold": args.contention_threshold,
        "patience_s": args.patience,
        "contention_wait_s": monitor.spent,
        "contention_check": monitor.available,
        "memory_measure": (
            "cuda max_memory_allocated - memory_allocated after setup"
            if device.type == "cuda"
            else "VmHWM (reset after setup via clear_refs) - VmRSS after setup"
        ),
    }
    slug = device_slug(device)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    header = [
        f"# Tracker overhead on {slug}",
        "",
        f"- command: `{env['command']}`",
        f"- date: {env['date']}",
        f"- torch {env['torch']}, python {env['python']}, {env['platform']}",
        f"- CPUs: {env['cpu_count']}, torch threads: {env['torch_threads']}, "
        f"device: {env.get('cuda_device', str(device))}",
        f"- load average at start / end: "
        f"{' '.join(f'{x:.2f}' for x in env['load_average_start'])} / "
        f"{' '.join(f'{x:.2f}' for x in env['load_average_end'])}",
        f"- rounds {args.rounds} x (warmup {args.warmup} + {args.steps} timed steps) "
        f"per config; memory: "
        + (
            f"{settings['memory_measure']}, median of {args.memory_repeats} "
            f"fresh processes x {MEMORY_STEPS} steps"
            if args.memory
            else "off"
        ),
        f"- CPU contention: a timed block is repeated (after waiting for quiet "
        f"CPUs) if other processes used > {100 * args.contention_threshold:.0f}% of "
        f"all CPUs while it ran; {monitor.spent:.0f} s of {args.patience:.0f} s "
        "patience spent"
        + ("" if monitor.available else " (check unavailable: no /proc/stat)"),
        f"- wall time: {env['wall_s']:.0f} s",
        "",
    ]
    md_path = args.output_dir / f"overhead-{slug}.md"
    json_path = args.output_dir / f"overhead-{slug}.json"
    md_path.write_text("\n".join(header) + "\n" + "\n\n".join(tables) + "\n")
    json_path.write_text(
        json.dumps(
            {"environment": env, "settings": settings, "results": results}, indent=1
        )
        + "\n"
    )
    log(f"wrote {md_path} and {json_path} ({env['wall_s']:.0f} s in all)")


if __name__ == "__main__":
    main()
