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

The exact Hessian's diagonal has no such factor: Hutchinson's estimator
``diag(H) ~ (1/S) sum_s v_s * H v_s`` with Rademacher probes ``v_s`` on
Hessian-vector products of the replayed batch loss; its trace's standard error is
``std_s(v_s^T H v_s) / sqrt(S)``.

Cost of a per-sample replay: about one forward and one backward pass of the batch,
vectorized over samples, plus forming ``[c, D]`` per-sample gradients of a chunk of c
samples. Because the replay is separate from the user's backward, it handles what
module hooks cannot: parameters shared between modules (weight tying), modules run
several times, parameters used outside their module, and any layer type.

Semantics:

- The replay uses the parameters at the end of the block, the kept model inputs, and
  the target the loss module got. The mini-batch gradient used in ``g_n . g`` is the
  one the user's backward put in ``.grad``.
- Random operations (dropout) draw their own masks per sample inside ``vmap``, from
  a seed of the tracker's generator in a fork of the global random state: the
  training's random stream is untouched, but the per-sample gradients see other
  dropout masks than the step did (they are statistics of the same model, with
  dropout noise of their own).
- BatchNorm in training mode mixes samples, so per-sample gradients are not defined:
  refused (:func:`refuse_batch_norm`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call, vjp, vmap

from cockpit.engines.ggn_gram import GramPart
from cockpit.engines.hessian import ForwardCapture, hvp_operator
from cockpit.engines.layer_stats import ChunkReducer, LayerStats, SampleRequest
from cockpit.engines.loss_factors import LossFactors
from cockpit.exceptions import UnsupportedModelError, UsageError

#: Elements of ``[c, K, D]`` results per chunk of samples: bounds the memory of one
#: vectorized replay (256 MB in float32) while keeping chunks large (one call of the
#: vectorized model costs about as much for 8 samples as for 32 on a CPU).
CHUNK_ELEMENTS = 2**26

#: Batching-rule fallbacks of torch.func are slower, not wrong; the user cannot act
#: on them, so they are not raised as warnings.
FALLBACK_WARNING = "There is a performance drop because we have not yet implemented"


@dataclass
class Estimate:
    """How a stochastic curvature estimate was made.

    Attributes:
        probes: Number of Hutchinson probes S.
        std_error: ``[]``, standard error of the trace of the mean loss's Hessian.

    """

    probes: int
    std_error: Tensor


@dataclass
class FuncCurvature:
    """What the engine computed for the due curvature quantities (batch-loss scale).

    Attributes:
        diagonals: Source -> parameter name -> ``[*shape]`` curvature diagonal of the
            batch loss (mean or sum reduction, like BackPACK's).
        estimates: Source -> :class:`Estimate`, for stochastic sources.
        columns: Parameter name -> ``[n, 1 + M, D_l]``: each used sample's gradient
            followed by its GGN factor columns (per-sample scaling).

    """

    diagonals: dict[str, dict[str, Tensor]] = field(default_factory=dict)
    estimates: dict[str, Estimate] = field(default_factory=dict)
    columns: dict[str, Tensor] = field(default_factory=dict)


def refuse_batch_norm(model: nn.Module) -> None:
    """Refuse BatchNorm layers in training mode: per-sample gradients need none."""
    for name, module in model.named_modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.training:
            raise UnsupportedModelError(
                f"Module '{name}' ({type(module).__name__}) is in training mode: it "
                "normalizes with the statistics of the whole batch, so each sample's "
                "loss depends on the other samples and per-sample gradients are not "
                "defined. Put BatchNorm layers in eval mode while tracking "
                "(module.eval()), use GroupNorm or LayerNorm, or drop the per-sample "
                "and curvature quantities."
            )


@dataclass
class Batch:
    """The step as the engine replays it.

    Attributes:
        capture: The model's kept call (inputs and random state).
        target: The target the loss module got.
        input_shape: The shape of the loss module's input ``[N, ...]``.
        seed: Seeds random operations (dropout) in the replay.

    """

    capture: ForwardCapture
    target: Tensor
    input_shape: torch.Size
    seed: int

    @property
    def size(self) -> int:
        """N."""
        return self.input_shape[0]

    def check_shape(self, shape: torch.Size) -> None:
        """Refuse a replayed loss input whose shape is not one sample's."""
        if tuple(shape[1:]) != tuple(self.input_shape[1:]) or shape[0] != 1:
            raise UsageError(
                f"The loss module got an input of shape {list(self.input_shape)}, but "
                f"the model's output (through loss_input) has shape "
                f"{[self.size, *shape[1:]]} per batch. The torch.func engine replays "
                "model -> loss per sample and needs to know what happens in between: "
                "pass Cockpit(..., loss_input=fn) with fn(output) -> the loss "
                "module's input, e.g. loss_input=lambda out: out.transpose(1, 2), "
                "with the batch dimension first and kept."
            )


class _Inputs:
    """The model's kept call, split into per-sample tensors and everything else."""

    def __init__(self, capture: ForwardCapture, n: int):
        if capture.args is None:
            raise UsageError(
                "The torch.func engine replays the model, but the model was not "
                "called inside the track() block. Call the model given to Cockpit "
                "inside it."
            )
        self.args, self.kwargs = capture.args, capture.kwargs
        self.batched: dict[Any, Tensor] = {}
        for key, value in [*enumerate(self.args), *self.kwargs.items()]:
            if isinstance(value, Tensor) and value.dim() > 0 and value.shape[0] == n:
                self.batched[key] = value.detach()

    def rows(self, rows: slice) -> dict[Any, Tensor]:
        return {key: value[rows] for key, value in self.batched.items()}

    def call(self, one: dict[Any, Tensor]) -> tuple[tuple, dict]:
        """The model's arguments for one sample (batch dimension 1)."""
        args = [one[i].unsqueeze(0) if i in one else a for i, a in enumerate(self.args)]
        kwargs = {
            k: one[k].unsqueeze(0) if k in one else v for k, v in self.kwargs.items()
        }
        return tuple(args), kwargs


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
        self.loss_input = loss_input or _output_itself

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
        n = batch.size
        reducers = {
            name: ChunkReducer(n, grads[name], self.params[name], request)
            for name in names
        }
        kept: dict[str, list[Tensor]] = {name: [] for name in names}
        for _, block in self._chunks(batch, names, columns=None):
            for name in names:
                flat = block[name][:, 0].reshape(block[name].shape[0], -1)
                reducers[name].add(flat)
                if request.keep_for_projection:
                    kept[name].append(flat)
        stats = {}
        for name in names:
            project = _projector(kept[name]) if request.keep_for_projection else None
            stats[name] = reducers[name].finish(project)
        return stats

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
        params = list(self.params.values())
        loss = self.losses.loss_fn(
            self.loss_input(batch.capture.replay()), batch.target
        )
        hvp = hvp_operator(loss, params, 1.0)  # Hessian of the batch loss
        size = sum(p.numel() for p in params)
        first = params[0]
        diagonal = first.new_zeros(size)
        traces = []
        for _ in range(probes):
            probe = torch.randint(
                2, (size,), generator=generator, device=first.device
            ).to(first.dtype)
            probe = probe * 2 - 1
            product = probe * hvp(probe)
            diagonal += product
            traces.append(product.sum())
        diagonal /= probes
        per_param = dict(
            zip(self.params, diagonal.split([p.numel() for p in params]), strict=True)
        )
        shaped = {
            name: per_param[name].view_as(p).detach() for name, p in self.params.items()
        }
        mean_scale = 1.0 if self.mean else 1.0 / batch.size
        spread = torch.stack(traces).detach() * mean_scale
        std_error = spread.std(correction=1) / probes**0.5  # probes >= 2
        return shaped, Estimate(probes=probes, std_error=std_error)

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
        n = batch.size if samples is None else samples
        inputs = _Inputs(batch.capture, batch.size)
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
                    raise UnsupportedModelError(
                        "The torch.func engine could not replay the model per sample "
                        f"({type(error).__name__}: {error}). torch.func's vmap "
                        "refuses data-dependent control flow (if on a tensor's "
                        "value), .item() and in-place changes of module state in "
                        "forward. Make the forward pass free of them, or use "
                        "engine='backpack' or drop the per-sample and curvature "
                        "quantities."
                    ) from error
                yield rows, block


def _column_count(input_shape: torch.Size, columns: tuple | None) -> int:
    """K: cotangent columns per sample (exact: one per loss-input entry, C E)."""
    if columns is None:
        return 1
    if columns[0] == "mc":
        return columns[1]
    return max(1, input_shape[1:].numel())


def gram_parts(
    columns: dict[str, Tensor], n_batch: int, mean: bool
) -> dict[str, GramPart]:
    """Per parameter, the Gram matrices of :mod:`cockpit.engines.ggn_gram`.

    Args:
        columns: Parameter name -> ``[n, 1 + M, D_l]`` from
            :meth:`FuncEngine.curvature`: gradient, then factor columns, per sample.
        n_batch: N, the whole batch (BackPACK's scaling uses it).
        mean: The loss averages over samples.

    Returns:
        Parameter name -> ``GramPart`` in BackPACK's scaling (``V / sqrt(N)`` and
        gradients ``/ N`` for a mean-reduced loss), index ``m n + i`` for column m
        of sample i.

    """
    parts = {}
    for name, block in columns.items():
        grads = block[:, 0]
        factor = block[:, 1:].transpose(0, 1).flatten(0, 1)
        if mean:
            grads, factor = grads / n_batch, factor / math.sqrt(n_batch)
        parts[name] = GramPart(gram=factor @ factor.T, cross=grads @ factor.T)
    return parts


def _output_itself(output: Any) -> Tensor:
    if not isinstance(output, Tensor):
        raise UsageError(
            f"The model returned a {type(output).__name__}, not a tensor, so the "
            "torch.func engine cannot tell what the loss module gets. Pass "
            "Cockpit(..., loss_input=fn) with fn(output) -> the loss module's input, "
            "e.g. loss_input=lambda out: out.logits."
        )
    return output


def _projector(blocks: list[Tensor]) -> Callable[[Tensor], Tensor]:
    per_sample = torch.cat(blocks)
    return per_sample.__matmul__


__all__ = [
    "CHUNK_ELEMENTS",
    "Estimate",
    "FuncCurvature",
    "FuncEngine",
    "gram_parts",
    "refuse_batch_norm",
]
