"""``cockpit profile``: what each quantity and engine costs, before choosing.

Runs :func:`cockpit.profile.profile` (imported on use: this command needs torch,
the dashboard's commands do not) on a benchmark problem (``--problem``) or on the
model, loss and first batch of a user's script (``SCRIPT [ARGS...]``, run until its
first ``track()`` block), and prints a table or JSON.
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["add_parser", "run"]

#: The benchmark problems of ``cockpit.zoo.problems`` (kept here so that building
#: the parser does not import torch).
PROBLEMS = ("mlp", "3c3d", "transformer", "resnet", "tiny")


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Add the ``profile`` sub-parser to the ``cockpit`` command's subcommands."""
    parser = commands.add_parser(
        "profile",
        help="time and memory of every quantity and engine on a model",
        description="Train copies of a model for a few steps per configuration "
        "(plain, each quantity alone, engines, presets) and print what each costs: "
        "milliseconds per step over plain training, the ratio, extra peak memory.",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "script", nargs="?", metavar="SCRIPT", help="a training script to profile"
    )
    source.add_argument("--problem", choices=PROBLEMS, help="a benchmark problem")
    parser.add_argument(
        "script_args",
        nargs=argparse.REMAINDER,
        metavar="ARGS",
        help="SCRIPT's arguments; everything after SCRIPT goes to it, so give the "
        "options before SCRIPT",
    )
    parser.add_argument("--quantities", nargs="+", metavar="KEY", help="default: all")
    parser.add_argument("--steps", type=int, default=3, help="timed steps (default 3)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    parser.add_argument("--device", default=None, help="cpu or cuda (--problem only)")
    parser.add_argument("--format", choices=("table", "json"), default="table")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Profile and print; returns the exit status (2 on bad input)."""
    from cockpit.exceptions import CockpitError
    from cockpit.profile import format_table, profile, profile_script, to_json

    options = {"quantities": args.quantities, "steps": args.steps}
    options["warmup"] = args.warmup
    try:
        if args.problem:
            model, loss_fn, batches, loss_input = _problem(args.problem, args.device)
            rows = profile(model, loss_fn, batches, loss_input=loss_input, **options)
        else:
            rows = profile_script(args.script, args.script_args, **options)
    except CockpitError as err:
        print(f"cockpit profile: {err}", file=sys.stderr)
        return 2
    print(to_json(rows) if args.format == "json" else format_table(rows))
    return 0


def _problem(name: str, device: str | None) -> tuple:
    """Model, loss, batches and ``loss_input`` of a benchmark problem."""
    import torch

    from cockpit.zoo.problems import PROBLEMS as FACTORIES

    make_model, make_batches, loss_input = FACTORIES[name]
    where = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    torch.manual_seed(0)
    model = make_model().to(where)
    batches = [(x.to(where), y.to(where)) for x, y in make_batches()]
    return model, torch.nn.CrossEntropyLoss(), batches, loss_input
