import pytest

from tests.quantities.tracking import everything, logged, tracked_run


@pytest.mark.parametrize("together", [False, True], ids=["alone", "with-all"])
def test_loss_and_its_variance(problem, tmp_path, together):
    run, refs = tracked_run(
        problem, tmp_path, everything(problem) if together else ["loss"]
    )
    for step, ref in enumerate(refs):
        assert logged(run, "loss", step) == pytest.approx(
            float(ref.losses.mean()), rel=1e-10
        )
        assert logged(run, "loss.variance", step) == pytest.approx(
            float(ref.losses.var()), rel=1e-10
        )
