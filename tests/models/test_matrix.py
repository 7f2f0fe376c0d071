"""Library models as a test matrix: each trains tracked, and its statistics are right.

For every case of ``cases.py`` (torchvision, Hugging Face ``transformers``, ``timm``,
recurrent classifiers):

* it trains for a few steps with the ``economy`` and ``business`` presets and with
  ``hess_max_ev`` alone; every quantity is logged at every step or listed in
  ``meta.json``'s ``absent`` with its reason, and the parameters end bit-identical to
  an untracked copy's;
* in float64, the mean of the brute-force per-sample gradients (``brute_force.py``:
  through the whole batch's forward pass) equals ``.grad`` (the sum rule), and the
  logged first-order quantities, total and per layer, equal the textbook formulas of
  ``tests/reference.py`` on those gradients.

The frameworks come with the ``test`` extra; ``importorskip`` only guards an
environment without it.
"""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
from torch import Tensor, nn

import cockpit
from cockpit.exceptions import AbsentQuantityWarning
from cockpit.logs import Run
from cockpit.quantities import PRESETS
from tests import reference
from tests.models.brute_force import alone, whole_batch_grads
from tests.models.cases import CASES, Case
from tests.quantities.tracking import logged

STEPS = 3
LR = 0.1
#: The tracked configurations: a preset, or ``quantities=`` with no preset.
CONFIGS = {
    "economy": {"preset": "economy"},
    "business": {"preset": "business"},
    "hess_max_ev": {"preset": None, "quantities": ["hess_max_ev"]},
}
#: The first-order quantities and their textbook formulas on ``[N, D]`` gradients.
FIRST_ORDER = {
    "grad_norm": lambda g: g.mean(0).norm(),
    "norm_test": reference.norm_test,
    "inner_product_test": reference.inner_product_test,
    "orthogonality_test": reference.orthogonality_test,
    "mean_gsnr": reference.mean_gsnr,
}
#: Quantities logged for a step only once the next step has run.
NEEDS_NEXT_STEP = {"alpha"}


@pytest.fixture(params=CASES, ids=[c.name for c in CASES])
def case(request: pytest.FixtureRequest) -> Case:
    for module in request.param.requires:
        pytest.importorskip(module)
    return request.param


def train(case: Case, model: nn.Module, batches, ck_kwargs: dict | None) -> Run | None:
    """Plain SGD on ``batches``, tracked iff ``ck_kwargs`` is given."""
    loss_fn = case.loss()
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    ck = None
    if ck_kwargs is not None:
        ck = cockpit.Cockpit(
            model, loss_fn, optimizer, loss_input=case.loss_input, **ck_kwargs
        )
    with warnings.catch_warnings():
        # A quantity a model cannot have (no second derivative of hardsigmoid for
        # hess_max_ev) is announced by this warning; the test reads its reason in
        # meta.json's absent instead.
        warnings.simplefilter("ignore", AbsentQuantityWarning)
        _steps(case, model, ck, loss_fn, optimizer, batches)
    if ck is None:
        return None
    ck.close()
    return cockpit.load(ck.run_dir)


def _steps(case: Case, model, ck, loss_fn, optimizer, batches) -> None:
    for batch in batches:
        optimizer.zero_grad()
        if ck is None:
            case.loss_of(loss_fn, batch.forward(model), batch.target).backward()
        else:
            with ck.track():
                case.loss_of(loss_fn, batch.forward(model), batch.target).backward()
        optimizer.step()


def test_case_is_what_it_says(case):
    """BatchNorm in training mode exactly where the case says so."""
    model = case.make()
    batchnorms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bool(batchnorms) == case.batchnorm
    assert all(m.training for m in batchnorms)


def logged_steps(run: Run, quantity: str) -> set[int]:
    """Steps with a scalar or histogram record of ``quantity``."""
    scalars = run.scalars[run.scalars.quantity == quantity].step
    histograms = run.histograms[run.histograms.quantity == quantity].step
    return {int(s) for s in scalars} | {int(s) for s in histograms}


@pytest.mark.parametrize("config", list(CONFIGS))
def test_trains_with_tracking_unchanged(case, config, tmp_path):
    model = case.make()
    twin = copy.deepcopy(model)
    batches = case.batches(STEPS)
    run = train(case, model, batches, {"logdir": tmp_path, **CONFIGS[config]})
    train(case, twin, batches, None)
    for (name, param), twin_param in zip(
        model.named_parameters(), twin.parameters(), strict=True
    ):
        assert torch.equal(param, twin_param), f"{name} differs from untracked training"
    assert run is not None
    absent = run.meta["absent"]
    wanted = CONFIGS[config].get("quantities") or PRESETS[config]
    for quantity in wanted:
        if quantity in absent:
            print(f"{case.name}: {quantity} absent: {absent[quantity]}")
            assert absent[quantity].strip(), f"{quantity} absent without a reason"
            continue
        last = STEPS - 1 if quantity in NEEDS_NEXT_STEP else STEPS
        assert logged_steps(run, quantity) == set(range(last)), quantity


#: The orthogonality test subtracts ``(g_n . g)^2 / ||g||^2`` from ``||g_n||^2``; where
#: the per-sample gradients are nearly parallel to g (a classifier's output bias) the
#: difference is roundoff of size eps ||g_n||^2, and its square root ~1e-8 in float64.
ATOL = {"orthogonality_test": 1e-7}


def check_first_order(
    run: Run, step: int, grads: dict[str, Tensor], rtol: float
) -> None:
    """The logged first-order quantities against their formulas on ``grads``.

    A parameter whose per-sample gradients vanish identically (an attention key's
    bias: the softmax is invariant to it) has gradients of roundoff size; the ratio
    tests of roundoff are noise, so only its ``grad_norm`` is compared there.
    """
    per_sample = reference.layers_and_total(grads)
    scale = per_sample["total"].norm()
    for name, formula in FIRST_ORDER.items():
        for layer, g in per_sample.items():
            if name != "grad_norm" and g.norm() <= 1e-10 * scale:
                continue
            got = logged(run, name, step, None if layer == "total" else layer)
            torch.testing.assert_close(
                torch.tensor(got, dtype=torch.float64),
                formula(g),
                rtol=rtol,
                atol=ATOL.get(name, 1e-10),
                msg=lambda m, layer=layer, name=name: (
                    f"{name}[{layer}], step {step}: {m}"
                ),
            )


def test_first_order_against_brute_force(case, tmp_path):
    """Sum rule and first-order quantities, float64, two steps of plain SGD."""
    _, run, expected = brute_force_run(case, tmp_path, 2)
    for step, grads in enumerate(expected):
        check_first_order(run, step, grads, case.rtol)


def brute_force_run(
    case: Case, tmp_path, steps: int
) -> tuple[cockpit.Cockpit, Run, list[dict[str, Tensor]]]:
    """``steps`` tracked SGD steps in float64 with the sum rule checked at each.

    Returns the tracker, its run and each step's brute-force per-sample gradients.
    """
    model, loss_fn = case.make(torch.float64), case.loss()
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    ck = cockpit.Cockpit(
        model,
        loss_fn,
        optimizer,
        logdir=tmp_path,
        preset=None,
        quantities=list(FIRST_ORDER),
        loss_input=case.loss_input,
    )
    expected = []
    for batch in case.batches(steps, torch.float64):
        grads = whole_batch_grads(case, model, loss_fn, batch)
        expected.append(grads)
        optimizer.zero_grad()
        with ck.track():
            case.loss_of(loss_fn, batch.forward(model), batch.target).backward()
        for name, param in model.named_parameters():
            torch.testing.assert_close(
                torch.zeros_like(param) if param.grad is None else param.grad,
                grads[name].mean(0),
                msg=lambda m, name=name: f"sum rule for {name}: {m}",
            )
        optimizer.step()
    ck.close()
    return ck, cockpit.load(ck.run_dir), expected


@pytest.mark.parametrize(
    "name",
    [c.name for c in CASES if not c.batchnorm and c.name != "bert_mlm"],
)
def test_samples_are_independent(name, case_by_name):
    """Without BatchNorm (and without a loss normalized over the batch's kept
    targets, as BERT's ignored labels are), a sample's gradient through the whole
    batch is its gradient alone: the brute force above is the usual one there."""
    case = case_by_name(name)
    model, loss_fn = case.make(torch.float64), case.loss()
    batch = case.batches(1, torch.float64)[0]
    together = whole_batch_grads(case, model, loss_fn, batch)
    by_itself = whole_batch_grads(case, model, loss_fn, alone(batch, 1))
    for key, g in together.items():
        torch.testing.assert_close(g[1], by_itself[key][0], msg=key)


@pytest.fixture
def case_by_name():
    def get(name: str) -> Case:
        (found,) = [c for c in CASES if c.name == name]
        for module in found.requires:
            pytest.importorskip(module)
        return found

    return get
