"""The overhead budget's two clocks: a step's extra time from wall and CPU time.

A step's wall time is what the budget is about, but on a shared machine it varies
tenfold with the other processes' load, and the difference of two noisy wall times
can price the per-sample pass at 0 (or below), which no scale corrects (it did on
this project's loaded 2-core machine: ``benchmarks/results/budget2/``, README
"Overhead budget"). So the tracker also reports the training thread's CPU time per step
(``time.thread_time``, one float read), which waiting for the cores does not
inflate. A step's extra time beyond the plain step (:func:`step_extra`) is its CPU
extra converted to wall time by the plain steps' own ratio of wall to CPU time,
where that ratio is not steady (the load varies: the wall extra would be noise); and
where it is steady, the larger of that and the wall extra: on an idle CPU the two
agree, and on a GPU, where the thread's CPU time misses the device's work, the wall
extra is the larger. :mod:`cockpit._budget` prices a probe by the median of up to
9 such extras.

Both clocks can still price a cheap step at 0: under a load of 10 or more on 2 cores
the thread's CPU time of a plain step varies by more than a step tracking only the
loss adds to it (``benchmarks/results/writerbudget/``). So a tracked step's extra
has a floor load cannot shrink: the seconds the tracker measured itself spending in
that step (``tracker_time``: its ``track()`` entry and exit and its hooks in the
backward pass, on the training thread). They are wall seconds (``perf_counter``,
read where the tracker already reads it, no more clock reads per hook), so at a
given load they hold what waiting for the cores adds to that code as the step's
wall time does; the step cannot have added less than the code it ran. On a GPU
they are the host's seconds only, a floor of the extra host work: the device's
work is not in them, and where the host waits for the device anyway the floor may
overprice, on the side of the budget.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["PlainStep", "step_extra"]

#: Plain steps whose ratio of wall to CPU time varies more than this factor (largest
#: over smallest) are under a varying load: their wall time does not price a step.
STEADY = 1.5


@dataclass(frozen=True)
class PlainStep:
    """The plain step on both clocks, from recent untracked steps.

    Attributes:
        wall: The median wall seconds.
        cpu: The median CPU seconds of the training thread, or None (not reported).
        steady: Whether their ratio, wall over CPU, varied by at most
            ``STEADY`` (largest over smallest) across the steps.

    """

    wall: float
    cpu: float | None
    steady: bool

    @classmethod
    def of(cls, wall: Sequence[float], cpu: Sequence[float | None]) -> PlainStep:
        """From the untracked steps' wall and CPU seconds (equally many)."""
        known = [c for c in cpu if c is not None and c > 0]
        if not known or len(known) != len(wall):
            return cls(statistics.median(wall), None, True)
        ratios = [w / c for w, c in zip(wall, known, strict=True)]
        steady = max(ratios) <= STEADY * min(ratios)
        return cls(statistics.median(wall), statistics.median(known), steady)


def step_extra(
    wall: float, cpu: float | None, plain: PlainStep, own: float = 0.0
) -> float:
    """A step's seconds beyond the plain step's (module doc), at least ``own``.

    The thread's CPU extra in wall seconds, ``(cpu - plain.cpu) * plain.wall /
    plain.cpu`` (the plain steps' ratio of wall to CPU time, i.e. the machine's
    load and the device's share, applied to the work the step added on the training
    thread); where the plain steps' ratio is steady, the wall extra ``wall -
    plain.wall`` if it is larger. Without CPU times (``None``), the wall extra.
    Never less than ``own``, the tracker's own measured seconds in the step (0 for
    an untracked one).
    """
    if cpu is None or plain.cpu is None:
        return max(wall - plain.wall, own)
    extra = (cpu - plain.cpu) * plain.wall / plain.cpu
    return max(extra, wall - plain.wall, own) if plain.steady else max(extra, own)
