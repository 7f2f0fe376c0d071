"""Reducible states: a step split into pieces reduces to the whole step's states.

The per-sample states of two halves of a batch, filled from brute-force per-sample
gradients (``tests.reference``), reduce with :func:`cockpit.states.reduce_states` to
the states of the whole batch, and the quantities finalize them to the values of the
whole batch: the seam that gradient accumulation and multi-process tracking use.
"""

import pytest
import torch

from cockpit._record import TensorRecord
from cockpit.exceptions import UsageError
from cockpit.quantities import REGISTRY
from cockpit.quantities._view import StepStates
from cockpit.states import SPECS, HistSample, Reduce, layer_moments, reduce_states
from cockpit.stats.moments import moments
from tests import reference
from tests.problems import PROBLEMS

FIRST_ORDER = [
    "loss",
    "grad_norm",
    "norm_test",
    "inner_product_test",
    "orthogonality_test",
    "mean_gsnr",
    "early_stopping",
    "gradient_noise_scale",
]


def _states(gn: dict, losses, grad: dict, batch: int) -> dict:
    """States of the samples in ``gn`` (``[n, D_l]`` each) within a batch of ``batch``.

    ``grad`` is the whole batch's gradient: ``dots`` are defined against it, and
    ``grads``/``sample_grads`` hold this piece's share of the batch mean.
    """
    share = {name: g.sum(0) / batch for name, g in gn.items()}
    return {
        "count": losses.shape[0],
        "losses": moments(losses),
        "grads": share,
        "sample_grads": share,
        "sq_norms": layer_moments({name: (g**2).sum(1) for name, g in gn.items()}),
        "dots": layer_moments({name: g @ grad[name] for name, g in gn.items()}),
        "sum_sq": {name: (g**2).sum(0) for name, g in gn.items()},
        "low": {name: g.min() for name, g in gn.items()},
        "high": {name: g.max() for name, g in gn.items()},
        "mean_reduction": True,
    }


def _values(states: dict) -> dict:
    view = StepStates(0, dict(states))
    values = {name: REGISTRY[name]().finalize(view) for name in FIRST_ORDER}
    return TensorRecord(0, 0.0, values).materialize()["values"]


@pytest.mark.parametrize(
    "problem", [p for p in PROBLEMS if p.name in ("mlp-ce-mean", "cnn-ce-mean")]
)
def test_two_halves_reduce_to_the_whole_batch(problem):
    model, loss_fn = problem.make()
    x, y = problem.batch(0)
    per_sample = reference.per_sample_grads(model, loss_fn, x, y)
    gn = {name: g.reshape(g.shape[0], -1) for name, g in per_sample.items()}
    losses = reference.per_sample_losses(loss_fn, model(x), y).detach()
    n = losses.shape[0]
    grad = {name: g.mean(0) for name, g in gn.items()}
    whole = _states(gn, losses, grad, n)
    halves = [slice(0, n // 2), slice(n // 2, n)]
    pieces = [
        _states({k: g[part] for k, g in gn.items()}, losses[part], grad, n)
        for part in halves
    ]

    reduced = reduce_states(pieces)

    torch.testing.assert_close(reduced, whole)
    got, expected = _values(reduced), _values(whole)
    assert got.keys() == expected.keys()
    for name in FIRST_ORDER:
        assert got[name]["total"] == pytest.approx(expected[name]["total"], rel=1e-9)
    total = reference.flat(per_sample)
    torch.testing.assert_close(
        torch.tensor(got["norm_test"]["total"], dtype=torch.float64),
        reference.norm_test(total),
        rtol=1e-10,
        atol=0,
    )


def test_a_single_piece_is_its_own_reduction():
    piece = {"losses": moments(torch.ones(3)), "gram": object()}
    assert reduce_states([piece]) == piece


def test_reductions_follow_the_table():
    a = {
        "low": {"w": torch.tensor(-1.0)},
        "high": {"w": torch.tensor(2.0)},
        "sum_sq": {"w": torch.tensor([1.0, 2.0])},
        "sq_norms": layer_moments({"w": torch.tensor([1.0])}),
        "hist": {"w": [HistSample(torch.ones(2), None, 3.0)]},
        "count": 1,
        "lr": 0.1,
    }
    b = {
        "low": {"w": torch.tensor(-3.0)},
        "high": {"w": torch.tensor(1.0)},
        "sum_sq": {"w": torch.tensor([3.0, 4.0])},
        "sq_norms": layer_moments({"w": torch.tensor([5.0, 6.0])}),
        "hist": {"w": [HistSample(torch.zeros(1), None, 4.0)]},
        "count": 2,
        "lr": 0.1,
    }
    got = reduce_states([a, b])
    assert got["low"]["w"].item() == -3.0
    assert got["high"]["w"].item() == 2.0
    assert got["sum_sq"]["w"].tolist() == [4.0, 6.0]
    together = moments(torch.tensor([1.0, 5.0, 6.0]))
    torch.testing.assert_close(got["sq_norms"]["layers"]["w"], together)
    assert got["sq_norms"]["network"].tolist() == [3.0, 4.0, 14.0]
    assert got["count"] == 3
    assert [h.weight for h in got["hist"]["w"]] == [3.0, 4.0]
    assert got["lr"] == 0.1


def test_a_whole_batch_state_refuses_pieces():
    pieces = [{"gram": object()}, {"gram": object()}]
    with pytest.raises(UsageError, match=r"'gram' needs the whole batch.*2 pieces"):
        reduce_states(pieces)


def test_every_declared_state_has_a_spec():
    for cls in REGISTRY.values():
        quantity = cls()
        assert quantity.states | quantity.step_states <= set(SPECS), cls.name
    assert {spec.reduce for spec in SPECS.values()} == set(Reduce)
