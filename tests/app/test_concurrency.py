"""Three training processes write while the dashboard serves: no error, no step lost.

See ``tests/app/concurrency.py``; ``benchmarks/dashboard_concurrency.py`` runs the
same for minutes.
"""

from tests.app.concurrency import TRAINERS, watch


def test_every_step_written_is_served_while_three_processes_train(tmp_path):
    result = watch(tmp_path, seconds=6.0, pause=0.01)
    assert result.errors == []
    assert len(result.written) == TRAINERS
    for run, steps in result.written.items():
        assert steps == result.trained[run]  # the log holds every step trained
        assert steps >= 20, f"{run} trained only {steps} steps: nothing was tested"
        assert result.seen[run] == steps
    assert result.requests > 3 * TRAINERS
