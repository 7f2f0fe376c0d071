"""``factor_eigenvalues`` against ``eigvalsh`` of each factor, and the writer's one
BLAS thread while it finishes a record on the host."""

import dataclasses
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_info, threadpool_limits
from torch import nn

from cockpit._host_blas import one_blas_thread
from cockpit._record import OnHost, TensorRecord
from cockpit.stats.curvature import factor_eigenvalues, kronecker_block
from tests.quantities.tracking import make_cockpit
from tests.spies import record_submitted


def _psd(d: int, rank: int, seed: int) -> np.ndarray:
    """A ``[d, d]`` positive semi-definite matrix of the given rank (float64)."""
    x = np.random.default_rng(seed).standard_normal((rank, d))
    return x.T @ x / rank


def test_each_factor_gets_its_own_eigenvalues():
    b, a, b_bias, other = _psd(4, 4, 0), _psd(6, 3, 1), _psd(4, 4, 0), _psd(4, 2, 2)
    spectra = factor_eigenvalues([b, a, b_bias, other])
    for factor, values in zip([b, a, b_bias, other], spectra, strict=True):
        expected = torch.linalg.eigvalsh(torch.from_numpy(factor)).numpy()
        np.testing.assert_allclose(values, expected, rtol=1e-12, atol=1e-12)
    # The bias's equal factor reuses the weight's; a different one of the same
    # shape does not.
    assert spectra[2] is spectra[0]
    assert spectra[3] is not spectra[0]
    assert not np.allclose(spectra[3], spectra[0])


def test_eigenvalues_give_the_explicit_kronecker_blocks_numbers():
    """Top eigenvalue and trace of ``B (x) A`` from the spectra, against the block."""
    b, a = _psd(3, 3, 3), _psd(5, 5, 4)
    block = torch.kron(torch.from_numpy(b), torch.from_numpy(a))
    values = torch.linalg.eigvalsh(block)
    got = kronecker_block(*factor_eigenvalues([b, a]), eps=np.finfo(np.float64).eps)
    assert got["max_eigenvalue"] == pytest.approx(values[-1].item(), rel=1e-12)
    assert got["trace"] == pytest.approx(block.trace().item(), rel=1e-12)
    assert got["condition"] == pytest.approx((values[-1] / values[0]).item(), rel=1e-9)


def _blas_threads() -> list[int]:
    return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]


def test_decomposition_runs_on_one_blas_thread():
    before = _blas_threads()
    assert before, "numpy's BLAS should be visible to threadpoolctl"
    with one_blas_thread():
        assert _blas_threads() == [1] * len(before)
    assert _blas_threads() == before


@pytest.mark.parametrize("decomposes", [True, False])
def test_the_writer_limits_blas_threads_only_around_decompositions(decomposes):
    """A decomposing host finishing (kfac_block's eigenvalues) holds the limit; small
    host arithmetic (alpha's fit) does not pay for it."""
    seen: list[list[int]] = []

    def finish(array):
        seen.append(_blas_threads())
        return float(array.sum())

    values = {"x": OnHost(finish, (torch.ones(3),), decomposes=decomposes)}
    with threadpool_limits(limits=2, user_api="blas"):  # more than one to take away
        before = _blas_threads()
        written = TensorRecord(0, 0.0, values).materialize()["values"]
        assert _blas_threads() == before == [2] * len(before)
    assert written["x"] == 3.0
    assert seen == [[1 if decomposes else 2] * len(before)]


def _host_nodes(value: Any) -> Iterator[OnHost]:
    if isinstance(value, OnHost):
        yield value
    elif isinstance(value, dict):
        for inner in value.values():
            yield from _host_nodes(inner)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for inner in dataclasses.fields(value):
            yield from _host_nodes(getattr(value, inner.name))


def test_the_eigen_quantities_declare_their_decompositions(tmp_path):
    """The quantities that run ``eigh`` on the host ask for the BLAS limit; alpha's
    fit and the gradient noise scale's arithmetic do not."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3))
    names = ["kfac_block", "ggn_top_eigen", "curvature_noise", "alpha"]
    names.append("gradient_noise_scale")
    loss_fn = nn.CrossEntropyLoss()
    ck = make_cockpit(model, loss_fn, tmp_path, dict.fromkeys(names, 1))
    optimizer = ck.optimizer
    submitted = record_submitted(ck)
    x, y = torch.randn(6, 5), torch.randint(3, (6,))
    for _ in range(3):
        optimizer.zero_grad()
        with ck.track():
            loss_fn(model(x), y).backward()
        optimizer.step()
    ck.close()
    declared: dict[str, set[bool]] = {}
    for record in submitted:
        for name, value in record.values.items():
            for node in _host_nodes(value):
                declared.setdefault(name, set()).add(node.decomposes)
    assert declared == {
        "kfac_block": {True},
        "ggn_top_eigen": {True},
        "curvature_noise": {True},
        "alpha": {False},
        "gradient_noise_scale": {False},
    }
