"""Cold open of a long run: its size, ``cockpit.load`` and the dashboard's first poll.

Run from the repository root (the first call trains the templates and writes the run,
a few minutes on a 2-core CPU; later calls reuse it)::

    .venv/bin/python benchmarks/load_speed.py /tmp/load-speed
    .venv/bin/python benchmarks/load_speed.py /tmp/load-speed --steps 10000  # quicker
    .venv/bin/python benchmarks/load_speed.py /tmp/load-speed --steps 1000000 --no-hist
    .venv/bin/python benchmarks/load_speed.py /tmp/load-speed --json-opens

The run: the digits CNN of ``cockpit demo`` trains ``--template-steps`` steps with the
``economy`` preset; its log lines, repeated with shifted steps, are written by the real
``RunWriter`` into ``DIR/economy-<steps>`` (as ``benchmarks/dashboard.py`` does), so
every line is what this checkout's writer writes, and the writer's columnar cache
(``RUN/.columns``, segments written as the log grows) is what it leaves. The bytes
of a ``full``-preset step: ``benchmarks/log_size.py``.

Measured, each in a fresh process (``VmHWM`` of ``/proc/self/status``: peak resident
memory of that process, imports included; ``import`` is the peak after the imports alone),
in this order:

* ``load``, ``load+hist`` and ``store``: the first open of the run as the writer left
  it, each in a fresh process. ``load`` is ``cockpit.load(run)``, the pandas frames;
  it builds ``Run.histograms`` on first use, ``load+hist`` also asks for it.
  ``store`` is the dashboard's polls, ``RunStore(DIR).poll()`` until the run is read
  whole (the store reads a bounded number of bytes per run and poll); its diagnosis
  of cached records goes on in the background afterwards, not timed.
* with ``--json-opens``, the same run without any cache (``RUN/.columns`` removed
  first, each time): ``store`` and ``load`` decode the JSON and write the readers'
  cache as they go (minutes for 100,000 steps).

Output: one JSON object per measurement on stdout, with the load average (1 minute)
at its end: the CPU may be shared.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from _dashboard.records import repeated, template_records, write_run


def _peak_mb() -> float:
    """This process's peak resident memory (``VmHWM``; ``ru_maxrss`` would keep the
    peak of the parent it was forked from, which trained the templates)."""
    status = Path("/proc/self/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+)", status).group(1)) / 1024


def child(what: str, path: Path) -> dict:
    """Time one cold read of ``path`` in this (fresh) process."""
    if what.startswith("load"):
        import cockpit.logs  # pandas and the reader, before the clock

        imported = _peak_mb()
        start = time.perf_counter()
        run = cockpit.load(path)
        if what == "load+hist":
            run.histograms  # noqa: B018 (built on first use)
        seconds = time.perf_counter() - start
        rows = len(run.scalars)
    else:
        from cockpit.app.store import RunStore

        imported = _peak_mb()
        start = time.perf_counter()
        store = RunStore(path.parent)
        polls = 0
        state = None
        while state is None or state.reader.unread_bytes():
            store.poll()
            state = store.state(path.name)
            polls += 1
        seconds = time.perf_counter() - start
        rows = polls
    return {
        "what": what,
        "seconds": round(seconds, 2),
        "peak_mb": round(_peak_mb()),
        "import_peak_mb": round(imported),
        "rows_or_polls": rows,
        "cached_mb": round(_cache_bytes(path) / 1e6, 1),
        "load_average": round(os.getloadavg()[0], 1),
    }


def _cache_bytes(run_dir: Path) -> int:
    return sum(p.stat().st_size for p in (run_dir / ".columns").glob("*.arrow"))


def make_run(folder: Path, steps: int, template_steps: int) -> Path:
    """Write the ``steps``-step economy run under ``folder`` unless it is there."""
    run_dir = folder / "long" / f"economy-{steps}"
    if (run_dir / "steps.jsonl").is_file():
        return run_dir
    shutil.rmtree(folder / "template", ignore_errors=True)  # of an earlier call
    (folder / "template").mkdir(parents=True)
    templates, meta = template_records(template_steps, folder / "template")
    start = time.perf_counter()
    write_run(run_dir, meta, repeated(templates, template_steps, steps))
    seconds = time.perf_counter() - start
    print(json.dumps({"wrote": steps, "seconds": round(seconds, 1)}), flush=True)
    return run_dir


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="where the run is (or goes)")
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--template-steps", type=int, default=50)
    parser.add_argument(
        "--json-opens", action="store_true", help="also open without any cache"
    )
    parser.add_argument(
        "--no-hist",
        action="store_true",
        help="skip load+hist (a million histograms as Python lists take gigabytes)",
    )
    parser.add_argument(
        "--child", choices=("load", "load+hist", "store"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.folder)))
        return
    run_dir = make_run(args.folder, args.steps, args.template_steps)
    size = (run_dir / "steps.jsonl").stat().st_size
    print(json.dumps({"run": str(run_dir), "mb": round(size / 1e6, 1)}), flush=True)
    json_opens = ["store", "load"] if args.json_opens else []
    opens = ("load", "store") if args.no_hist else ("load", "load+hist", "store")
    for what, uncached in [(w, False) for w in opens] + [(w, True) for w in json_opens]:
        if uncached:
            shutil.rmtree(run_dir / ".columns", ignore_errors=True)
        command = [sys.executable, __file__, str(run_dir), "--child", what]
        result = json.loads(subprocess.check_output(command, text=True))
        cache = "none" if uncached else "writer's"
        print(json.dumps({**result, "cache": cache}), flush=True)


if __name__ == "__main__":
    main()
