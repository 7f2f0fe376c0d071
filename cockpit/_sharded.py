"""FSDP (``fully_shard``): the statistics that need only reductions; the rest absent.

A model sharded with ``torch.distributed.fsdp.fully_shard`` (FSDP2) holds each
parameter as a DTensor: rank r keeps a shard ``theta_l^(r)`` of every parameter
(``Shard(0)``: a block of rows; a dimension that the world size does not divide
gives uneven shards, some possibly empty), and after a synchronized backward pass
``.grad`` is this rank's shard of FSDP's reduce-scattered gradient,
``(1/F) sum_r sum_k c w G_{r,k}`` (F: FSDP's gradient divide factor, by default
the world size W; c, w, G as in :class:`cockpit._pieces._AveragedGrads`). The
tracker reads that shard and never gathers a parameter or a gradient.

**What works.** Every quantity whose values are sums over parameter elements or
over samples (``Quantity.shardable``): ``loss`` and ``input_scale`` (per-sample
losses and the input's moments, reduced like DDP's shards), ``grad_norm``,
``param_norm``, ``distance`` and ``update_size``. A norm of a sharded vector adds
over shards, ``||v_l||^2 = sum_r ||v_l^(r)||^2``: each rank sums the squares of its
shards per parameter and one ``all_reduce`` SUM of ``[K L]`` float64 numbers (K of
``grads``, ``params`` and ``moved = params - initial``, as many as are due)
gives every layer's norm (:func:`shard_norm_rows`); ``update_size`` sends ``[L]``
more after ``optimizer.step()``. ``distance`` keeps only this rank's shard of the
initial parameters. The mean gradient is ``.grad``'s shard over ``k = c w N / (F n)``,
which must be the same for every backward pass of every rank (it is when each rank
scales its loss so that ``.grad`` is the global batch's mean gradient, e.g. equal
shards and no scaling; with unequal shards ``loss * n_r W / N``); ranks that
disagree are caught on the device and log a non-finite gradient norm, not a wrong
one, as DDP's average does (:mod:`cockpit._ddp_average`).

**What is absent, and why** (:data:`SHARDED_REASON`, in ``meta.json``'s
``absent``, with a warning each when a preset or ``quantities`` asked for it).
Every per-sample quantity (alpha, the histograms, ``mean_gsnr``, the gradient
tests, the noise scale, ...) and every curvature quantity. Given neither a preset
nor quantities, the tracker takes ``full`` and keeps its shardable part, all of it
at every step (a few norms of the rank's shards), the rest noted in ``meta.json``
and one line of the ``cockpit`` logger. What full FSDP support would need:

- *The per-sample engines on FSDP's unsharded parameters.* In FSDP's forward and
  backward pass each layer's weight is all-gathered whole, and a rank holds the
  inputs and output gradients of its own samples, so it can form its samples'
  per-sample gradients on *all* rows (``g_n = delta_n x_n^T`` for a Linear layer), as
  a DDP rank does: the engines' hooks would have to read the unsharded parameters
  FSDP swaps in, before FSDP frees them again. Then ``||g_n||^2``, its moments and
  histogram counts are local and reduce as DDP's do (a few numbers per layer).
- *What would have to be gathered.* ``g_n . g`` (the gradient tests, the noise
  scale, alpha's slopes along the step) needs ``g`` on every row, of which a rank
  holds one shard: one all-gather of ``.grad`` (D numbers) per step, or the other
  ranks' per-sample factors of their samples (``N_s (in + out)`` numbers per
  Linear layer). Element-wise sums over samples (``sum_sq`` for ``mean_gsnr``,
  curvature diagonals for TIC) are formed on each rank over all rows and
  reduce-scattered to the shards: D numbers, as large as FSDP's own gradient
  reduce-scatter. Kronecker factors are per-layer sums over samples (all-reduced,
  ``in^2 + out^2`` numbers per layer).
- *Curvature-vector products and eigensolves* (``hess_max_ev``, the GGN's top
  eigenvalues) need products with the whole batch's Hessian or GGN: a second
  backward pass through the sharded model per product (FSDP all-gathers the
  parameters again) and eigenvectors sharded like the parameters.

**FSDP1** (``FullyShardedDataParallel``) is refused, naming ``fully_shard``: on
a CPU-only torch 2.14.1 it cannot be built at all ("FSDP needs a non-CPU
accelerator device"), so it could not be tested here, and with
``use_orig_params=True`` a rank holds a flat 1-D slice of each original parameter
(possibly empty) whose offsets are FSDP1's private bookkeeping. Its successor
``fully_shard`` keeps each parameter's name, shape and a DTensor shard.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.autograd import Variable

from cockpit._loss_capture import LossCapture
from cockpit.exceptions import ConfigurationError

if TYPE_CHECKING:
    from cockpit._distributed import Ranks

__all__ = [
    "SHARDED_REASON",
    "ShardedGradients",
    "Sharding",
    "fsdp_kind",
    "is_shard",
    "local",
    "shard_norm_rows",
]

#: Why a quantity is absent when the parameters are sharded.
SHARDED_REASON = (
    "the parameters are sharded across ranks (FSDP), and it needs per-sample "
    "gradients or curvature of whole parameters, which no engine here computes from "
    "shards (cockpit/_sharded.py says what that would need)"
)

_FSDP1 = (
    "Cockpit got a FullyShardedDataParallel (FSDP1) model. Its ranks hold flat "
    "slices of the parameters, which the tracker does not read. Shard the model with "
    "torch.distributed.fsdp.fully_shard (FSDP2) instead: with it the reduction-only "
    "quantities (loss, grad_norm, param_norm, distance, update_size, input_scale) "
    "are tracked, the rest are absent with the reason."
)


def fsdp_kind(model: nn.Module) -> str | None:
    """``"fully_shard"`` (FSDP2, on the model or a submodule), ``"FSDP1"`` or ``None``.

    Reads ``torch.distributed.fsdp`` only if the user imported it: importing it
    here would cost every run a second (it imports DTensor's operators).
    """
    if type(model).__name__ == "FullyShardedDataParallel" or hasattr(
        model, "_fsdp_wrapped_module"
    ):
        return "FSDP1"
    fsdp = sys.modules.get("torch.distributed.fsdp")
    if fsdp is None or not hasattr(fsdp, "FSDPModule"):
        return None
    sharded = any(isinstance(m, fsdp.FSDPModule) for m in model.modules())
    return "fully_shard" if sharded else None


def is_shard(tensor: Tensor) -> bool:
    """``tensor`` is a DTensor (of which this rank holds a part), as in FSDP2."""
    module = sys.modules.get("torch.distributed.tensor")
    return module is not None and isinstance(tensor, module.DTensor)


def local(tensor: Tensor) -> Tensor:
    """This rank's part of ``tensor``, detached: a DTensor's local shard (a view)."""
    tensor = tensor.detach()
    return tensor.to_local() if is_shard(tensor) else tensor


@dataclass(frozen=True)
class Sharding:
    """How ``fully_shard`` split the model's parameters over the ranks.

    Attributes:
        group: The process group the shards live on (the 1-D device mesh's).
        divide_factor: F, what FSDP divides the summed gradient by.
        placements: Parameter name -> its DTensor placement, e.g. ``"Shard(dim=0)"``.

    """

    group: dist.ProcessGroup
    divide_factor: float
    placements: dict[str, str]

    @classmethod
    def of(cls, model: nn.Module, process_group: Any) -> Sharding:
        """Read and check a ``fully_shard`` model's sharding.

        Raises:
            ConfigurationError: For FSDP1, a trainable parameter that is not
                sharded, a 2-D mesh (HSDP), a ``process_group`` other than the
                mesh's, or divide factors that differ between FSDP's groups.

        """
        if fsdp_kind(model) == "FSDP1":
            raise ConfigurationError(_FSDP1)
        params = {n: p for n, p in model.named_parameters() if p.requires_grad}
        plain = [n for n, p in params.items() if not is_shard(p)]
        if plain:
            raise ConfigurationError(
                f"Parameters {plain} of the fully_shard model are not sharded, so "
                "their .grad is not reduced over the ranks. Apply fully_shard to the "
                "root module too (fully_shard(model) after its submodules)."
            )
        meshes = [p.device_mesh for p in params.values()]
        groups = {id(m.get_group()): m.get_group() for m in meshes if m.ndim == 1}
        if len(groups) != 1 or any(m.ndim != 1 for m in meshes):
            raise ConfigurationError(
                "Cockpit tracks fully_shard models sharded over one process group on "
                "1-D device meshes (plain FSDP), got meshes of dimensions "
                f"{sorted({m.ndim for m in meshes})} over {len(groups)} group(s). "
                "HSDP (a 2-D mesh) replicates the shards, which the norms would "
                "count twice; shard every module over the same ranks."
            )
        group = next(iter(groups.values()))
        if process_group is not None and process_group is not group:
            raise ConfigurationError(
                "process_group must be the fully_shard model's own group (its device "
                "mesh's), whose ranks hold the shards; got another group. Leave "
                "process_group out."
            )
        return cls(
            group=group,
            divide_factor=_divide_factor(model, dist.get_world_size(group)),
            placements={n: repr(p.placements[0]) for n, p in params.items()},
        )

    def as_meta(self, ranks: Ranks, params: Mapping[str, Tensor]) -> dict[str, Any]:
        """``meta.json``'s ``sharding``: placements and every rank's shard sizes.

        The sizes take one ``all_gather`` of ``[L]`` integers, when the run starts.
        """
        sizes = [local(p).numel() for p in params.values()]
        device = next(iter(params.values())).device
        by_rank = ranks.gather_host(sizes, device)
        return {
            "api": "fully_shard",
            "gradient_divide_factor": self.divide_factor,
            "placements": self.placements,
            "elements_per_rank": {
                name: [sizes[i] for sizes in by_rank] for i, name in enumerate(params)
            },
        }


def _fsdp_groups(model: nn.Module) -> Iterator[Any]:
    """FSDP's parameter groups in ``model`` (one per ``fully_shard`` call with any)."""
    from torch.distributed.fsdp import FSDPModule

    for module in model.modules():
        if isinstance(module, FSDPModule):
            group = getattr(module._get_fsdp_state(), "_fsdp_param_group", None)
            if group is not None:
                yield group


def _divide_factor(model: nn.Module, world: int) -> float:
    """F: ``set_gradient_divide_factor``'s value, else the mesh's size.

    Read from FSDP's parameter groups (a private attribute; a torch without it
    counts as the default, FSDP's average over the ranks).
    """
    factors = {getattr(g, "gradient_divide_factor", None) for g in _fsdp_groups(model)}
    factors = {float(world) if f is None else float(f) for f in factors}
    if len(factors) > 1:
        raise ConfigurationError(
            f"The fully_shard groups divide their gradients by different factors "
            f"{sorted(factors)}, so .grad is not one mean gradient. Set one factor "
            "for the whole model (model.set_gradient_divide_factor(F) on the root)."
        )
    return factors.pop() if factors else float(world)


class ShardedGradients:
    """This rank's shards of ``.grad`` once FSDP has reduce-scattered them.

    Takes :class:`cockpit._block_grads.BlockGradients`' place in a block of a
    sharded model: gradients never reach the sharded parameters through autograd
    (FSDP computes them on unsharded copies and reduce-scatters them into ``.grad``),
    so ``.grad`` is read at the end of each backward pass, in an autograd callback
    queued behind FSDP's own final callback (which finishes the reduce-scatter), so
    that what user code does to ``.grad`` after ``backward()`` returns inside the
    block (clipping) does not reach the statistics. The shards are the raw
    reduced gradient; :class:`cockpit._pieces._AveragedGrads` divides them by
    ``k`` once the step's sample counts are known.

    Args:
        params: Parameter name -> sharded parameter.
        losses: The block's loss capture: it calls :meth:`at_loss` as each backward
            pass reaches the loss output, with the pass's loss scale ``c``.

    Attributes:
        loss_scales: ``c`` of each backward pass, in order.

    """

    def __init__(self, params: dict[str, nn.Parameter], losses: LossCapture):
        self.params = params
        self.losses = losses
        self.loss_scales: list[Tensor] = []
        self._kept: dict[str, Tensor] = {}

    def __enter__(self) -> ShardedGradients:
        return self

    def __exit__(self, *exc: object) -> None:
        """Nothing to remove: the callbacks end with their backward pass."""

    def at_loss(self) -> None:
        """A backward pass reached the loss output: keep ``c``, read ``.grad`` last."""
        assert self.losses.output_grad is not None
        self.loss_scales.append(self.losses.output_grad)
        Variable._execution_engine.queue_callback(self._behind_fsdp)

    def _behind_fsdp(self) -> None:
        # Runs among the final callbacks FSDP queued while the pass ran; queued
        # now, the read runs after all of them.
        Variable._execution_engine.queue_callback(self._read)

    def _read(self) -> None:
        shards = [local(p.grad) for p in self.params.values() if p.grad is not None]
        names = [n for n, p in self.params.items() if p.grad is not None]
        if not shards:  # a micro-batch FSDP did not reduce-scatter (no sync)
            return
        copies = torch._foreach_mul([s.reshape(-1) for s in shards], 1.0)
        self._kept = dict(zip(names, copies, strict=True))

    def gradients(self) -> dict[str, Tensor]:
        """Parameter name -> flat shard of ``.grad`` ``[D_l^(r)]``; zeros if none."""
        return {
            name: self._kept[name]
            if name in self._kept
            else local(p).new_zeros(local(p).numel())
            for name, p in self.params.items()
        }


def shard_norm_rows(
    all_reduce: Callable[[list[Tensor]], list[Tensor]],
    vectors: Mapping[str, list[Tensor]],
) -> dict[str, Tensor]:
    """Norms of per-layer vectors held in shards: one SUM over the ranks for all.

    ``||v_l|| = sqrt(sum_r ||v_l^(r)||^2)`` per layer and ``||v|| = sqrt(sum_l
    ||v_l||^2)``, computed from each rank's shards ``v_l^(r)`` (any shape; empty for
    a rank holding none of ``v_l``).

    Args:
        all_reduce: Sums a list of tensors over the ranks (one collective per dtype).
        vectors: Key -> this rank's shards of the L layers' vectors, in order.

    Returns:
        Key -> ``[L + 1]`` float64 norms, the layers' then the network's.

    """
    squares = [
        torch.stack(torch._foreach_norm(shards)).double().square()
        for shards in vectors.values()
    ]
    (summed,) = all_reduce([torch.cat(squares)])
    rows = {}
    for key, part in zip(vectors, summed.split([len(s) for s in squares]), strict=True):
        rows[key] = torch.cat([part, part.sum().reshape(1)]).sqrt()
    return rows
