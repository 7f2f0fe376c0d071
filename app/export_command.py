"""``cockpit export RUN_DIR --tensorboard OUT_DIR``: a run as TensorBoard event files.

The events go to ``OUT_DIR/<run name>/``, so several runs exported into one OUT_DIR
appear as separate runs of ``tensorboard --logdir OUT_DIR``. Tags and values are those
of the tracker's ``tensorboard=True`` mirror (see ``cockpit.logs.tensorboard``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cockpit.exceptions import ConfigurationError, LogFormatError

__all__ = ["add_parser", "run"]


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Add the ``export`` sub-parser to the ``cockpit`` command's subcommands."""
    parser = commands.add_parser(
        "export",
        help="write one run as TensorBoard event files",
        description="Write the scalars (total and per layer) and the 1D gradient "
        "histograms of one run as TensorBoard event files into OUT_DIR/<run name>/.",
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", help="one run directory")
    parser.add_argument(
        "--tensorboard",
        required=True,
        metavar="OUT_DIR",
        help="directory of TensorBoard runs to write into",
    )
    parser.set_defaults(run=run)


def _target(out_dir: Path, name: str) -> Path:
    """``out_dir/name``, refused if it holds events already (they would be doubled)."""
    target = out_dir / name
    if target.is_dir() and any(target.glob("events.out.tfevents.*")):
        raise FileExistsError(
            f"{target} already holds TensorBoard events; exporting again would show "
            "every value twice. Delete it, or choose another OUT_DIR."
        )
    if out_dir.exists() and not out_dir.is_dir():
        raise NotADirectoryError(
            f"Cannot write into {out_dir}: it is not a directory. Choose another OUT_DIR."
        )
    return target


def run(args: argparse.Namespace) -> int:
    """Export the run; returns the exit status (2 for a bad run or OUT_DIR)."""
    from cockpit.instruments._reading import read_chunks
    from cockpit.logs import LogReader
    from cockpit.logs.tensorboard import TensorBoardWriter

    try:
        reader = LogReader(args.run_dir)
        meta = reader.meta()
        name = str(meta.get("run_name") or Path(args.run_dir).name)
        writer = TensorBoardWriter(_target(Path(args.tensorboard), name))
        try:
            for records in read_chunks(reader, progress=True):
                for record in records:
                    writer.write(record)
        finally:
            writer.close()
    except (LogFormatError, ConfigurationError, OSError) as err:
        print(f"cockpit export: {err}", file=sys.stderr)
        return 2
    print(
        f"Exported {writer.scalars_written} scalars and {writer.histograms_written} "
        f"histograms of {name} to {writer.logdir}; view them with: "
        f"tensorboard --logdir {args.tensorboard}"
    )
    return 0
