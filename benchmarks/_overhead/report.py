"""Reporting: progress lines, the summary rows, the Markdown tables and the result files.

Tables go to stdout; ``overhead-<device>.md`` and ``.json`` to the output directory;
progress to stderr.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shlex
import statistics
import sys
from pathlib import Path
from typing import Any

import torch

from _overhead.configs import PLAIN


def log(message: str) -> None:
    """A progress line on stderr."""
    print(message, file=sys.stderr, flush=True)


def device_slug(device: torch.device) -> str:
    if device.type != "cuda":
        return device.type
    name = torch.cuda.get_device_name(device)
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def summarize(
    timing: dict[str, Any], memory: dict[str, dict[str, Any]] | None
) -> list[dict[str, Any]]:
    times = timing["step_times_s"]
    host = timing.get("host_times_s", {})
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
            "host_ms": 1e3 * statistics.median(host[config])
            if config in host
            else None,
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


def markdown_table(
    problem: str, timing: dict[str, Any], rows: list[dict[str, Any]]
) -> str:
    def fmt(value: float | None, spec: str) -> str:
        return "-" if value is None else format(value, spec)

    lines = [
        f"### {problem} ({timing['parameters']:,} parameters, "
        f"batch {timing['batch_size']})",
        "",
        "| config | median step ms | ratio to plain | mean ratio | host ms "
        "| extra peak MB | memory ratio to plain |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['config']} | {row['median_ms']:.1f} | {row['ratio']:.2f} "
            f"| {row['mean_ratio']:.2f} "
            f"| {fmt(row['host_ms'], '.1f')} "
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


def settings(
    args: argparse.Namespace,
    device: torch.device,
    memory_steps: int,
    lr: float,
    seed: int,
    contention: tuple[float, bool],
) -> dict[str, Any]:
    """The JSON's ``settings``: the options, and ``contention`` = (wait s, checked)."""
    return {
        "rounds": args.rounds,
        "steps": args.steps,
        "warmup": args.warmup,
        "memory": args.memory,
        "memory_steps": memory_steps,
        "memory_repeats": args.memory_repeats,
        "lr": lr,
        "seed": seed,
        "contention_threshold": args.contention_threshold,
        "patience_s": args.patience,
        "contention_wait_s": contention[0],
        "contention_check": contention[1],
        "memory_measure": (
            "cuda max_memory_allocated - memory_allocated after setup"
            if device.type == "cuda"
            else "VmHWM (reset after setup via clear_refs) - VmRSS after setup"
        ),
    }


def _header(slug: str, env: dict[str, Any], settings: dict[str, Any]) -> list[str]:
    memory = (
        f"{settings['memory_measure']}, median of {settings['memory_repeats']} "
        f"fresh processes x {settings['memory_steps']} steps"
        if settings["memory"]
        else "off"
    )
    return [
        f"# Tracker overhead on {slug}",
        "",
        f"- command: `{env['command']}`",
        f"- date: {env['date']}",
        f"- torch {env['torch']}, python {env['python']}, {env['platform']}",
        f"- CPUs: {env['cpu_count']}, torch threads: {env['torch_threads']}, "
        f"device: {env.get('cuda_device', env['device'])}",
        f"- load average at start / end: "
        f"{' '.join(f'{x:.2f}' for x in env['load_average_start'])} / "
        f"{' '.join(f'{x:.2f}' for x in env['load_average_end'])}",
        f"- rounds {settings['rounds']} x (warmup {settings['warmup']} + "
        f"{settings['steps']} timed steps) per config; memory: " + memory,
        f"- CPU contention: a timed block is repeated (after waiting for quiet "
        f"CPUs) if other processes used > "
        f"{100 * settings['contention_threshold']:.0f}% of all CPUs while it ran; "
        f"{settings['contention_wait_s']:.0f} s of {settings['patience_s']:.0f} s "
        "patience spent"
        + (
            ""
            if settings["contention_check"]
            else " (check unavailable: no /proc/stat)"
        ),
        f"- wall time: {env['wall_s']:.0f} s",
        "",
    ]


def write_results(
    output_dir: Path,
    device: torch.device,
    env: dict[str, Any],
    settings: dict[str, Any],
    tables: list[str],
    results: dict[str, Any],
) -> None:
    """Write ``overhead-<device>.md`` (header and tables) and ``.json`` (everything)."""
    slug = device_slug(device)
    output_dir.mkdir(parents=True, exist_ok=True)
    md_path = output_dir / f"overhead-{slug}.md"
    json_path = output_dir / f"overhead-{slug}.json"
    header = _header(slug, env, settings)
    md_path.write_text("\n".join(header) + "\n" + "\n\n".join(tables) + "\n")
    json_path.write_text(
        json.dumps(
            {"environment": env, "settings": settings, "results": results}, indent=1
        )
        + "\n"
    )
    log(f"wrote {md_path} and {json_path} ({env['wall_s']:.0f} s in all)")
