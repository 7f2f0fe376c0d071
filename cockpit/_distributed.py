"""The processes that share one optimizer step, and the collectives between them.

Under ``torch.distributed`` (DistributedDataParallel, launched by ``torchrun``) every
rank fills the states of its shard; :class:`Ranks` reduces them with the collectives
of the given process group (default: the world). Each collective is one flat tensor
per dtype, whatever the number of states or parameters:

==============  ===============================================================
``all_gather``  header: per rank its sample count and the lengths (and histogram
                weights) of its per-sample vectors, float64, ``[2 + ...]``
``all_reduce``  SUM of the summed states (gradients, ``sum_sq``, diagonals)
``all_reduce``  MAX of the maxima and the negated minima (histogram range)
``all_gather``  the per-sample vectors (losses, ``sq_norms``, ``dots``,
                projections, histogram samples), padded to the longest rank's
==============  ===============================================================

The last one is the only transfer that grows with the batch: per-sample vectors
cannot be summed away without changing each quantity's ``finalize``. Every rank
receives them and finalizes the same states: quantities carry state from step to
step (alpha's last step decides the next step's projections), which must agree on
every rank, or the ranks' collectives would stop matching. Rank 0 alone writes. Collectives run
under the process group's timeout (``init_process_group(timeout=...)``), as DDP's own
do: a rank that fails mid-step makes the others raise there, not hang forever.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from cockpit.exceptions import ConfigurationError

__all__ = ["Ranks", "SilentWriter", "leaves", "rebuild"]


class Ranks:
    """The ranks of a process group that split each tracked step between them.

    Args:
        group: The process group; ``None``: the world.

    Attributes:
        rank: This process's rank in the group.
        size: W, the number of ranks.
        bytes_sent: Bytes this rank has handed to collectives so far (payload only).

    """

    def __init__(self, group: dist.ProcessGroup | None = None):
        if not dist.is_available() or not dist.is_initialized():
            raise ConfigurationError(
                "Cockpit got a DistributedDataParallel model or a process_group, but "
                "torch.distributed is not initialized. Call "
                "torch.distributed.init_process_group(...) (torchrun sets its "
                "environment) before creating the Cockpit."
            )
        self.group = group if group is not None else dist.group.WORLD
        self.rank = dist.get_rank(self.group)
        self.size = dist.get_world_size(self.group)
        self.bytes_sent = 0

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

    def all_gather(self, row: Tensor) -> Tensor:
        """``[W, *row.shape]``: every rank's ``row`` (same shape on every rank)."""
        rows = [torch.empty_like(row) for _ in range(self.size)]
        self._sent(row)
        dist.all_gather(rows, row, group=self.group)
        return torch.stack(rows)

    def gather(self, parts: list[Tensor], lengths: Tensor) -> list[list[Tensor]]:
        """Every rank's 1-D ``parts`` on every rank, in one padded ``all_gather``.

        Args:
            parts: This rank's vectors, as many on every rank, one dtype.
            lengths: ``[W, len(parts)]`` every rank's part lengths (from the header).

        Returns:
            Per rank, its parts.

        """
        sizes = lengths.long().tolist()
        longest = max(sum(row) for row in sizes)
        dtype = parts[0].dtype if parts else torch.float64
        device = parts[0].device if parts else torch.device("cpu")
        flat = torch.zeros(longest, dtype=dtype, device=device)
        local = torch.cat(parts) if parts else flat[:0]
        flat[: local.numel()] = local
        buffers = self.all_gather(flat)
        return [
            list(buffer[: sum(row)].split(row))
            for buffer, row in zip(buffers, sizes, strict=True)
        ]


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

    def close(self, status: str = "finished") -> None:
        """Nothing to close."""

    def terminate(self, status: str = "terminated", timeout: float = 2.0) -> None:
        """Nothing to terminate."""
