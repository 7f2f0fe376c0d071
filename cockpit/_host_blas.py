"""One BLAS thread for the linear algebra the log writer's thread does on the host.

numpy's BLAS (OpenBLAS) starts as many threads as there are cores. A decomposition in
the writer's thread (``kfac_block``'s factor eigenvalues) then runs on every core at
once, beside the training thread, and where cores are few or busy OpenBLAS's threads
spin waiting for each other: on this project's 2-core machine under load (average
18-21) the eigenvalues of a 3c3d record's KFAC factors took 6,692 ms of process CPU
with the default threads against 180 ms with one (``benchmarks/kfac_eigen.py``,
``benchmarks/results/writerbudget/README.md``). The writer is a background thread;
it should take one core at most, so it holds this limit around the host finishing
(``Record.materialize``) of records whose finishing decomposes a matrix
(``OnHost(..., decomposes=True)``): ``kfac_block``'s eigenvalues, the ViViT
quantities' ``eigh``. Small host arithmetic (alpha's fit of three points) runs on
one BLAS thread anyway and does without the limit's cost.

Only the BLAS libraries threadpoolctl finds as shared objects are limited (numpy's
and scipy's OpenBLAS here); PyTorch's CPU kernels, which run on its own OpenMP pool
and link their BLAS statically, keep their threads.

The limit is process-wide while it holds (BLAS has no per-thread setting), so a numpy
product on another thread in those milliseconds runs on one thread too: slower, never
different in its result beyond rounding.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator

from threadpoolctl import ThreadpoolController


@functools.cache
def _controller() -> ThreadpoolController:
    """The BLAS libraries loaded into this process (found once, about 1 ms)."""
    return ThreadpoolController()


@contextlib.contextmanager
def one_blas_thread() -> Iterator[None]:
    """Run the block with every loaded BLAS on one thread (about 20 us to enter)."""
    with _controller().limit(limits=1, user_api="blas"):
        yield


__all__ = ["one_blas_thread"]
