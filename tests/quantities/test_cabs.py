import pytest

from tests import reference
from tests.quantities.tracking import everything, logged, tracked_run


@pytest.mark.parametrize("together", [False, True], ids=["alone", "with-all"])
def test_cabs_with_plain_sgd(problem, tmp_path, together):
    run, refs = tracked_run(
        problem, tmp_path, everything(problem) if together else ["cabs"], lr=0.05
    )
    for step, ref in enumerate(refs):
        gn = reference.flat(ref.grads)
        expected = reference.cabs(gn, ref.lr, ref.losses.mean())
        assert logged(run, "cabs", step) == pytest.approx(float(expected), rel=1e-8)
