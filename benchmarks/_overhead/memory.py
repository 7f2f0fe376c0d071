"""Memory probes: one configuration per fresh process, the extra peak of its steps.

``overhead.py --memory-child PROBLEM CONFIG`` runs :func:`memory_child`;
:func:`measure_memory` starts those children and takes the median of their repeats.
``overhead.py``'s docstring says what is measured and why.
"""

from __future__ import annotations

import gc
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from _overhead.configs import build_run
from _overhead.problems import make_problem
from _overhead.report import log
from _overhead.timing import synchronizer

#: The entry point that runs a child (``--memory-child``).
SCRIPT = Path(__file__).resolve().parents[1] / "overhead.py"
MEMORY_STEPS = 5
CHILD_MARKER = "OVERHEAD-MEMORY-RESULT "


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
        str(SCRIPT),
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
