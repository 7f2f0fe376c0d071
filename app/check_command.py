"""``cockpit check RUN_DIR...``: the diagnosis of runs, with an exit status for CI."""

from __future__ import annotations

import argparse
import json
import sys
import textwrap

from cockpit.diagnosis import (
    SEVERITIES,
    Alert,
    at_least,
    diagnose,
    headline,
    newest_first,
)
from cockpit.exceptions import LogFormatError

__all__ = ["add_parser", "format_table", "run"]

#: Exit status when an alert of ``--fail-on`` severity or worse was found.
FAILED = 1


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Add the ``check`` sub-parser to the ``cockpit`` command's subcommands."""
    parser = commands.add_parser(
        "check",
        help="diagnose runs: print their alerts, exit 1 on warnings or errors",
        description="Run the diagnosis rules over each run's log and print what they "
        "found. The exit status is 1 if an alert of --fail-on severity or worse still "
        "holds at the end of the log (alerts that ended, such as a plateau training "
        "left, are listed but do not fail; non-finite values never end), 2 if a run "
        "cannot be read, else 0.",
    )
    parser.add_argument(
        "run_dirs", metavar="RUN_DIR", nargs="+", help="run directories"
    )
    parser.add_argument(
        "--fail-on",
        choices=SEVERITIES[1:],
        default="error",
        help="the mildest severity that fails the check (default error)",
    )
    parser.add_argument(
        "--format",
        choices=("table", "json"),
        default="table",
        help="plain text for people, or one JSON object for machines",
    )
    parser.set_defaults(run=run)


def format_table(run: str, alerts: list[Alert]) -> str:
    """One run's diagnosis as text: its headline, then one block per alert."""
    lines = [f"{run}: {headline(alerts)}"]
    for alert in newest_first(alerts):
        layers = f" [{', '.join(alert.layers)}]" if alert.layers else ""
        lines.append(
            f"  {alert.severity.upper():8s}{alert.rule} ({alert.where()}){layers}"
        )
        for text in (alert.explanation, f"Try: {alert.suggestion}"):
            lines += textwrap.wrap(
                text, 88, initial_indent=" " * 10, subsequent_indent=" " * 10
            )
        lines.append(f"          Panel: {alert.instrument}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Diagnose the runs and print the result; returns the exit status."""
    found: dict[str, list[Alert]] = {}
    for run_dir in args.run_dirs:
        try:
            found[run_dir] = diagnose(run_dir)
        except (LogFormatError, OSError) as err:
            print(f"cockpit check: {err}", file=sys.stderr)
            return 2
    if args.format == "json":
        data = {name: [a.to_dict() for a in alerts] for name, alerts in found.items()}
        print(json.dumps({"runs": data, "fail_on": args.fail_on}, indent=2))
    else:
        print("\n".join(format_table(name, alerts) for name, alerts in found.items()))
    failing = any(
        a.ongoing and at_least(a.severity, args.fail_on)
        for alerts in found.values()
        for a in alerts
    )
    return FAILED if failing else 0
