"""The batch replay: BatchNorm in training mode and recurrent layers.

``g_n = d l_n / d theta`` through the whole batch's forward pass, checked against
``tests.reference.batch_coupled_grads`` (one ``autograd.grad`` per sample on the
full batch's graph); curvature against the whole batch's Hessian and GGN.
"""

from __future__ import annotations

import copy
import logging

import pytest
import torch
from torch import nn

import cockpit
from cockpit.exceptions import UnsupportedModelError
from cockpit.quantities import GgnTopEigen, HessMaxEv, HessTrace
from tests import reference
from tests.quantities.tracking import (
    assert_per_layer,
    histogram_rows,
    logged,
    make_cockpit,
)
from tests.reference_curvature import batch_coupled_ggn, hessian, top_eigen

N = 6
FIRST_ORDER = [
    "grad_norm",
    "norm_test",
    "inner_product_test",
    "orthogonality_test",
    "mean_gsnr",
]


def bn_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(2, 3, kernel_size=3, bias=False),  # a bias before BN: g_n = 0
        nn.BatchNorm2d(3),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(3 * 3 * 3, 3),
    )


def bn_mlp() -> nn.Module:
    return nn.Sequential(
        nn.Linear(5, 4, bias=False), nn.BatchNorm1d(4), nn.Tanh(), nn.Linear(4, 3)
    )


class Recurrent(nn.Module):
    """A sequence classifier: the last hidden state of an RNN, then a Linear."""

    def __init__(self, kind: type[nn.RNNBase]):
        super().__init__()
        self.rnn = kind(3, 5, batch_first=True)
        self.out = nn.Linear(5, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden, _ = self.rnn(x)
        return self.out(hidden[:, -1])


MODELS = {
    "bn-cnn": (bn_cnn, (2, 5, 5)),
    "bn-mlp": (bn_mlp, (5,)),
    "lstm": (lambda: Recurrent(nn.LSTM), (4, 3)),
    "gru": (lambda: Recurrent(nn.GRU), (4, 3)),
}


def batches(shape, loss_fn, steps=2):
    gen = torch.Generator().manual_seed(3)
    out = []
    for _ in range(steps):
        x = torch.randn(N, *shape, generator=gen, dtype=torch.float64)
        if isinstance(loss_fn, nn.CrossEntropyLoss):
            y = torch.randint(0, 3, (N,), generator=gen)
        else:
            y = torch.randn(N, 3, generator=gen, dtype=torch.float64)
        out.append((x, y))
    return out


def run_tracked(model, loss_fn, data, logdir, quantities, **kwargs):
    """Train with tracking; per step the brute-force ``g_n``, the ``.grad`` and the
    per-sample losses ``l_n`` (on a copy: its running statistics move, not the
    model's)."""
    ck = make_cockpit(model, loss_fn, logdir, quantities, hist_samples=0, **kwargs)
    refs = []
    for x, y in data:
        expected = reference.batch_coupled_grads(model, loss_fn, x, y)
        twin = copy.deepcopy(model)
        losses = reference.per_sample_losses(loss_fn, twin(x), y).detach()
        ck.optimizer.zero_grad()
        with ck.track():
            loss_fn(model(x), y).backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters()}
        refs.append((expected, grads, losses))
        ck.optimizer.step()
    ck.close()
    return cockpit.load(ck.run_dir), refs


@pytest.mark.parametrize("loss", ["ce-mean", "mse-sum"])
@pytest.mark.parametrize("name", list(MODELS))
def test_first_order_statistics_match_brute_force(tmp_path, name, loss, replay_route):
    torch.manual_seed(0)
    make, shape = MODELS[name]
    model = make().double()
    loss_fn = (
        nn.CrossEntropyLoss() if loss == "ce-mean" else nn.MSELoss(reduction="sum")
    )
    data = batches(shape, loss_fn)
    run, refs = run_tracked(
        model, loss_fn, data, tmp_path, [*FIRST_ORDER, "grad_hist_1d"]
    )
    assert set(run.meta["engines"]["batch replay"]) >= {
        n for n, _ in model.named_parameters() if "rnn" in n or name.startswith("bn")
    }
    for step, (grads, dot_grad, _) in enumerate(refs):
        # The sum rule: the mean of the g_n is the gradient in .grad.
        scale = 1.0 if loss == "ce-mean" else N
        for param, g in grads.items():
            torch.testing.assert_close(g.mean(0) * scale, dot_grad[param])
        per_layer = reference.layers_and_total(grads)
        for quantity in FIRST_ORDER:
            if quantity == "grad_norm":
                expected = {k: g.mean(0).norm() for k, g in per_layer.items()}
            else:
                brute_force = getattr(reference, quantity)
                expected = {k: brute_force(g) for k, g in per_layer.items()}
            assert_per_layer(run, quantity, step, expected)
        hist = histogram_rows(run, "grad_hist_1d")
        counts = hist[(hist.step == step) & hist.layer.isna()]["counts"].iloc[0]
        assert sum(counts) == per_layer["total"].numel()


def test_alpha_projects_the_kept_rows_on_the_step(tmp_path, replay_route):
    """alpha's slopes ``g_n . s / tau`` come from rows kept until after the step."""
    torch.manual_seed(0)
    loss_fn = nn.CrossEntropyLoss()
    data = batches((5,), loss_fn, steps=3)
    run, refs = run_tracked(bn_mlp().double(), loss_fn, data, tmp_path, ["alpha"])
    for step in range(2):
        # Plain SGD with lr 0.1 (make_cockpit): the step is -0.1 times .grad.
        grad = torch.cat([g.reshape(-1) for g in refs[step][1].values()])
        direction = -0.1 * grad
        tau = direction.norm()
        slopes = [
            reference.flat(refs[t][0]) @ direction / tau for t in (step, step + 1)
        ]
        losses = [refs[t][2] for t in (step, step + 1)]
        expected = reference.alpha(float(tau), losses, slopes)
        assert logged(run, "alpha", step) == pytest.approx(expected, rel=1e-6)


def test_the_gradients_norms_are_taken_once(tmp_path, monkeypatch):
    """The batch replay's per-sample statistics hold the block's gradient tensors
    themselves, so ``norm_test``'s ``||g_l||^2`` are ``grad_norm``'s norms squared:
    one pass over the parameters a step, not two, and the values as before."""
    from cockpit.quantities import _view
    from tests.spies import record_returns

    passes = record_returns(monkeypatch, _view, "norm_rows")
    torch.manual_seed(0)
    loss_fn = nn.CrossEntropyLoss()
    data = batches((5,), loss_fn, steps=2)
    run, refs = run_tracked(
        bn_mlp().double(), loss_fn, data, tmp_path, ["grad_norm", "norm_test"]
    )
    assert len(passes) == len(data)
    for step, (grads, _, _) in enumerate(refs):
        per_layer = reference.layers_and_total(grads)
        expected = {k: reference.norm_test(g) for k, g in per_layer.items()}
        assert_per_layer(run, "norm_test", step, expected)


def test_batchnorm_model_goes_to_the_batch_replay_and_says_why(tmp_path, caplog):
    model = bn_cnn().double()
    with caplog.at_level(logging.INFO, logger="cockpit"):
        ck = make_cockpit(model, nn.CrossEntropyLoss(), tmp_path, ["norm_test"])
    ck.close()
    engines = cockpit.load(ck.run_dir).meta["engines"]
    assert list(engines["batch replay"]) == [n for n, _ in model.named_parameters()]
    assert all(
        "'1' (BatchNorm2d) is in training mode" in why
        for why in engines["batch replay"].values()
    )
    assert engines["backpack"] == []
    assert "batch replay for 5 parameters" in caplog.text


def test_backpack_engine_refuses_batchnorm_in_training_pointing_to_auto(tmp_path):
    model = bn_mlp().double()
    with pytest.raises(UnsupportedModelError, match=r"BatchNorm1d.*engine='auto'"):
        make_cockpit(
            model, nn.CrossEntropyLoss(), tmp_path, ["norm_test"], engine="backpack"
        )
    model.eval()  # frozen statistics: BackPACK computes them, until training mode
    for p in model[1].parameters():
        p.requires_grad_(False)
    ck = make_cockpit(
        model, nn.CrossEntropyLoss(), tmp_path, ["norm_test"], engine="backpack"
    )
    model.train()
    ((x, y),) = batches((5,), nn.CrossEntropyLoss(), steps=1)
    with (
        pytest.raises(
            UnsupportedModelError, match=r"'1' \(BatchNorm1d\).*engine='auto'"
        ),
        ck.track(),
    ):
        nn.CrossEntropyLoss()(model(x), y).backward()


def test_model_put_into_training_mode_later_moves_at_that_step(tmp_path, caplog):
    torch.manual_seed(0)
    model = bn_mlp().double()
    loss_fn = nn.CrossEntropyLoss()
    model.eval()
    ck = make_cockpit(model, loss_fn, tmp_path, ["norm_test"])
    assert ck.engines.batch == {}
    model.train()
    ((x, y),) = batches((5,), loss_fn, steps=1)
    expected = reference.norm_test(
        reference.flat(reference.batch_coupled_grads(model, loss_fn, x, y))
    )
    with caplog.at_level(logging.INFO, logger="cockpit"), ck.track():
        loss_fn(model(x), y).backward()
    ck.close()
    assert "batch replay from now on for every parameter" in caplog.text
    run = cockpit.load(ck.run_dir)
    assert set(run.meta["engines"]["batch replay"]) == {
        n for n, _ in model.named_parameters()
    }
    assert_per_layer(run, "norm_test", 0, {"total": expected})


def test_curvature_of_a_batchnorm_model_through_the_whole_batch(tmp_path, replay_route):
    torch.manual_seed(0)
    model = bn_mlp().double()
    loss_fn = nn.CrossEntropyLoss()
    ((x, y),) = batches((5,), loss_fn, steps=1)
    hess = hessian(copy.deepcopy(model), loss_fn, x, y)
    ggn = batch_coupled_ggn(model, loss_fn, x, y)
    quantities = {
        "hess_max_ev": HessMaxEv(
            method="lanczos", tol=1e-10, max_iter=60, max_error=None
        ),
        "hess_trace": HessTrace(curvature="ggn_exact"),
        "ggn_top_eigen": GgnTopEigen(k=2, exact=True),
    }
    ck = make_cockpit(model, loss_fn, tmp_path / "gram", quantities)
    with ck.track():
        loss_fn(model(x), y).backward()
    ck.close()
    run = cockpit.load(ck.run_dir)
    assert_per_layer(run, "hess_max_ev", 0, {"total": torch.linalg.eigvalsh(hess)[-1]})
    assert_per_layer(run, "hess_trace", 0, {"total": ggn.trace()})
    values, _ = top_eigen(ggn, 2)
    assert_per_layer(run, "ggn_top_eigen.1", 0, {"total": values[0]})
    assert_per_layer(run, "ggn_top_eigen.2", 0, {"total": values[1]})
    model.zero_grad()
    lanczos = {
        "ggn_top_eigen": GgnTopEigen(k=1, method="lanczos", tol=1e-10, max_iter=60)
    }
    ck = make_cockpit(model, loss_fn, tmp_path / "lanczos", lanczos)
    with ck.track():
        loss_fn(model(x), y).backward()
    ck.close()
    run = cockpit.load(ck.run_dir)
    assert_per_layer(run, "ggn_top_eigen.1", 0, {"total": values[0]})
