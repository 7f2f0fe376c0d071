"""The processes that share one optimizer step, and the collectives between them.

Under ``torch.distributed`` (DistributedDataParallel, launched by ``torchrun``) every
rank fills the states of its shard; :class:`Ranks` reduces them with the collectives
of the given process group (default: the world). Each collective is one flat tensor
per dtype, whatever the number of states or parameters. Per tracked step a rank sends:

==============  ===============================================================
``all_gather``  header: host integers, int64 ``[4]``: its sample count ``n_r``,
                its pieces' common size (``-1`` if they differ), whether its
                last piece caught DDP's average (:mod:`cockpit._ddp_average`),
                whether its pieces ran in full precision (no autocast, float32
                or float64: :func:`cockpit._ddp_average.full_precision`).
                On a group with a CPU backend (gloo, or torch's default
                ``cpu:gloo,cuda:nccl``) a CPU tensor that never touches the device
``all_reduce``  SUM of the summed states a due quantity reads, ``D`` numbers
                each (the model's size, in its dtype): ``grads`` (``grad_norm``)
                and ``sample_grads`` (every quantity on per-sample gradients)
                unless DDP's average stands in for them; ``sum_sq``
                (``mean_gsnr``, ``early_stopping``, ``tic_diag``: filled and sent
                only at a step where one of them is due); curvature diagonals
                (``hess_trace``, ``tic_diag``, ``tic_trace``); ``input_moments``
                ``[3]``. A state no due quantity reads is neither filled nor sent
``all_reduce``  MAX of the maxima and the negated minima (histogram ranges), a
                few scalars per parameter; with DDP's average, also the largest
                and the negated smallest loss scale ``c`` (2 scalars)
``all_gather``  the moments ``(n, mean, M2)`` of its per-sample values (losses,
                ``sq_norms``, ``dots``, projections: per parameter and for the
                network), float64 ``[K, 3]``, merged by Chan et al.'s formula
``all_reduce``  SUM of the histogram counts on the agreed edges (``[bins]`` per
                histogram, with the sample sizes as int64), if one is due
``all_gather``  after ``optimizer.step()``: the moments of the slopes along the
                step (alpha), float64 ``[L + 1, 3]``, if due
==============  ===============================================================

So with equal shards under ``economy`` (every quantity due) a rank sends one
``D``-sized SUM, ``sum_sq``, as large as DDP's own gradient all-reduce, plus a few
numbers per parameter tensor and the histogram's counts
(``tests/distributed/test_collectives.py``); at a step where no ``sum_sq``
quantity is due, no ``D``-sized tensor at all. Why the D-sized states are sent
when they are:

- ``grads``: DDP's synchronized backward pass already leaves ``(1/W) sum_r G_r`` in
  ``.grad``. When every piece of every rank has the same size (the header says so)
  that is the whole step's mean gradient, and it is taken (SAME, nothing sent).
  With unequal shards DDP's average weights each rank by ``1/W``, not by
  ``n_r / N``, so the exact mean costs one SUM of ``D`` numbers; so does a step whose
  last backward pass DDP did not synchronize (``no_sync`` throughout), a DDP model
  with a communication hook or its own mixed precision, or a ``process_group``
  other than the DDP model's.
- ``sample_grads``: the per-sample engine's mean, which the formulas pair with the
  same engine's ``||g_n||^2`` moments (variances are differences of the two, which
  amplify any rounding of ``g`` by ``||g||^2 / Var``). Whenever DDP's average
  stands in for ``grads`` and every piece of every rank ran without autocast in
  float32 or float64, it stands in here too: it differs from the engine's mean by
  the dtype's rounding, as the engine's own mean differs from the exact one
  (float64: the values equal one process's to ``1e-9`` relative,
  ``tests/distributed/test_ddp_average.py``; float32, measured by
  ``benchmarks/ddp_engine_mean.py`` on the digits CNN and 3c3d: up to ``1e-6``
  relative from the summed mean, except ``gradient_noise_scale`` of a layer whose
  ``B_simple`` is 1,000 times the batch, which amplifies the rounding to
  ``2e-4``). Under autocast the two
  differ by ``1e-3`` relative and the engine's mean is summed. No formulation
  is exact without the ``D`` entries: ``||g||^2`` of the engine's mean has cross
  terms ``g_r . g_s`` between ranks. Dotting each rank's per-sample gradients
  with DDP's mean ``g'`` gives ``g . g'``, off by ``g . (g' - g)`` against
  ``||g'||^2``'s ``2 g . (g' - g)``: the same rounding within a factor 2, so the
  simpler substitution is taken.
- ``sum_sq`` and a diagonal read by ``tic_diag``: element-wise ratios
  (``g_j^2 / Var_j``, ``M_j / h_j``) need every element of the whole step.
  Quantities that read only a diagonal's trace (``hess_trace``, ``tic_trace``)
  could send per-layer traces instead when ``tic_diag`` is not due at the step;
  the presets schedule the three together, so this is not done.

Under FSDP (``fully_shard``, :mod:`cockpit._sharded`) the ranks hold the
parameters in shards and only the reduction-only quantities run (``loss``,
``grad_norm``, ``param_norm``, ``distance``, ``update_size``, ``input_scale``).
Per tracked step a rank then sends, every step the same (``[L]``: one number per
parameter tensor):

==============  ===============================================================
``all_gather``  the header above, int64 ``[4]``
``all_reduce``  MAX of the input's largest ``|x|`` (``input_scale``) and the range
                of ``k = c w N / (F n)`` over its backward passes (2 scalars,
                ``grad_norm``), float64
``all_gather``  the per-sample losses' moments, float64 ``[1, 3]``
``all_reduce``  SUM of the input's ``(count, sum, sum of squares)``, float64 ``[3]``
``all_reduce``  SUM of the squared norms of its shards, float64 ``[3 L]``: of the
                mean gradient, the parameters and ``params - initial``, those due
``all_reduce``  after ``optimizer.step()``: SUM of the step's squared shard norms,
                float64 ``[L]`` (``update_size``)
==============  ===============================================================

No parameter, gradient or per-sample vector is gathered: with the default
quantities that is ``8 (13 + 4 L)`` bytes per rank and step, 232 for the 4
parameter tensors of ``tests/distributed/test_fsdp.py``. Once, when the run
starts, an ``all_gather`` of ``[L]`` integers (each rank's shard sizes) goes into
``meta.json``'s ``sharding``.

Nothing waits for the device on the training thread after a collective: the
header's integers come back as host integers (the sample count N, the shares
``n_r / N`` and the choice between DDP's average and the SUM are decided on the
host, identically on every rank), the loss scales' check stays on the device, and
the summed histogram sample sizes stay 0-d tensors that the writer converts. A
group without a CPU backend (``init_process_group("nccl")``) sends the header on
the device and reads it back: one host synchronization per tracked step.

None of these grows with the batch: per-sample values are summarized on the rank
(:mod:`cockpit.stats.moments`) before anything is sent, and the network's per-sample
value (``g_n . g`` summed over layers) is formed per sample before summarizing.
Histograms take two passes: the range is reduced first (the MAX collective), every
rank then counts its own samples on the edges of that common range, and the counts
are summed; the samples themselves never leave the rank. Every rank then finalizes
the same states. Apart from the D-sized states above the states are small, so this
costs a few formulas on ``[L + 1]`` values, and it keeps the quantities that carry
state from step to step identical on every rank without another collective: alpha's
last step decides which projections the next step gathers, and ranks that disagreed
on it would stop matching their collectives. Rank 0 alone writes. Collectives run
under the process group's timeout (``init_process_group(timeout=...)``), as DDP's
own do: a rank that fails mid-step makes the others raise there, not hang forever.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from cockpit.exceptions import ConfigurationError

if TYPE_CHECKING:
    from cockpit._sharded import Sharding

__all__ = ["Ranks", "SilentWriter", "leaves", "rebuild"]


class Ranks:
    """The ranks of a process group that split each tracked step between them.

    Args:
        group: The process group; ``None``: the world.
        ddp: The DDP model whose average over this group's ranks lands in
            ``.grad`` (:mod:`cockpit._ddp_average`), or ``None``.
        sharding: How ``fully_shard`` split the parameters over these ranks
            (:mod:`cockpit._sharded`), or ``None`` if every rank holds them whole.

    Attributes:
        rank: This process's rank in the group.
        size: W, the number of ranks.
        ddp: See above.
        sharding: See above.
        bytes_sent: Bytes this rank has handed to collectives so far (payload only).

    """

    def __init__(
        self,
        group: dist.ProcessGroup | None = None,
        ddp: nn.parallel.DistributedDataParallel | None = None,
        sharding: Sharding | None = None,
    ):
        if not dist.is_available() or not dist.is_initialized():
            raise ConfigurationError(
                "Cockpit got a DistributedDataParallel or fully_shard model or a "
                "process_group, but "
                "torch.distributed is not initialized. Call "
                "torch.distributed.init_process_group(...) (torchrun sets its "
                "environment) before creating the Cockpit."
            )
        self.group = group if group is not None else dist.group.WORLD
        self.rank = dist.get_rank(self.group)
        self.size = dist.get_world_size(self.group)
        self.ddp = ddp
        self.sharding = sharding
        self.bytes_sent = 0
        # A group that carries CPU tensors (gloo, or torch's default
        # "cpu:gloo,cuda:nccl") exchanges host integers without touching the device.
        # get_backend_config names each device's backend; older torch: get_backend.
        describe = getattr(dist, "get_backend_config", dist.get_backend)
        self._host = any(k in describe(self.group) for k in ("cpu", "gloo"))

    @property
    def writes(self) -> bool:
        """Rank 0 alone finalizes the quantities and writes the log."""
        return self.rank == 0

    def _sent(self, tensor: Tensor) -> None:
        self.bytes_sent += tensor.numel() * tensor.element_size()

    def all_reduce(self, tensors: list[Tensor], op: dist.ReduceOp) -> list[Tensor]:
        """``op`` over ranks, element-wise, of each tensor; one collective per dtype."""
        out = list(tensors)
        for dtype in dict.fromkeys(t.dtype for t in tensors):
            index = [i for i, t in enumerate(tensors) if t.dtype == dtype]
            flat = torch.cat([tensors[i].reshape(-1) for i in index])
            self._sent(flat)
            dist.all_reduce(flat, op=op, group=self.group)
            sizes = [tensors[i].numel() for i in index]
            for i, part in zip(index, flat.split(sizes), strict=True):
                out[i] = part.view_as(tensors[i])
        return out

    def gather_host(self, values: list[int], device: torch.device) -> list[list[int]]:
        """Every rank's host integers ``values`` (as many on every rank), by rank.

        On a group with a CPU backend the integers never reach the device. A group
        without one (``backend="nccl"`` alone) sends them on ``device`` and brings
        the ``[W, K]`` result back: one host synchronization per tracked step, which
        ``init_process_group("cpu:gloo,cuda:nccl")`` (torch's default) avoids.
        """
        row = torch.tensor(values, dtype=torch.int64)
        return self.all_gather(row if self._host else row.to(device)).tolist()

    def all_gather(self, row: Tensor) -> Tensor:
        """``[W, *row.shape]``: every rank's ``row`` (same shape on every rank)."""
        rows = [torch.empty_like(row) for _ in range(self.size)]
        self._sent(row)
        dist.all_gather(rows, row, group=self.group)
        return torch.stack(rows)


def leaves(value: Any) -> Iterator[Any]:
    """The non-mapping values of a nested mapping, depth first, in key order."""
    if isinstance(value, Mapping):
        for item in value.values():
            yield from leaves(item)
    else:
        yield value


def rebuild(value: Any, new: Iterator[Any]) -> Any:
    """``value``'s nesting with its leaves replaced, in :func:`leaves`'s order."""
    if isinstance(value, Mapping):
        return {key: rebuild(item, new) for key, item in value.items()}
    return next(new)


class SilentWriter:
    """The log writer of a rank other than 0: it accepts everything, writes nothing.

    Args:
        run_dir: Where rank 0 writes the run (never created here).

    """

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir

    def submit(self, record: Any) -> None:
        """Drop the record (rank 0 writes the step)."""

    def update_meta(self, **fields: Any) -> None:
        """Drop the fields."""

    def drain_notices(self) -> list[str]:
        """No notices: nothing is written."""
        return []

    @property
    def cpu_seconds(self) -> float:
        """No thread, no time."""
        return 0.0

    def close(self, status: str = "finished") -> None:
        """Nothing to close."""

    def terminate(self, status: str = "terminated", timeout: float = 2.0) -> None:
        """Nothing to terminate."""
