"""A stand-in training process: writes a run step by step, as the tracker would.

Run as ``python -m tests.app.live_writer RUN_DIR`` from the repository root. It writes
``--first`` steps at once, then one step every ``--interval`` seconds, through the
real log writer, until killed or ``--seconds`` have passed.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from cockpit.logs import RunWriter
from tests.instruments.synthetic import step_records


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--first", type=int, default=30)
    parser.add_argument("--interval", type=float, default=0.5)
    parser.add_argument("--seconds", type=float, default=300.0)
    parser.add_argument("--economy", action="store_true")
    args = parser.parse_args()
    meta = {
        "run_name": args.run_dir.name,
        "preset": "economy" if args.economy else "full",
    }
    end = time.monotonic() + args.seconds
    with RunWriter(args.run_dir, meta) as writer:
        step = 0
        while time.monotonic() < end:
            for record in step_records(step, curvature=not args.economy):
                writer.submit(record)
            writer.flush()
            step += 1
            if step >= args.first:
                time.sleep(args.interval)


if __name__ == "__main__":
    main()
