"""Batch replay: per-sample gradients as rows of the per-sample losses' Jacobian.

For models whose samples are coupled in the forward pass (BatchNorm in training mode)
or that ``vmap`` cannot replay one sample at a time (``nn.LSTM``, ``nn.GRU``), the
per-sample gradient is defined through the whole batch's forward pass::

    g_n = d l_n / d theta,   l = [l_1, ..., l_N] = losses(model(X)),

the gradient of sample n's loss as a function of the parameters, with every other
sample's input held fixed but not its activations: through BatchNorm's batch
statistics, ``l_n`` depends on theta via all samples. Then ``(1/N) sum_n g_n`` is the
gradient of the mean loss, i.e. ``.grad`` exactly, so every identity of the
first-order quantities holds. Without coupling, ``g_n`` is the usual per-sample
gradient.

The engine replays the step's forward pass once on the whole batch with the step's
random state (the same dropout masks) and restores the buffers afterwards
(:class:`~cockpit.engines.hessian.ForwardCapture`), then pulls the cotangents ``e_n``
of ``l`` back through that one graph: each gives the Jacobian row ``g_n`` ``[D]``.
Cost: one more forward pass of the batch plus one backward pass of the batch per
sample, so O(N^2) sample-backwards in all, against O(N) for the per-sample engines.

**One backward pass per cotangent, or vmapped chunks.** A model of at least
:data:`LOOP_WIDTH` differentiated parameters gets one plain ``autograd.grad`` per
cotangent; a smaller one, chunks of c cotangents pulled back together
(``is_grads_batched=True``, ``vmap`` over the backward, ``[c, N]`` cotangents give
``[c, D]`` rows). torch has no batching rule for the backward of convolutions and
BatchNorm, so ``vmap`` runs them once per cotangent and concatenates the results:
on a CPU a vmapped chunk cost 10 to 30 % more than the plain passes on a BatchNorm
CNN of 234 k parameters and on ResNet-18, while on models of a few thousand
parameters or fewer, where a pass is mostly dispatch, it cost less; around 30 k
parameters the two routes were within the noise of a shared machine
(``benchmarks/replay_routes.py``, ``benchmarks/results/bnreplay/``).
On the CPU the loop route reduces each row as it comes (there the arithmetic
dominates). On other devices (:data:`UNSTACKED_DEVICES`, :func:`loop_rows`) it first
stacks c consecutive rows, one ``torch.stack`` per parameter tensor, c as large as
``layer_stats.DEVICE_CHUNK_ELEMENTS`` elements of rows allow (6 for ResNet-18's
11.2 M parameters): the reductions' operations (a handful per parameter tensor, on a
GPU each costing its launch and Python call rather than arithmetic) and the
projections of rows kept for alpha run once per block of c samples instead of once
per sample; the sums come in another order, equal to roundoff. Memory beyond the
unstacked route's single row: the other c - 1 rows of the block (``[c, D]`` in all),
and while one parameter's rows are stacked, that parameter's ``[c, D_l]`` once
more. A stacked block is the reducers' own and squared in place; only when rows are
kept for projections does each parameter's squares buffer grow to ``[c, D_l]``
(another c - 1 rows).

**Subsample** (``Cockpit(..., replay_samples=M)``): when the batch replay computes every
parameter (samples coupled by BatchNorm), the cotangents are only those of a uniform
random subsample S of M of the N samples, drawn without replacement from the tracker's
seeded stream at each step (each ``track()`` block): cost one more forward pass plus
M backward passes of the batch instead of N. The per-sample sums then are
Horvitz-Thompson estimates, ``(N / M) sum_{n in S} x_n``, unbiased for the sums over
all N samples: ``sum_n ||g_n||^2``, ``sum_n (g_n . g)^2``, ``sum_n g_{n,j}^2`` and the
moments of the projections (:func:`cockpit.stats.moments.moments` with
``population=N``), and each histogram sample counts N / M times. The histogram's
range is the subsample's extremes, not an estimate of the whole batch's range.
With M = 1 the sums stay unbiased, but a spread over the subsample is zero: the
moments' ``M2`` (alpha's noise of the slopes) needs M >= 2.
The GGN diagonals are subsampled alike (:mod:`cockpit.engines._replay_curvature`).
Exact regardless of M: the losses (from the forward pass, all N), the gradient ``g``
(``.grad``, so ``g_n . g`` uses the whole batch's g), the Hessian diagonal
(Hutchinson's estimate on the whole batch) and the GGN's Gram columns (their own
``samples`` limit, the first samples). Quantities that are ratios of such sums (the
gradient tests, the noise scale) are ratios of unbiased estimates. Recurrent layers
in a model without coupling are replayed on all samples (their per-sample values
add to other engines' layers sample by sample), and so is their curvature.

Curvature from the same replay: :mod:`cockpit.engines._replay_curvature`.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterator

import torch
from torch import Tensor, nn

from cockpit.engines._chunk_reducer import from_blocks
from cockpit.engines._replay_curvature import replay_curvature
from cockpit.engines._row_blocks import stacked
from cockpit.engines.func_engine import CHUNK_ELEMENTS, Batch, FuncCurvature, FuncEngine
from cockpit.engines.layer_stats import LayerStats, SampleRequest, chunk_samples
from cockpit.exceptions import UsageError

__all__ = ["LOOP_WIDTH", "UNSTACKED_DEVICES", "BatchReplay", "loop_rows"]

#: Differentiated parameters from which each cotangent gets a backward pass of its
#: own instead of a share of a vmapped chunk (module docstring).
LOOP_WIDTH = 2**14

#: Device types on which the loop route reduces its per-sample rows one at a time
#: (module docstring).
UNSTACKED_DEVICES = frozenset({"cpu"})


def loop_rows(device: torch.device, rows: int, width: int) -> int:
    """Rows of the loop route stacked per reduction: between 1 and ``rows``.

    1 on the device types of :data:`UNSTACKED_DEVICES`; elsewhere as many rows of
    ``width`` elements as :func:`~cockpit.engines.layer_stats.chunk_samples` allows
    (``DEVICE_CHUNK_ELEMENTS`` in all on a GPU).
    """
    if device.type in UNSTACKED_DEVICES:
        return 1
    return chunk_samples(device, rows, width)


def _scale_sums(stats: LayerStats, factor: float) -> None:
    """Horvitz-Thompson: a subsample's sums over samples times N / M.

    ``sum_sq`` and the histogram sample's weight; the per-sample vectors stay the
    subsample's (their moments are scaled where they are summarized, knowing N).
    """
    if stats.sum_sq is not None:
        stats.sum_sq.mul_(factor)  # the reducer's own sum, in place: no second [D_l]
    if stats.hist_values is not None:
        stats.hist_weight = stats.hist_weight * factor


def _keeping(
    blocks: Iterator[dict[str, Tensor]], kept: dict[str, list[Tensor]]
) -> Iterator[dict[str, Tensor]]:
    """``blocks`` unchanged, each also appended to ``kept`` (by parameter)."""
    for block in blocks:
        for name, rows in kept.items():
            rows.append(block[name])
        yield block


def _project(rows: list[Tensor], direction: Tensor) -> Tensor:
    """``[M]``: ``g_n . v`` of the kept ``[c, D_l]`` blocks of rows, block by block.

    The blocks stay apart: concatenating them would copy all ``[M, D_l]`` rows (one
    more memory pass over M network-sized rows, and new pages) for M dot products.
    """
    return torch.cat([block @ direction for block in rows])


class BatchReplay:
    """Per-sample statistics and curvature from one replay of the whole batch.

    Args:
        func: The torch.func engine: its parameters, loss and ``loss_input`` are
            shared, and it estimates the Hessian diagonal on the whole batch.
        samples: M, the samples per step whose gradients are computed when every
            parameter is replayed (module docstring); ``None``: all.

    """

    def __init__(self, func: FuncEngine, samples: int | None = None):
        self.func = func
        self.samples = samples

    def per_sample_stats(
        self,
        batch: Batch,
        grads: dict[str, Tensor],
        request: SampleRequest,
        names: list[str],
    ) -> dict[str, LayerStats]:
        """Statistics of ``g_n = d l_n / d theta`` for the parameters ``names``.

        Args:
            batch: The step's kept model call and target.
            grads: Parameter name -> ``[D_l]`` gradient of the mean loss.
            request: What the due quantities need.
            names: The parameters to differentiate.

        """
        if not names:
            return {}
        n = batch.size
        z = self.loss_input(batch)
        losses = self.func.losses.batch_losses(z, batch.target)  # [N], with graph
        cotangents = torch.eye(n, device=z.device, dtype=z.dtype)
        subsample = self.samples is not None and set(names) == set(self.func.params)
        if subsample:
            assert request.generator is not None
            cotangents = cotangents[self.draw_subsample(n, request.generator(z.device))]
        m = cotangents.shape[0]
        width = self._width(names)
        if width >= LOOP_WIDTH:
            chunk = loop_rows(z.device, m, width)
        else:
            chunk = self.vmap_chunk(names, n, per_sample=1, cotangent_size=n)
        blocks = self.pulled_back(losses, names, cotangents, chunk)
        params = {name: self.func.params[name] for name in names}
        kept: dict[str, list[Tensor]] = {name: [] for name in names}
        # Stacked rows are the reducers' own copies: squared in place unless kept.
        reused = width >= LOOP_WIDTH and chunk > 1 and not request.keep_for_projection
        if request.keep_for_projection:  # kept here, as they come: never concatenated
            blocks = _keeping(blocks, kept)
            request = dataclasses.replace(request, keep_for_projection=False)
        stats = from_blocks(blocks, m, grads, params, request, reused)
        for name, rows in kept.items():
            if rows:
                stats[name].project = functools.partial(_project, rows)
        if subsample:
            for layer in stats.values():
                _scale_sums(layer, n / m)
        return stats

    def draw_subsample(self, n: int, generator: torch.Generator) -> Tensor:
        """``[M]`` sorted indices of a uniform subsample without replacement."""
        assert self.samples is not None
        if self.samples > n:
            raise UsageError(
                f"replay_samples={self.samples} is more than the {n} samples of "
                "this track() block's batch. Pass replay_samples no larger than the "
                "smallest batch (or None for every sample)."
            )
        drawn = torch.randperm(n, generator=generator, device=generator.device)
        return drawn[: self.samples].sort().values

    def curvature(
        self,
        batch: Batch,
        diagonals: set[str],
        gram: tuple[bool, int, int | None] | None,
        probes: int,
        generator: torch.Generator,
        *,
        subsample: bool = False,
    ) -> FuncCurvature:
        """The due curvature of all tracked parameters, exact in the coupled sense.

        :func:`cockpit.engines._replay_curvature.replay_curvature` on this replay.
        """
        return replay_curvature(
            self, batch, diagonals, gram, probes, generator, subsample
        )

    def loss_input(self, batch: Batch) -> Tensor:
        """``z`` ``[N, *Z]``: the loss input of the replayed batch, with graph."""
        z = self.func.loss_input(batch.capture.replay())
        if z.shape != batch.input_shape:
            raise UsageError(
                f"The loss module got an input of shape {list(batch.input_shape)}, "
                f"but the replayed model's output (through loss_input) has shape "
                f"{list(z.shape)}. Pass Cockpit(..., loss_input=fn) with fn(output) "
                "-> the loss module's input, e.g. lambda out: out.transpose(1, 2)."
            )
        return z

    def _width(self, names: list[str]) -> int:
        """D: the number of differentiated parameters (the elements of one row)."""
        return sum(self.func.params[name].numel() for name in names)

    def vmap_chunk(
        self, names: list[str], n: int, per_sample: int, cotangent_size: int
    ) -> int:
        """Samples per batched backward: ``[c K, D]`` rows and cotangents bounded."""
        largest = max(self._width(names), cotangent_size)
        return max(1, min(n, CHUNK_ELEMENTS // max(1, per_sample * largest)))

    def pulled_back(
        self, outputs: Tensor, names: list[str], cotangents: Tensor, chunk: int
    ) -> Iterator[dict[str, Tensor]]:
        """The vjps of ``outputs`` with ``cotangents`` ``[m, *outputs.shape]``.

        Yields ``{name: [c, D_l]}`` for ``chunk`` consecutive cotangents at a time
        (the last block: the rest): from one vmapped backward pass each, or where
        the differentiated parameters number at least :data:`LOOP_WIDTH`, from a
        plain backward pass per cotangent, the rows stacked
        (:func:`~cockpit.engines._row_blocks.stacked`; module docstring).
        """
        if self._width(names) >= LOOP_WIDTH:
            rows = (self._vjps(outputs, names, cotangent) for cotangent in cotangents)
            yield from stacked(rows, chunk)
            return
        for first in range(0, cotangents.shape[0], chunk):
            block = self._vjps(outputs, names, cotangents[first : first + chunk])
            yield {name: g.reshape(g.shape[0], -1) for name, g in block.items()}

    def _vjps(
        self, outputs: Tensor, names: list[str], cotangents: Tensor
    ) -> dict[str, Tensor]:
        """Per parameter the vjps of ``outputs`` with ``cotangents``, unflattened.

        ``cotangents`` ``[m, *outputs.shape]`` are pulled back together (vmapped),
        giving ``[m, *param.shape]``; one cotangent of ``outputs``' shape by a plain
        backward pass, giving ``param.shape``. Zeros for a parameter not reached.
        """
        params: list[nn.Parameter] = [self.func.params[name] for name in names]
        batched = cotangents.dim() > outputs.dim()
        pulled = torch.autograd.grad(
            outputs,
            params,
            grad_outputs=cotangents,
            retain_graph=True,
            is_grads_batched=batched,
            allow_unused=True,
        )
        leading = cotangents.shape[:1] if batched else ()
        return {
            name: g if g is not None else p.new_zeros(*leading, *p.shape).detach()
            for name, g, p in zip(names, pulled, params, strict=True)
        }
