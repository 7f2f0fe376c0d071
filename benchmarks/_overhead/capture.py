"""The arguments of a tracker function at a tracked economy step, for timing it alone.

Some benchmarks time one part of a tracked step many times in one process, on the
inputs it had in a real step, so that the noise of whole steps does not hide it.
:func:`last_call` runs three economy steps of a benchmark problem with the function
wrapped wherever it is looked up, and returns its last call's arguments.
"""

from __future__ import annotations

import tempfile
from typing import Any

import torch

from _overhead.configs import build_run
from _overhead.problems import make_problem

__all__ = ["last_call"]


def last_call(
    problem_name: str, name: str, owners: list[Any]
) -> tuple[tuple, dict[str, Any]]:
    """``(args, kwargs)`` of the last call of ``owner.name`` in three economy steps.

    Args:
        problem_name: A benchmark problem (``_overhead.problems``).
        name: The function's name.
        owners: The modules it is looked up in (the defining one and importers).

    """
    problem = make_problem(problem_name, torch.device("cpu"))
    seen: dict[str, Any] = {}
    original = getattr(owners[0], name)

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen["args"], seen["kwargs"] = args, kwargs
        return original(*args, **kwargs)

    for owner in owners:
        setattr(owner, name, spy)
    try:
        with tempfile.TemporaryDirectory() as logdir:
            run = build_run(problem, "economy", torch.device("cpu"), logdir)
            for _ in range(3):
                run.step(problem.batches)
            run.flush()
            assert run.ck is not None
            run.ck.close()
    finally:
        for owner in owners:
            setattr(owner, name, original)
    return seen["args"], seen["kwargs"]
