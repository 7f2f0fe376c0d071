"""Curvature of the batch replay: the GGN of coupled samples, exactly or subsampled.

The GGN of the batch loss is ``J^T H_z J`` with ``J = dz/dtheta`` the Jacobian of the
whole loss input ``z`` ``[N, *Z]`` and ``H_z`` block-diagonal over samples, so its
factor columns are ``J^T c_nk`` for cotangents ``c_nk`` zero except at sample n, where
they are the loss factor's columns (:mod:`cockpit.engines.loss_factors`): the GGN
diagonal and its Gram matrix (ViViT) follow exactly, at K times the cost of the
gradients (K columns per sample). The Hessian's diagonal is Hutchinson's estimate on
the whole batch, as in :mod:`cockpit.engines.func_engine`.

**Subsample** (``Cockpit(..., replay_samples=M)``, when the batch replay computes
every parameter): the GGN diagonals (``ggn_mc``, ``ggn_exact``: ``hess_trace``,
``tic_diag`` and ``tic_trace`` of ``business``) are sums over samples, so they are
Horvitz-Thompson estimates like the first-order sums of
:mod:`cockpit.engines.batch_replay`: ``(N / M) sum_{n in S'} sum_k (J^T c_nk)^2``, M
samples' columns pulled back instead of N. S' is drawn independently of the
gradients' S, from the same seeded stream after it (deterministic for a seed):
curvature can be due at steps without first-order statistics, and each estimate stays
unbiased on its own. The TIC quantities are then ratios of two independent unbiased
estimates. The Hessian diagonal (Hutchinson's estimate on the whole batch) and the
GGN's Gram columns (their own ``samples`` limit, the first samples) do not depend on
M. The columns of a chunk of c samples (K each) are pulled back together, bounded by
``func_engine.CHUNK_ELEMENTS`` on every device.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import torch
from torch import Tensor
from torch.func import grad, vmap

from cockpit.engines.func_engine import Batch, FuncCurvature

if TYPE_CHECKING:
    from cockpit.engines.batch_replay import BatchReplay

__all__ = ["replay_curvature"]


def replay_curvature(
    replay: BatchReplay,
    batch: Batch,
    diagonals: set[str],
    gram: tuple[bool, int, int | None] | None,
    probes: int,
    generator: torch.Generator,
    subsample: bool,
) -> FuncCurvature:
    """The due curvature of all tracked parameters, exact in the coupled sense.

    The results of :meth:`~cockpit.engines.func_engine.FuncEngine.curvature`.

    Args:
        replay: The batch replay (its torch.func engine, M and backward passes).
        batch: The step's kept model call and target.
        diagonals: Sources among ``ggn_mc``, ``ggn_exact``, ``hessian``.
        gram: ``(exact, mc_samples, samples)`` for the GGN's Gram matrix, or None;
            its columns are those of the first ``samples`` samples.
        probes: Hutchinson probes for the ``hessian`` diagonal.
        generator: The tracker's generator on the model's device (MC draws, the
            GGN diagonals' subsample).
        subsample: The batch replay computes every parameter (coupled samples):
            with ``samples`` M set, the GGN diagonals are Horvitz-Thompson
            estimates from a subsample of M samples (module docstring).

    """
    func = replay.func
    found = FuncCurvature()
    if "hessian" in diagonals:  # Hutchinson on the whole batch already
        found = func.curvature(batch, {"hessian"}, None, probes, generator)
    names = list(func.params)
    n = batch.size
    sources = [s for s in ("ggn_mc", "ggn_exact") if s in diagonals]
    if sources:
        found.diagonals.update(
            _ggn_diagonals(replay, batch, sources, generator, subsample)
        )
    if gram is not None:
        func.losses.check_factored("ggn_top_eigen and curvature_noise")
        exact, mc_samples, limit = gram
        first = torch.arange(
            n if limit is None else min(limit, n), device=generator.device
        )
        spec = ("exact",) if exact else ("mc", mc_samples, generator)
        parts: dict[str, list[Tensor]] = {name: [] for name in names}
        for block in _columns(replay, batch, names, spec, first, with_grad=True):
            for name in names:
                parts[name].append(block[name])
        found.columns = {name: torch.cat(parts[name]) for name in names}
    return found


def _ggn_diagonals(
    replay: BatchReplay,
    batch: Batch,
    sources: list[str],
    generator: torch.Generator,
    subsample: bool,
) -> dict[str, dict[str, Tensor]]:
    """Source -> parameter name -> the GGN diagonal of the batch loss.

    ``scale * sum_n sum_k (J^T c_nk)^2`` over all N samples, or with ``subsample``
    and M set, ``scale * (N / M) sum_{n in S} sum_k (J^T c_nk)^2`` over a uniform
    subsample S of M samples drawn from ``generator`` (one S for both sources),
    unbiased for the full sum since each sample is in S with probability M / N.
    ``scale`` is 1 / N for a mean-reduced loss, else 1. Shapes: the parameters'.
    """
    func = replay.func
    names = list(func.params)
    n = batch.size
    if subsample and replay.samples is not None:
        samples = replay.draw_subsample(n, generator)
    else:
        samples = torch.arange(n, device=generator.device)
    scale = (1.0 / n if func.mean else 1.0) * (n / samples.numel())
    found: dict[str, dict[str, Tensor]] = {}
    for source in sources:
        func.losses.check_factored(f"curvature='{source}'")
        sums = {name: torch.zeros_like(func.params[name]) for name in names}
        spec = ("exact",) if source == "ggn_exact" else ("mc", 1, generator)
        for block in _columns(replay, batch, names, spec, samples, with_grad=False):
            for name in names:
                sums[name] += block[name].square().sum((0, 1)).view_as(sums[name])
        found[source] = {k: v * scale for k, v in sums.items()}
    return found


def _columns(
    replay: BatchReplay,
    batch: Batch,
    names: list[str],
    spec: tuple,
    samples: Tensor,
    with_grad: bool,
) -> Iterator[dict[str, Tensor]]:
    """``J^T c_nk`` for the samples ``n`` in ``samples``, by chunks.

    Args:
        replay: The batch replay.
        batch: The step's kept model call and target.
        names: The parameters to differentiate.
        spec: ``("exact",)`` or ``("mc", M, generator)``: the loss factor's columns.
        samples: ``[m]`` increasing indices of the samples whose columns are
            pulled back (the loss factor's columns are formed for all N), on
            the model's device (a copy from the host would synchronize).
        with_grad: Put the gradient column ``d l_n / d z_n`` first.

    Yields:
        ``{name: [c, K, D_l]}`` for consecutive chunks of ``samples``.

    """
    losses = replay.func.losses
    z = replay.loss_input(batch)
    leaf = z.detach().unsqueeze(1)  # [N, 1, *Z]: one sample per vmap slice
    target = batch.target.detach().unsqueeze(1)
    if spec[0] == "exact":
        columns = vmap(losses.exact_columns)(leaf, target)
    else:
        _, count, generator = spec
        noise = losses.draw(losses.noise_shape(z.shape, count), z, generator)
        columns = vmap(losses.mc_columns)(leaf, target, noise)
    if with_grad:
        losses.prepare(batch.target, z.shape[0])
        slopes = vmap(grad(losses.sample_loss))(leaf, target)
        columns = torch.cat([slopes.unsqueeze(1), columns], dim=1)
    columns = columns.squeeze(2)[samples]  # [m, K, *Z]
    n, k = z.shape[0], columns.shape[1]
    chunk = replay.vmap_chunk(names, n, per_sample=k, cotangent_size=z.numel())
    for first in range(0, samples.numel(), chunk):
        block = columns[first : first + chunk]
        c = block.shape[0]
        cotangents = z.new_zeros(c, k, *z.shape)
        chunk_rows = torch.arange(c, device=z.device)
        cotangents[chunk_rows, :, samples[first : first + c]] = block
        (rows,) = replay.pulled_back(z, names, cotangents.flatten(0, 1), c * k)
        yield {name: rows[name].view(c, k, -1) for name in names}
