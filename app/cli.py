"""The ``cockpit`` command line.

Subcommands::

    cockpit serve LOGDIR [--port 8050] [--host H] [--auth U:P]  the live dashboard
    cockpit demo [--steps N] [--logdir DIR] [--port 8050]   train the digits CNN, watch it
    cockpit report RUN_DIR -o cockpit.png [--dpi 150]       a static matplotlib report
    cockpit export RUN_DIR --tensorboard OUT_DIR            TensorBoard event files
    cockpit check RUN_DIR... [--fail-on error] [--format table]   diagnosis, exit status
    cockpit profile (SCRIPT [ARGS...] | --problem NAME) [--format json]  what tracking costs
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from cockpit.app.throttle import CHECK_S

__all__ = ["COMMAND_MODULES", "build_parser", "main"]

#: Subcommands besides ``serve``: modules of ``cockpit.app``, each with
#: ``add_parser(commands)`` (adds its sub-parser, with ``set_defaults(run=...)``) and
#: a ``run(args) -> int`` that the parser's default points to.
COMMAND_MODULES: tuple[str, ...] = (
    "demo_command",
    "report_command",
    "export_command",
    "check_command",
    "profile_command",
)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, one sub-parser per subcommand."""
    parser = argparse.ArgumentParser(
        prog="cockpit", description="See inside deep learning training."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = commands.add_parser(
        "serve",
        help="live dashboard over every run under LOGDIR",
        description="Serve the live dashboard over every run under LOGDIR. It only "
        "reads the log files, so it can run while training writes them.",
    )
    serve.add_argument("logdir", metavar="LOGDIR", help="directory holding the runs")
    serve.add_argument("--port", type=int, default=8050, help="TCP port (default 8050)")
    serve.add_argument(
        "--host",
        default="127.0.0.1",
        help="interface to bind (default 127.0.0.1, this machine only); widen it "
        "only with --auth or on a trusted network",
    )
    serve.add_argument(
        "--auth",
        metavar="USER:PASSWORD",
        help="require HTTP basic authentication for every request (default: the "
        "COCKPIT_AUTH environment variable, else none)",
    )
    serve.add_argument(
        "--interval",
        type=float,
        default=CHECK_S,
        help=f"seconds between checks for new steps (default {CHECK_S}); the "
        "panels redraw only when there are, at most every 0.5 s or three redraw "
        "times",
    )
    for name in COMMAND_MODULES:
        importlib.import_module(f"cockpit.app.{name}").add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``cockpit`` command; returns the exit status.

    Args:
        argv: Arguments without the program name; ``None`` reads ``sys.argv``.

    """
    args = build_parser().parse_args(argv)
    if hasattr(args, "run"):
        return args.run(args)
    if args.command == "serve":
        from cockpit.app.auth import credentials_from
        from cockpit.app.server import serve

        try:
            auth = credentials_from(args.auth)
            serve(args.logdir, args.host, args.port, args.interval, auth)
        except (FileNotFoundError, ValueError) as err:
            print(f"cockpit serve: {err}", file=sys.stderr)
            return 2
    return 0
