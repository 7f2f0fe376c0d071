"""``norm_test``, ``inner_product_test`` and ``orthogonality_test`` (one stats module)."""

import pytest

from cockpit.stats import gradient_tests
from cockpit.stats.moments import moments
from tests import reference
from tests.quantities.tracking import (
    check_per_layer_reference,
)

TESTS = ["norm_test", "inner_product_test", "orthogonality_test"]


@pytest.mark.parametrize("name", TESTS)
@pytest.mark.parametrize("together", [False, True], ids=["alone", "with-all"])
def test_gradient_test_in_training(problem, tmp_path, name, together):
    check_per_layer_reference(problem, tmp_path, name, together)


@pytest.mark.parametrize("name", TESTS)
def test_formula_on_per_sample_gradients(problem, name):
    model, loss_fn = problem.make()
    gn = reference.flat(reference.per_sample_grads(model, loss_fn, *problem.batch(0)))
    g = gn.mean(0)
    sq_norms, dots = moments((gn**2).sum(1)), moments(gn @ g)
    args = {"norm_test": (sq_norms,), "inner_product_test": (dots,)}.get(
        name, (sq_norms, dots)
    )
    got = getattr(gradient_tests, name)(*args, g @ g)
    assert float(got) == pytest.approx(float(getattr(reference, name)(gn)), rel=1e-9)
