"""The budget's two clocks: a step's extra seconds from its wall and CPU time."""

import pytest

from cockpit._budget_clocks import PlainStep, step_extra


def test_steady_load_takes_the_larger_extra():
    """A GPU: plain steps wait 3 s on the device for 1 s of thread CPU, steadily.

    A tracked step queueing 2 s more device work and 0.1 s more host work: its CPU
    extra in wall seconds is 0.3 s, its wall extra 2.1 s, the larger.
    """
    plain = PlainStep.of([4.0, 4.1, 3.9], [1.0, 1.02, 0.98])
    assert plain.steady and plain.wall == 4.0 and plain.cpu == 1.0
    assert step_extra(6.1, 1.1, plain) == pytest.approx(2.1)
    # An idle CPU with a step whose wall time says less than its CPU time: the CPU.
    idle = PlainStep.of([1.0, 1.0], [1.0, 1.0])
    assert step_extra(1.05, 1.2, idle) == pytest.approx(0.2)


def test_varying_load_prices_by_the_cpu_time_in_wall_seconds():
    """Plain steps stretched 1x to 10x by other processes: the wall extra is noise.

    A tracked step with 0.05 s more CPU than the plain 0.1 s, caught at a light
    moment (wall 0.2 s against a median plain wall of 0.5 s): the wall says -0.3 s,
    the CPU extra at the plain steps' median stretch (5x) says 0.25 s.
    """
    plain = PlainStep.of([0.1, 0.5, 1.0, 0.3, 0.7], [0.1] * 5)
    assert not plain.steady
    assert step_extra(0.2, 0.15, plain) == pytest.approx(0.25)


def test_without_cpu_times_the_wall_alone():
    plain = PlainStep.of([1.0, 2.0, 3.0], [None, None, None])
    assert plain.cpu is None
    assert step_extra(2.5, None, plain) == pytest.approx(0.5)
    # One step without a CPU time (the first after a restart): the wall alone.
    assert PlainStep.of([1.0, 2.0], [1.0, None]).cpu is None


def test_the_trackers_own_seconds_floor_the_extra_on_every_clock():
    """A step that ran 0.01 s of the tracker's own code added at least 0.01 s.

    At a light moment its clocks say less than the plain steps' medians: the wall
    extra is -0.05 s, the CPU extra -0.002 s (in wall seconds at the plain 3x
    stretch -0.006 s). Each route returns the floor; above it, the clocks decide.
    """
    varying = PlainStep.of([0.1, 0.5, 1.0, 0.3, 0.7], [0.1] * 5)
    steady = PlainStep.of([0.3, 0.3, 0.3], [0.1, 0.1, 0.1])
    wall_only = PlainStep.of([0.3, 0.3, 0.3], [None] * 3)
    for plain in (varying, steady, wall_only):
        assert step_extra(plain.wall - 0.05, 0.098, plain, own=0.01) == 0.01
    # Above the floor the floor changes nothing: 0.05 s more CPU at the 3x stretch.
    assert step_extra(0.45, 0.15, steady, own=0.01) == pytest.approx(0.15)
    assert step_extra(0.45, 0.15, steady) == step_extra(0.45, 0.15, steady, 0.01)
