"""Max-pooling Jacobians from autograd's saved indices (float64, tiny CNNs).

The saved-index derivatives must give BackPACK's values bit for bit (the indices are
the same, and autograd's backward kernel adds in the order of BackPACK's scatter),
take no second pooling where the saved node is there, fall back where it is not (an
in-place ReLU after the pooling), keep BackPACK's scatter for a channels-last input,
and the GGN diagonal through them must equal the one from autograd Jacobians.
"""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from backpack.core.derivatives.maxpool2d import MaxPool2DDerivatives
from backpack.core.derivatives.maxpoolnd import MaxPoolNDDerivatives
from backpack.extensions import KFAC, DiagGGNExact, DiagGGNMC, SqrtGGNExact
from torch import nn

import cockpit
from cockpit.engines import _saved_pool_indices
from cockpit.engines._saved_pool_indices import SavedIndexMaxPool2d
from tests import reference_curvature
from tests.engines.extension_run import run

POOLS = {
    "2d": lambda: nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True),
    "2d-dilated": lambda: nn.MaxPool2d(2, stride=1, dilation=2),
}


def cnn(pool: nn.Module, inplace_after: bool = False) -> nn.Sequential:
    torch.manual_seed(0)
    layers = [nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(), pool]
    if inplace_after:
        layers.append(nn.ReLU(inplace=True))
    probe = nn.Sequential(*layers)(torch.zeros(1, 2, 7, 7))
    layers += [nn.Flatten(), nn.Linear(probe.numel(), 4)]
    return nn.Sequential(*layers).double()


def cnn3d() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv3d(1, 2, 2),
        nn.ReLU(),
        nn.MaxPool3d(2, stride=1),
        nn.Flatten(),
        nn.Linear(2 * 3 * 3 * 3, 3),
    ).double()


@pytest.fixture
def fallbacks(monkeypatch):
    """Counts BackPACK's own pooling-index recomputations."""
    calls = []
    original = MaxPoolNDDerivatives.get_pooling_idx

    def counted(self, module, subsampling=None):
        calls.append(type(module).__name__)
        return original(self, module, subsampling=subsampling)

    monkeypatch.setattr(MaxPoolNDDerivatives, "get_pooling_idx", counted)
    return calls


def data(shape, classes=4):
    torch.manual_seed(1)
    return torch.randn(*shape, dtype=torch.float64), torch.randint(0, classes, (5,))


@pytest.mark.parametrize("pool", sorted(POOLS))
@pytest.mark.parametrize(
    "make_extension",
    [DiagGGNExact, lambda: DiagGGNMC(mc_samples=2), KFAC, SqrtGGNExact],
    ids=["diag_ggn_exact", "diag_ggn_mc", "kfac", "sqrt_ggn_exact"],
)
def test_saved_indices_give_backpacks_values_without_a_second_pooling(
    pool, make_extension, fallbacks
):
    x, y = data((5, 2, 7, 7))
    torch.manual_seed(2)
    before = run(cnn(POOLS[pool]()), x, y, make_extension, cheaper=False)
    recomputed = len(fallbacks)
    torch.manual_seed(2)
    after = run(cnn(POOLS[pool]()), x, y, make_extension, cheaper=True)
    assert recomputed > 0  # BackPACK's own route pools again
    assert len(fallbacks) == recomputed  # the saved-index route never does
    for name in before:
        for b, a in zip(
            before[name] if isinstance(before[name], list) else [before[name]],
            after[name] if isinstance(after[name], list) else [after[name]],
            strict=True,
        ):
            assert torch.equal(a, b), name


def test_maxpool3d_takes_the_saved_indices(fallbacks):
    torch.manual_seed(1)
    x, y = torch.randn(5, 1, 5, 5, 5, dtype=torch.float64), torch.randint(0, 3, (5,))
    before = run(cnn3d(), x, y, DiagGGNExact, cheaper=False)
    recomputed = len(fallbacks)
    after = run(cnn3d(), x, y, DiagGGNExact, cheaper=True)
    assert recomputed > 0 and len(fallbacks) == recomputed
    for name in before:
        assert torch.equal(after[name], before[name]), name


def test_an_output_changed_in_place_falls_back_to_pooling_again(fallbacks):
    x, y = data((5, 2, 7, 7))
    model = cnn(POOLS["2d"](), inplace_after=True)
    before = run(model, x, y, DiagGGNExact, cheaper=False)
    recomputed = len(fallbacks)
    after = run(
        cnn(POOLS["2d"](), inplace_after=True), x, y, DiagGGNExact, cheaper=True
    )
    assert len(fallbacks) == 2 * recomputed  # the ReLU's node, not the pooling's
    for name in before:
        assert torch.equal(after[name], before[name]), name


@pytest.mark.parametrize("pool", sorted(POOLS))
def test_ggn_diagonal_through_saved_indices_equals_autograds(pool):
    """The exact GGN diagonal against the GGN built from Jacobians."""
    x, y = data((5, 2, 7, 7))
    model = cnn(POOLS[pool]())
    ours = run(model, x, y, DiagGGNExact, cheaper=True)
    ggn = reference_curvature.ggn(model, nn.CrossEntropyLoss(), x, y)
    expected = reference_curvature.unflatten(model, ggn.diagonal())
    for name, value in expected.items():
        torch.testing.assert_close(ours[name], value, rtol=1e-10, atol=1e-12)


def _tracked_values(tmp_path, name: str) -> pd.DataFrame:
    """Every value of business's curvature quantities and kfac_block on a pooled CNN."""
    model = cnn(POOLS["2d"]())
    x, y = data((5, 2, 7, 7))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    loss_fn = nn.CrossEntropyLoss()
    ck = cockpit.Cockpit(
        model,
        loss_fn,
        optimizer,
        logdir=tmp_path / name,
        preset=None,
        quantities=["hess_trace", "tic_diag", "kfac_block", "curvature_noise"],
    )
    for _ in range(2):
        optimizer.zero_grad()
        with ck.track():
            loss_fn(model(x), y).backward()
        optimizer.step()
    ck.close()
    frame = cockpit.load(ck.run_dir).scalars
    frame = frame[~frame.quantity.isin(["step_time", "tracker_time"])]  # clocks
    return frame.sort_values(["quantity", "step", "layer"]).reset_index(drop=True)


def test_the_tracker_logs_the_same_curvature_without_a_second_pooling(
    tmp_path, fallbacks, monkeypatch
):
    saved = _tracked_values(tmp_path, "saved")
    assert fallbacks == []  # every pooling Jacobian took the saved indices
    monkeypatch.setattr(_saved_pool_indices, "saved_indices", lambda module: None)
    pooled = _tracked_values(tmp_path, "pooled")
    assert fallbacks  # BackPACK's route pools again
    assert {"hess_trace", "tic_diag", "kfac_block.trace"} <= set(saved.quantity)
    pd.testing.assert_frame_equal(saved, pooled)


@pytest.fixture
def scatters(monkeypatch):
    """Counts BackPACK's own transposed pooling Jacobians (zeros and scatter_add_)."""
    calls = []
    original = MaxPoolNDDerivatives._jac_t_mat_prod

    def counted(self, module, *args, **kwargs):
        calls.append(type(module).__name__)
        return original(self, module, *args, **kwargs)

    monkeypatch.setattr(MaxPoolNDDerivatives, "_jac_t_mat_prod", counted)
    return calls


def test_subsampled_factor_takes_the_backward_kernel(scatters):
    x, y = data((5, 2, 7, 7))

    def subsampled():
        return SqrtGGNExact(subsampling=[1, 3])

    before = run(cnn(POOLS["2d"]()), x, y, subsampled, cheaper=False)
    assert scatters == ["MaxPool2d"]
    after = run(cnn(POOLS["2d"]()), x, y, subsampled, cheaper=True)
    assert scatters == ["MaxPool2d"]  # not BackPACK's scatter again
    for name in before:
        assert torch.equal(after[name], before[name]), name


def test_a_channels_last_input_keeps_backpacks_scatter(scatters):
    x, y = data((5, 2, 7, 7))
    x = x.contiguous(memory_format=torch.channels_last)
    before = run(cnn(POOLS["2d"]()), x, y, DiagGGNExact, cheaper=False)
    after = run(cnn(POOLS["2d"]()), x, y, DiagGGNExact, cheaper=True)
    assert scatters == ["MaxPool2d", "MaxPool2d"]
    for name in before:
        assert torch.equal(after[name], before[name]), name


def test_the_backward_kernel_runs_in_grad_mode():
    """A backward pass with ``create_graph=True`` runs the hooks in grad mode."""
    torch.manual_seed(0)
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64, requires_grad=True)
    pool = nn.MaxPool2d(2)
    pool.input0, pool.output = x, pool(x)
    mat = torch.randn(3, *pool.output.shape, dtype=torch.float64)
    with torch.enable_grad():
        ours = SavedIndexMaxPool2d().jac_t_mat_prod(pool, None, None, mat)
    expected = MaxPool2DDerivatives().jac_t_mat_prod(pool, None, None, mat)
    assert torch.equal(ours, expected)
