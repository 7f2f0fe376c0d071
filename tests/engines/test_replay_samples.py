"""The batch replay on a random subsample of M of the N samples (``replay_samples``).

With M = N the subsample route logs what the exact route logs. With M < N the
per-sample sums are Horvitz-Thompson estimates: over many seeded subsamples of one
batch, the logged ``trace_cov`` of ``gradient_noise_scale`` (linear in
``sum_n ||g_n||^2`` with the exact gradient) averages to the exact value from
``tests.reference.batch_coupled_grads``, within a few standard errors, and far from
what the estimator would average to without the N / M scaling, for M = 3 and for a
single sample per step (M = 1). The checks at M = N and of the statistics run on
every route of the backward passes (vmapped chunks, one pass per cotangent with its
row reduced as it comes or stacked into blocks first); stacked blocks log what rows
reduced one at a time log, with and without a subsample.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import warnings

import pytest
import torch
from torch import nn

import cockpit
from cockpit.engines import batch_replay
from cockpit.engines._chunk_reducer import ChunkReducer
from cockpit.engines.batch_replay import BatchReplay
from cockpit.exceptions import ConfigurationError, UsageError
from cockpit.logs import LogReader
from cockpit.quantities import HessTrace
from tests import reference
from tests.reference_curvature import batch_coupled_ggn

N, M = 8, 3
QUANTITIES = [
    "loss",
    "norm_test",
    "inner_product_test",
    "orthogonality_test",
    "gradient_noise_scale",
    "mean_gsnr",
    "grad_hist_1d",
    "grad_hist_2d",
    "alpha",
]


def _problem() -> tuple[nn.Module, nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Tanh(), nn.Linear(4, 3)
    ).double()
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(N, 3, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 3, (N,), generator=gen)
    return model, nn.CrossEntropyLoss(), x, y


def _steps(
    tmp_path,
    name: str,
    quantities,
    steps: int,
    lr: float = 0.0,
    preset: str | None = None,
    samples: int = N,
    hist_samples: int = 0,
    **kwargs,
) -> list[dict]:
    """Track ``steps`` steps of the same batch, its first ``samples`` samples (lr 0:
    the parameters stay)."""
    model, loss_fn, x, y = _problem()
    x, y = x[:samples], y[:samples]
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # quantities undefined for lr 0's SGD
        ck = cockpit.Cockpit(
            model,
            loss_fn,
            optimizer,
            logdir=tmp_path,
            run_name=name,
            preset=preset,
            quantities=quantities,
            hist_samples=hist_samples,
            **kwargs,
        )
    for _ in range(steps):
        optimizer.zero_grad()
        with ck.track():
            loss_fn(model(x), y).backward()
        optimizer.step()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # alpha's notes on a step of length 0
        ck.close()
    return [record["values"] for record in LogReader(tmp_path / name).read_new()]


def _numbers(value, path=""):
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _numbers(item, f"{path}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _numbers(item, f"{path}[{i}]")
    elif isinstance(value, float | int) and not isinstance(value, bool):
        yield path, value


def _assert_same_records(got: list[dict], expected: list[dict]) -> None:
    """Every logged number equal to roundoff (timings aside)."""
    for record, reference_record in zip(got, expected, strict=True):
        for name in ("tracker_time", "step_time"):
            record.pop(name, None), reference_record.pop(name, None)
        pairs = dict(_numbers(reference_record))
        assert dict(_numbers(record)).keys() == pairs.keys()
        for path, value in _numbers(record):
            assert value == pytest.approx(pairs[path], rel=1e-10, abs=1e-12), path


def test_all_samples_equal_the_exact_route(tmp_path, replay_route):
    exact = _steps(tmp_path, "exact", QUANTITIES, 3, lr=0.1)
    full = _steps(tmp_path, "full", QUANTITIES, 3, lr=0.1, replay_samples=N)
    _assert_same_records(full, exact)


@pytest.mark.parametrize(
    ("rows", "samples", "hist_samples", "alpha"),
    [(3, None, 0, True), (3, None, 10, False), (2, M, 0, False), (2, M, 10, True)],
)
def test_stacked_rows_log_what_rows_one_at_a_time_log(
    tmp_path, monkeypatch, rows, samples, hist_samples, alpha
):
    """The loop route's rows stacked into blocks of ``rows`` (neither N = 8 nor
    M = 3 a multiple) log the values of rows reduced one at a time, to roundoff;
    and each parameter's reducer gets the blocks, not single rows. ``alpha`` keeps
    the rows for the projection on the step (no block squared in place);
    ``hist_samples=10`` draws histogram positions, 0 takes every element."""
    sizes: list[int] = []
    add = ChunkReducer.add

    def counted(self, block, reused=False):
        sizes.append(block.shape[0])
        return add(self, block, reused)

    monkeypatch.setattr(ChunkReducer, "add", counted)
    monkeypatch.setattr(batch_replay, "LOOP_WIDTH", 0)
    quantities = QUANTITIES if alpha else [q for q in QUANTITIES if q != "alpha"]
    options = {"replay_samples": samples, "hist_samples": hist_samples}
    steps, tensors, m = 3, 6, samples or N  # the model's 6 parameter tensors
    one_at_a_time = _steps(tmp_path, "rows", quantities, steps, lr=0.1, **options)
    assert sizes == [1] * (steps * tensors * m)
    sizes.clear()
    monkeypatch.setattr(batch_replay, "loop_rows", lambda device, m, width: rows)
    blocks = _steps(tmp_path, "blocks", quantities, steps, lr=0.1, **options)
    per_step = [rows] * (m // rows) + [m % rows] * (m % rows > 0)
    assert sorted(sizes) == sorted(per_step * (steps * tensors))
    _assert_same_records(blocks, one_at_a_time)


@pytest.mark.parametrize("m", [1, M])
def test_subsample_sums_are_unbiased(tmp_path, m):
    model, loss_fn, x, y = _problem()
    gn = reference.flat(reference.batch_coupled_grads(model, loss_fn, x, y))
    sq_sum, grad_sq = (gn**2).sum(), (gn.mean(0) ** 2).sum()
    exact = float((sq_sum - N * grad_sq) / (N - 1))
    unscaled = float((sq_sum * m / N - N * grad_sq) / (N - 1))  # without N / M

    steps = 50
    records = _steps(tmp_path, "sub", ["gradient_noise_scale"], steps, replay_samples=m)
    values = torch.tensor(
        [r["gradient_noise_scale"]["trace_cov"] for r in records], dtype=torch.float64
    )
    mean, error = float(values.mean()), float(values.std() / math.sqrt(steps))

    # The subsample changes from step to step (with M = 1: every sample is drawn).
    assert values.unique().numel() > min(10, N - 1)
    assert abs(mean - exact) < 4 * error, (mean, exact, error)
    assert abs(unscaled - exact) > 6 * error, (unscaled, exact, error)


def test_the_option_is_in_meta_and_the_engine_line(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="cockpit"):
        _steps(tmp_path, "run", ["norm_test"], 1, replay_samples=M)
    meta = json.loads((tmp_path / "run" / "meta.json").read_text())
    assert meta["replay_samples"] == M
    assert f"gradients of {M} random samples per step" in caplog.text


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "8"])
def test_a_bad_count_is_refused(tmp_path, bad):
    model, loss_fn, _, _ = _problem()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ConfigurationError, match=r"replay_samples must be None.*int"):
        cockpit.Cockpit(model, loss_fn, optimizer, logdir=tmp_path, replay_samples=bad)


def test_more_samples_than_the_batch_are_refused_at_the_step(tmp_path):
    with pytest.raises(UsageError, match=rf"replay_samples={N + 1} is more than the"):
        _steps(tmp_path, "run", ["norm_test"], 1, replay_samples=N + 1)


# The GGN diagonal of the batch replay on a subsample: N_GGN samples, M_GGN drawn.
N_GGN, M_GGN = 4, 2
_CURVATURE = BatchReplay.curvature


def _ggn_diagonals(
    tmp_path, monkeypatch, name: str, quantities, **kwargs
) -> tuple[list[dict[str, torch.Tensor]], torch.Tensor]:
    """The ``ggn_exact`` diagonals the batch replay returns at one tracked step
    (per call of ``curvature``) and the brute-force ``[D, D]`` GGN of the batch."""
    model, loss_fn, x, y = _problem()
    x, y = x[:N_GGN], y[:N_GGN]
    ggn = batch_coupled_ggn(model, loss_fn, x, y)
    found = []

    def kept(self, *args, **kw):
        result = _CURVATURE(self, *args, **kw)
        found.append(result.diagonals["ggn_exact"])
        return result

    monkeypatch.setattr(BatchReplay, "curvature", kept)
    _steps(tmp_path, name, quantities, 1, samples=N_GGN, **kwargs)
    return found, ggn


def _flat(diagonal: dict[str, torch.Tensor]) -> torch.Tensor:
    return torch.cat([d.reshape(-1) for d in diagonal.values()])


EXACT_TRACE = {"hess_trace": HessTrace(curvature="ggn_exact")}


def test_all_samples_give_the_exact_ggn_diagonal(tmp_path, monkeypatch):
    (diagonal,), ggn = _ggn_diagonals(tmp_path, monkeypatch, "all", EXACT_TRACE)
    torch.testing.assert_close(_flat(diagonal), ggn.diagonal(), rtol=1e-10, atol=1e-12)


def test_subsampled_ggn_diagonal_averages_to_the_exact_one(
    tmp_path, monkeypatch, replay_route
):
    """Every subset S of M of the N samples drawn once: the mean of the estimates
    is the exact diagonal (each sample lies in the same number of subsets)."""
    subsets = list(itertools.combinations(range(N_GGN), M_GGN))
    estimates = []
    for i, subset in enumerate(subsets):
        drawn = torch.tensor(subset)
        monkeypatch.setattr(
            BatchReplay, "draw_subsample", lambda self, n, gen, d=drawn: d
        )
        (diagonal,), ggn = _ggn_diagonals(
            tmp_path, monkeypatch, f"s{i}", EXACT_TRACE, replay_samples=M_GGN
        )
        estimates.append(_flat(diagonal))
    exact = ggn.diagonal()
    mean = torch.stack(estimates).mean(0)
    torch.testing.assert_close(mean, exact, rtol=1e-10, atol=1e-12)
    # Each subset alone is not the exact diagonal: the average is the check.
    assert all((e - exact).abs().max() > 1e-3 * exact.abs().max() for e in estimates)


def test_subsample_of_all_samples_is_the_full_ggn_diagonal(tmp_path, monkeypatch):
    (full,), _ = _ggn_diagonals(tmp_path, monkeypatch, "full", EXACT_TRACE)
    (every,), _ = _ggn_diagonals(
        tmp_path, monkeypatch, "every", EXACT_TRACE, replay_samples=N_GGN
    )
    for name, value in every.items():
        assert torch.equal(value, full[name]), name


@pytest.mark.parametrize("m", [1, 2])
def test_a_business_step_pulls_back_m_rows_not_n(
    tmp_path, monkeypatch, replay_route, m
):
    """The gradients' M rows and the GGN diagonals' M columns (``ggn_mc``: one
    per sample), not N: counted where the rows are pulled back."""
    pulled = []
    vjps = BatchReplay._vjps

    def counted(self, outputs, names, cotangents):
        batched = cotangents.dim() > outputs.dim()
        pulled.append(cotangents.shape[0] if batched else 1)
        return vjps(self, outputs, names, cotangents)

    monkeypatch.setattr(BatchReplay, "_vjps", counted)
    _steps(tmp_path, "business", None, 1, preset="business", replay_samples=m)
    assert sum(pulled) == 2 * m, (pulled, N)


def test_the_ggn_subsample_is_seeded(tmp_path):
    def traces(name, seed):
        records = _steps(tmp_path, name, EXACT_TRACE, 3, replay_samples=M, seed=seed)
        return [r["hess_trace"]["total"] for r in records]

    first = traces("a", 0)
    assert traces("b", 0) == first
    assert traces("c", 1) != first
    assert len(set(first)) > 1  # a new subsample at each step
