"""When each quantity runs.

A schedule is any callable ``step -> bool`` (``step`` counts ``track()`` blocks from 0).
Two ready-made ones cover most needs: :func:`every` (every k-th step) and
:func:`log_spaced` (dense early, sparse later, as in the first Cockpit's examples).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

Schedule = Callable[[int], bool]


@dataclass(frozen=True)
class every:  # noqa: N801 - reads like a function at the call site: every(10)
    """Due at steps ``start, start + k, start + 2k, ...``.

    Args:
        k: Interval in steps, at least 1.
        start: First due step.

    """

    k: int
    start: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.k, int) or self.k < 1:
            raise ValueError(
                f"every(k) needs an integer k >= 1, got {self.k!r}. "
                "Use every(1) for every step, every(10) for every tenth."
            )

    def __call__(self, step: int) -> bool:
        return step >= self.start and (step - self.start) % self.k == 0


@dataclass(frozen=True)
class log_spaced:  # noqa: N801
    """Due at ``floor(10 ** (i / per_decade))`` for i = 0, 1, ..., and at step 0.

    With ``per_decade=10`` that is steps 0, 1, 2, 3, 5, 6, 7, 10, 12, 15, ..., 100, 125,
    158, ...: about ``per_decade`` tracked steps per factor of ten.

    Args:
        per_decade: Tracked steps per factor of ten in the step count.

    """

    per_decade: int = 10

    def __post_init__(self) -> None:
        if not isinstance(self.per_decade, int) or self.per_decade < 1:
            raise ValueError(
                f"log_spaced(per_decade) needs an integer >= 1, got {self.per_decade!r}."
            )

    def __call__(self, step: int) -> bool:
        if step <= 1:
            return step >= 0
        # Step t is due iff some i has floor(10 ** (i / p)) == t, i.e. iff the interval
        # [p*log10(t), p*log10(t+1)) holds an integer.
        low = self.per_decade * math.log10(step)
        high = self.per_decade * math.log10(step + 1)
        first = math.ceil(low - 1e-9)
        return (
            first < high - 1e-9 and math.floor(10 ** (first / self.per_decade)) == step
        )


def as_schedule(spec: object, name: str) -> Schedule:
    """Turn a user's schedule spec (int k, or a callable) into a schedule.

    Args:
        spec: ``k`` (meaning ``every(k)``) or a callable ``step -> bool``.
        name: The quantity the schedule is for, used in the error message.

    Returns:
        A callable ``step -> bool``.

    Raises:
        TypeError: If ``spec`` is neither.

    """
    if isinstance(spec, bool):
        raise TypeError(
            f"Schedule for '{name}' must be an int or callable, got {spec!r}."
        )
    if isinstance(spec, int):
        return every(spec)
    if callable(spec):
        return spec
    raise TypeError(
        f"Schedule for '{name}' must be an int k (every k steps), every(k), "
        f"log_spaced(), or a callable step -> bool; got {type(spec).__name__}: {spec!r}."
    )
