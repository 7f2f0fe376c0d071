"""torch.func engine: per-sample gradients and curvature for any differentiable model.

After the user's backward pass, the engine replays the model sample by sample with
``torch.func`` on a plain (un-hooked) view of it: ``functional_call`` with the
tracked parameters as inputs, ``vjp`` to pull cotangents of the loss input back to
the parameters, and ``vmap`` over samples (in chunks, so memory stays bounded) and
over the cotangents. One primitive serves every quantity: for sample n with loss
input ``f_n`` and cotangent columns ``S_n [K, *f_n.shape]`` it gives
``J_n^T S_n`` ``[K, D]`` (J_n: Jacobian of ``f_n`` w.r.t. the parameters):

- per-sample gradients ``g_n``: ``K = 1``, the column ``d l_n / d f_n``;
- GGN factor columns (:mod:`cockpit.engines.loss_factors`): ``K = M`` Monte-Carlo or
  ``K = C E`` exact columns; their squares summed over n and k are the GGN diagonal,
  their Gram matrix gives the GGN's eigenvalues (ViViT, as in
  :mod:`cockpit.engines.ggn_gram`).

Cost of a per-sample replay: about one forward and one backward pass of the batch,
vectorized over samples, plus forming ``[c, D]`` per-sample gradients of a chunk of c
samples. Because the replay is separate from the user's backward, it handles what
module hooks cannot: parameters shared between modules (weight tying), modules run
several times, parameters used outside their module, and any layer type.

The exact Hessian's diagonal, which has no such factor, is Hutchinson's estimate
(:mod:`cockpit.engines._func_curvature`). What the replay sees (parameters, dropout,
BatchNorm) is said in :mod:`cockpit.engines._func_batch`; models whose samples are
coupled (BatchNorm in training mode) or that ``vmap`` cannot replay per sample (RNNs)
go to :mod:`cockpit.engines.batch_replay` instead.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call, vjp, vmap

from cockpit.engines._chunk_reducer import from_blocks
from cockpit.engines._func_batch import (
    Batch,
    ReplayInputs,
    batch_norm_in_training,
    choose_field,
    output_fields,
    output_itself,
    refuse_batch_norm,
    replay_failure,
)
from cockpit.engines._func_curvature import (
    Estimate,
    FuncCurvature,
    gram_parts,
    hutchinson,
)
from cockpit.engines.layer_stats import LayerStats, SampleRequest
from cockpit.engines.loss_factors import LossFactors
from cockpit.exceptions import UnsupportedModelError, UsageError

#: Elements of ``[c, K, D]`` results per chunk of samples: bounds the memory of one
#: vectorized replay (256 MB in float32) while keeping chunks large (one call of the
#: vectorized model costs about as much for 8 samples as for 32 on a CPU).
CHUNK_ELEMENTS = 2**26

#: Batching-rule fallbacks of torch.func are slower, not wrong; the user cannot act
#: on them, so they are not raised as warnings.
FALLBACK_WARNING = "There is a performance drop because we have not yet implemented"


class FuncEngine:
    """Per-sample statistics and curvature of some parameters, by ``torch.func``.

    Args:
        model: The user's model.
        params: Every tracked parameter, by name.
        loss_fn: The loss module.
        mean_reduction: The loss averages over samples.
        loss_input: Maps the model's output to the loss module's input (default: the
            output itself); applied per sample.

    """

    def __init__(
        self,
        model: nn.Module,
        params: dict[str, nn.Parameter],
        loss_fn: nn.Module,
        mean_reduction: bool,
        loss_input: Callable[[Any], Tensor] | None = None,
    ):
        self.model = model
        self.params = params
        self.losses = LossFactors(loss_fn, mean_reduction)
        self.mean = mean_reduction
        self.loss_input = loss_input or output_itself
        self.automatic = loss_input is None

    def adopt(self, output: Any, input_shape: torch.Size) -> None:
        """Choose the loss input of a structured output once (``choose_field``)."""
        fields = output_fields(output) if self.automatic else None
        if fields is not None:
            self.loss_input, self.automatic = choose_field(fields, input_shape), False

    def per_sample_stats(
        self,
        batch: Batch,
        grads: dict[str, Tensor],
        request: SampleRequest,
        names: list[str],
    ) -> dict[str, LayerStats]:
        """Per-sample statistics of the parameters ``names`` (the rest are constants).

        Args:
            batch: The step's kept model call and target.
            grads: Parameter name -> flat mini-batch gradient (of the mean loss).
            request: What the due quantities need.
            names: The parameters to differentiate.

        """
        blocks = (
            {
                name: block[name][:, 0].reshape(block[name].shape[0], -1)
                for name in names
            }
            for _, block in self._chunks(batch, names, columns=None)
        )
        params = {name: self.params[name] for name in names}
        return from_blocks(blocks, batch.size, grads, params, request)

    def curvature(
        self,
        batch: Batch,
        diagonals: set[str],
        gram: tuple[bool, int, int | None] | None,
        probes: int,
        generator: torch.Generator,
    ) -> FuncCurvature:
        """The due curvature of all tracked parameters.

        Args:
            batch: The step's kept model call and target.
            diagonals: Sources among ``ggn_mc``, ``ggn_exact``, ``hessian``.
            gram: ``(exact, mc_samples, samples)`` for the GGN's Gram matrix, or None.
            probes: Hutchinson probes for the ``hessian`` diagonal.
            generator: The tracker's generator on the model's device (MC draws).

        """
        found = FuncCurvature()
        names = list(self.params)
        n = batch.size
        batch_scale = 1.0 / n if self.mean else 1.0
        for source, exact in (("ggn_mc", False), ("ggn_exact", True)):
            if source not in diagonals:
                continue
            self.losses.check_factored(f"curvature='{source}'")
            sums = {name: torch.zeros_like(self.params[name]) for name in names}
            spec = ("exact",) if exact else ("mc", 1, generator)
            for _, block in self._chunks(batch, names, spec):
                for name in names:
                    sums[name] += block[name].square().sum((0, 1))
            found.diagonals[source] = {k: v * batch_scale for k, v in sums.items()}
        if "hessian" in diagonals:
            found.diagonals["hessian"], found.estimates["hessian"] = self._hutchinson(
                batch, probes, generator
            )
        if gram is not None:
            self.losses.check_factored("ggn_top_eigen and curvature_noise")
            exact, mc_samples, samples = gram
            used = n if samples is None else min(samples, n)
            spec = ("exact",) if exact else ("mc", mc_samples, generator)
            parts: dict[str, list[Tensor]] = {name: [] for name in names}
            for _, block in self._chunks(
                batch, names, spec, samples=used, with_grad=True
            ):
                for name in names:
                    parts[name].append(block[name].flatten(2))
            found.columns = {name: torch.cat(parts[name]) for name in names}
        return found

    def _hutchinson(
        self, batch: Batch, probes: int, generator: torch.Generator
    ) -> tuple[dict[str, Tensor], Estimate]:
        gradient = batch.capture.loss_gradient(
            lambda out: self.losses.loss_fn(self.loss_input(out), batch.target),
            list(self.params.values()),
        )
        mean_scale = 1.0 if self.mean else 1.0 / batch.size
        return hutchinson(gradient, self.params, probes, generator, mean_scale)

    def _chunks(
        self,
        batch: Batch,
        names: list[str],
        columns: tuple | None,
        samples: int | None = None,
        with_grad: bool = False,
    ) -> Iterator[tuple[slice, dict[str, Tensor]]]:
        """``J_n^T S_n`` for chunks of samples: ``{name: [c, K, *shape]}``.

        Args:
            batch: The step's kept model call and target.
            names: The parameters to differentiate.
            columns: ``None``: the per-sample gradient column; ``("exact",)``: exact
                factor columns; ``("mc", M, generator)``: M Monte-Carlo columns.
            samples: Use the first ``samples`` samples only.
            with_grad: Put the gradient column before the factor columns.

        """
        target = batch.target
        self.losses.prepare(target, batch.size)
        n = batch.size if samples is None else samples
        inputs = ReplayInputs(batch.capture, batch.size)
        differentiated = set(names)
        constants = {
            k: p.detach() for k, p in self.params.items() if k not in differentiated
        }
        variables = {k: self.params[k].detach() for k in names}
        width = sum(p.numel() for p in variables.values())
        noise = None
        if columns is not None and columns[0] == "mc":
            _, count, gen = columns
            shape = self.losses.noise_shape(batch.input_shape, count)
            like = next(iter(self.params.values()))
            noise = self.losses.draw(shape, like, gen)[:n]
        per_column = _column_count(batch.input_shape, columns) + with_grad
        chunk = max(1, min(n, CHUNK_ELEMENTS // max(1, width * per_column)))

        def one(variables, sample, target_n, noise_n):
            args, kwargs = inputs.call(sample)

            def loss_input(variables):
                out = functional_call(
                    self.model, {**constants, **variables}, args, kwargs
                )
                return self.loss_input(out)

            f, pull = vjp(loss_input, variables)
            batch.check_shape(f.shape)
            t = target_n.unsqueeze(0)
            f = f.detach()
            if columns is None or with_grad:
                gradient = torch.func.grad(self.losses.sample_loss)(f, t).unsqueeze(0)
            if columns is None:
                cotangents = gradient
            else:
                if columns[0] == "exact":
                    cotangents = self.losses.exact_columns(f, t)
                else:
                    cotangents = self.losses.mc_columns(f, t, noise_n)
                if with_grad:
                    cotangents = torch.cat([gradient, cotangents])
            return vmap(pull)(cotangents)[0]

        batched = vmap(
            one,
            in_dims=(None, 0, 0, 0 if noise is not None else None),
            randomness="different",
        )
        device = target.device
        cuda = [device] if device.type == "cuda" else []
        with (
            torch.random.fork_rng(devices=cuda),
            warnings.catch_warnings(),
            torch.no_grad(),
        ):
            warnings.filterwarnings("ignore", message=FALLBACK_WARNING)
            torch.manual_seed(batch.seed)
            for first in range(0, n, chunk):
                rows = slice(first, min(first + chunk, n))
                block_noise = noise[rows] if noise is not None else None
                try:
                    block = batched(
                        variables, inputs.rows(rows), target[rows].detach(), block_noise
                    )
                except (UsageError, UnsupportedModelError):
                    raise
                except Exception as error:
                    raise replay_failure(error) from error
                yield rows, block


def _column_count(input_shape: torch.Size, columns: tuple | None) -> int:
    """K: cotangent columns per sample (exact: one per loss-input entry, C E)."""
    if columns is None:
        return 1
    if columns[0] == "mc":
        return columns[1]
    return max(1, input_shape[1:].numel())


__all__ = [
    "CHUNK_ELEMENTS",
    "Batch",
    "Estimate",
    "FuncCurvature",
    "FuncEngine",
    "batch_norm_in_training",
    "gram_parts",
    "refuse_batch_norm",
]
