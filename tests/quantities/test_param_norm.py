import math

import pytest
import torch

from tests.quantities.tracking import (
    assert_per_layer,
    everything,
    logged,
    tracked_run,
)


def _norms(params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Brute force: each tensor's norm, and the norm of all of them as one vector."""
    flat = {name: p.reshape(-1) for name, p in params.items()}
    norms = {name: torch.linalg.vector_norm(v) for name, v in flat.items()}
    norms["total"] = torch.linalg.vector_norm(torch.cat(list(flat.values())))
    return norms


@pytest.mark.parametrize("together", [False, True], ids=["alone", "with-all"])
def test_param_norm_before_the_optimizer_step(problem, tmp_path, together):
    """The references hold the parameters as the step's backward pass saw them."""
    steps = 3
    run, refs = tracked_run(
        problem,
        tmp_path,
        everything(problem) if together else ["param_norm"],
        steps=steps,
    )
    for step, ref in enumerate(refs):
        assert_per_layer(run, "param_norm", step, _norms(ref.params))
    # The steps change the norm, so values read after optimizer.step() would fail.
    for step in range(steps - 1):
        after = float(_norms(refs[step + 1].params)["total"])
        logged_total = logged(run, "param_norm", step)
        assert not math.isclose(logged_total, after, rel_tol=1e-9)


def test_param_norm_under_adam(tmp_path, problem):
    run, refs = tracked_run(problem, tmp_path, ["param_norm"], optimizer="adam")
    for step, ref in enumerate(refs):
        assert_per_layer(run, "param_norm", step, _norms(ref.params))
