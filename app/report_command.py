"""``cockpit report RUN_DIR -o cockpit.png``: the instruments as a static figure."""

from __future__ import annotations

import argparse
import sys

from cockpit.exceptions import LogFormatError

__all__ = ["add_parser", "run"]


def _dpi(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Add the ``report`` sub-parser to the ``cockpit`` command's subcommands."""
    parser = commands.add_parser(
        "report",
        help="every instrument of one run as a PNG, PDF or SVG figure",
        description="Draw every instrument of one run into one static figure, for "
        "papers and machines without a browser. The extension of OUTPUT picks the "
        "format: .png, .pdf or .svg.",
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", help="one run directory")
    parser.add_argument(
        "-o",
        "--output",
        default="cockpit.png",
        metavar="OUTPUT",
        help="file to write (default cockpit.png)",
    )
    parser.add_argument(
        "--dpi",
        type=_dpi,
        default=150,
        help="resolution of a PNG and of the heat maps in a PDF or SVG (default 150)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Write the report; returns the exit status (2 for a bad run or output)."""
    # Imported here: matplotlib loads only when a report is drawn.
    from cockpit.instruments._reading import read_run
    from cockpit.instruments.report import check_output, report_figure, save

    try:
        check_output(args.output)
        data = read_run(args.run_dir, progress=True)
    except (LogFormatError, ValueError, OSError) as err:
        print(f"cockpit report: {err}", file=sys.stderr)
        return 2
    figure = report_figure(data, progress=True)
    try:
        path = save(figure, args.output, args.dpi)
    except OSError as err:
        print(f"cockpit report: {err}", file=sys.stderr)
        return 2
    print(f"Report of {data.name} written to {path}")
    return 0
