"""The command line the trainer examples (Lightning, Hugging Face) share."""

from __future__ import annotations

import argparse

from cockpit.quantities import PRESETS


def build_parser(
    description: str, batch_size: int, lr: float
) -> argparse.ArgumentParser:
    """Where the run goes, what it tracks, and the batch size, learning rate and seed.

    Args:
        description: The example's ``--help`` text.
        batch_size: The example's default samples per step.
        lr: The example's default learning rate.

    Returns:
        The parser; each example adds how long it trains.

    """
    parser = argparse.ArgumentParser(
        description=description,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--logdir", default="runs", help="directory of the runs")
    parser.add_argument("--run-name", default=None, help="run directory name")
    parser.add_argument(
        "--batch-size", type=int, default=batch_size, help="samples per step"
    )
    parser.add_argument("--lr", type=float, default=lr, help="learning rate")
    parser.add_argument(
        "--preset", choices=sorted(PRESETS), default="economy", help="what to track"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the training")
    return parser
