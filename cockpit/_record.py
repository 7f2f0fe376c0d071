"""A log record whose values are still tensors on the model's device.

The training thread builds a :class:`TensorRecord` and hands it to the writer; the
writer's thread calls :meth:`TensorRecord.materialize`, which copies all tensors of the
record to the host in one transfer per device and runs the small host-side finishing
steps (:class:`OnHost`). The training thread never waits for the device.

Statistics of float32 (or narrower) tensors are written as the shortest decimal of
their float32 value, at most 9 significant digits instead of the 17 of a float64
(:func:`~cockpit.logs._packing.float32_shortest`): the same float32 reads back, and
digits beyond a float32's are noise. A host-side result of such tensors only (an
:class:`OnHost`, computed in float64) is rounded so too where it lies in float32's
normal range: its inputs carry a float32's precision, so it has no more. Statistics of
float64 tensors keep every digit, unless the record is ``single``: the tracked model
computes in float32 or narrower, so the statistics the tracker accumulates in float64
from it (moments, sums of squares) carry a float32's precision too, and their values
in float32's normal range are written the same way (about a third fewer bytes per
number; a float64 model's records keep 17 digits).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from cockpit.logs._packing import float32_shortest

#: Floating dtypes whose statistics are written with float32's digits.
NARROW_FLOATS = frozenset({torch.float32, torch.float16, torch.bfloat16})
_FLOAT32 = np.finfo(np.float32)


@dataclass
class Flagged:
    """A host-side result that is logged as non-finite, with the reason why.

    Attributes:
        reason: Why there is no finite value (stored under the record's ``notes``).
        notice: A message to raise as a warning in the training process, if any.

    """

    reason: str
    notice: str | None = None


@dataclass
class Noted:
    """A finite host-side result that also raises a warning (``notice``)."""

    value: Any
    notice: str


@dataclass
class Late:
    """A value that belongs to an earlier step (alpha is known one step later).

    Attributes:
        step: The step it is logged under.
        value: The value (tensors, numbers, :class:`OnHost`).

    """

    step: int
    value: Any


@dataclass
class OnHost:
    """Finish a value on the host: ``fn(*arrays)`` with the tensors as numpy arrays.

    ``fn`` returns a JSON-able value, a :class:`Flagged` or a :class:`Noted`, or a
    dict holding them.
    """

    fn: Callable[..., Any]
    tensors: tuple[Tensor, ...]


def _as_single(tree: Any) -> Any:
    """The floats of ``tree`` in float32's normal range as :func:`float32_shortest`."""
    if isinstance(tree, float) and _FLOAT32.tiny <= abs(tree) <= _FLOAT32.max:
        return float(float32_shortest(tree))
    if isinstance(tree, dict):
        return {key: _as_single(value) for key, value in tree.items()}
    if isinstance(tree, list):
        return [_as_single(value) for value in tree]
    return tree


def _leaves(tree: Any, logged: list[Tensor], inputs: list[Tensor]) -> None:
    """Append the tensors logged as they are, and the inputs of :class:`OnHost`."""
    if isinstance(tree, Tensor):
        logged.append(tree)
    elif isinstance(tree, OnHost):
        inputs.extend(tree.tensors)
    elif isinstance(tree, dict):
        for value in tree.values():
            _leaves(value, logged, inputs)
    elif isinstance(tree, (list, tuple)):
        for value in tree:
            _leaves(value, logged, inputs)


@dataclass
class _Host:
    """A record's tensors on the host, converted once per device and dtype.

    Attributes:
        arrays: ``id(tensor)`` -> numpy array (float64 for floating tensors), what
            an :class:`OnHost` function receives.
        values: ``id(tensor)`` -> the logged Python value of a tensor logged as it
            is (a number, or nested lists), float32 statistics already as
            :func:`float32_shortest`.

    """

    arrays: dict[int, np.ndarray] = field(default_factory=dict)
    values: dict[int, Any] = field(default_factory=dict)


def _shortest(arrays: np.ndarray, dtype: torch.dtype, single: bool) -> np.ndarray:
    """``arrays`` as logged: float32's digits for narrow dtypes, or when ``single``."""
    if dtype in NARROW_FLOATS:
        return float32_shortest(arrays)
    if not (single and dtype == torch.float64):
        return arrays
    size = np.abs(arrays)
    normal = (size >= _FLOAT32.tiny) & (size <= _FLOAT32.max)
    return np.where(normal, float32_shortest(np.where(normal, arrays, 0)), arrays)


def _to_host(logged: list[Tensor], inputs: list[Tensor], single: bool) -> _Host:
    """One device-to-host copy and one conversion per device and dtype.

    A record holds hundreds of small tensors (a value per layer and quantity): one
    ``torch.stack`` gathers the scalars and one ``torch.cat`` everything (under
    ``no_grad``, no ``detach`` per tensor), one :func:`float32_shortest` and one
    ``tolist`` convert what is logged as it is, so the work per tensor is a slice of
    a list. The inputs of :class:`OnHost` functions that are not scalars, which may
    be large (Kronecker factors), are only copied. ``single``: see
    :class:`TensorRecord`.
    """
    seen: set[int] = set()
    groups: dict[tuple[torch.device, torch.dtype], tuple[list, list, list]] = {}
    for kind, tensors in ((0, logged), (2, inputs)):
        for tensor in tensors:
            if id(tensor) not in seen:
                seen.add(id(tensor))
                split = groups.setdefault((tensor.device, tensor.dtype), ([], [], []))
                split[0 if tensor.dim() == 0 else kind or 1].append(tensor)
    wanted = {id(t) for t in inputs}
    host = _Host()
    for (_, dtype), (scalars, others, extra) in groups.items():
        with torch.no_grad():
            parts = [torch.stack(scalars)] if scalars else []
            parts += [t.reshape(-1) for t in others + extra]
            flat = torch.cat(parts).cpu()  # a copy even of one part
        arrays = flat.double().numpy() if flat.is_floating_point() else flat.numpy()
        size = len(scalars) + sum(t.numel() for t in others)
        shown = _shortest(arrays[:size], dtype, single)
        numbers = shown[: len(scalars)].tolist()
        host.values.update(zip(map(id, scalars), numbers, strict=True))
        offset = 0
        for tensor in scalars + others + extra:
            end = offset + tensor.numel()
            if id(tensor) in wanted:
                host.arrays[id(tensor)] = arrays[offset:end].reshape(tensor.shape)
            if len(scalars) <= offset and end <= size:  # one of the others
                value = shown[offset:end].reshape(tensor.shape).tolist()
                host.values[id(tensor)] = value
            offset = end
    return host


@dataclass
class TensorRecord:
    """One log record: ``{"step", "time", "values"}`` with tensors inside ``values``.

    Attributes:
        step: The step the values belong to.
        time: Wall-clock time (unix seconds) of the step.
        values: Quantity name -> value tree of tensors, numbers and :class:`OnHost`.
        single: The tracked model computes in float32 or narrower: float64 values
            (and :class:`OnHost` results) are written with float32's digits too.

    """

    step: int
    time: float
    values: dict[str, Any]
    notes: dict[str, str] = field(default_factory=dict)
    single: bool = False

    def materialize(self) -> dict[str, Any]:
        """Copy to the host and finish: a plain, JSON-able record (writer thread)."""
        logged: list[Tensor] = []
        inputs: list[Tensor] = []
        _leaves(self.values, logged, inputs)
        host = _to_host(logged, inputs, self.single)
        notes = dict(self.notes)
        notices: list[str] = []

        def settle(result: Any, path: str) -> Any:
            if isinstance(result, Noted):
                notices.append(f"step {self.step}: {result.notice}")
                return result.value
            if isinstance(result, Flagged):
                notes[path] = result.reason
                if result.notice:
                    notices.append(f"step {self.step}: {result.notice}")
                return float("nan")
            if isinstance(result, dict):
                return {k: settle(v, f"{path}.{k}") for k, v in result.items()}
            return result

        def convert(tree: Any, path: str) -> Any:
            if isinstance(tree, Tensor):
                return host.values[id(tree)]
            if isinstance(tree, OnHost):
                arrays = (host.arrays[id(t)] for t in tree.tensors)
                result = settle(tree.fn(*arrays), path)
                narrow = all(t.dtype in NARROW_FLOATS for t in tree.tensors)
                if self.single or (narrow and tree.tensors):
                    return _as_single(result)
                return result
            if isinstance(tree, dict):
                return {k: convert(v, f"{path}.{k}") for k, v in tree.items()}
            if isinstance(tree, (list, tuple)):
                return [convert(v, f"{path}[{i}]") for i, v in enumerate(tree)]
            return tree

        values = {key: convert(value, key) for key, value in self.values.items()}
        record: dict[str, Any] = {
            "step": self.step,
            "time": self.time,
            "values": values,
        }
        if notes:
            record["notes"] = notes
        if notices:
            record["notices"] = notices
        return record
