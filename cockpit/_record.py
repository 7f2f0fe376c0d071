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

import contextlib
import itertools
import operator
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from cockpit._host_blas import one_blas_thread
from cockpit._layer_rows import LayerRows
from cockpit.logs._packing import float32_shortest

#: Floating dtypes whose statistics are written with float32's digits.
NARROW_FLOATS = frozenset({torch.float32, torch.float16, torch.bfloat16})
_FLOAT32 = np.finfo(np.float32)
_TENSOR = frozenset({Tensor})
_DTYPE = operator.attrgetter("dtype")
#: A tensor's ``(device, dtype)``: the groups of one host copy each.
_KIND = operator.attrgetter("device", "dtype")


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
    dict holding them. ``decomposes``: ``fn`` runs a matrix decomposition (an
    ``eigh``), which the writer runs on one BLAS thread
    (:func:`~cockpit._host_blas.one_blas_thread`); small host arithmetic (alpha's
    fit of three points) skips that limit's cost.
    """

    fn: Callable[..., Any]
    tensors: tuple[Tensor, ...]
    decomposes: bool = False


#: Where a value goes in a record's copy: (dict or list, key or index).
_Slot = tuple[Any, Any]
#: Plain numbers: nothing in them to settle or copy.
_PLAIN = frozenset({float, int, bool})


def _note_single(container: Any, key: Any, places: list[_Slot]) -> None:
    """Note where ``container[key]`` holds floats in float32's normal range.

    The dicts and lists on the way are copied first, so that rounding the floats
    in place (:func:`_round_single`) leaves what an :class:`OnHost` function
    returned as it was.
    """
    value = container[key]
    if isinstance(value, float):
        if _FLOAT32.tiny <= abs(value) <= _FLOAT32.max:
            places.append((container, key))
    elif isinstance(value, dict):
        copy = container[key] = dict(value)
        if _PLAIN.issuperset(map(type, copy.values())):  # numbers: C passes, no call
            size = np.abs(np.fromiter(copy.values(), np.float64, len(copy)))
            normal = (size >= _FLOAT32.tiny) & (size <= _FLOAT32.max)
            floats = map(float.__instancecheck__, copy.values())
            kept = itertools.compress(copy, map(operator.and_, normal.tolist(), floats))
            places.extend(zip(itertools.repeat(copy), kept))
            return
        for inner in copy:
            _note_single(copy, inner, places)
    elif isinstance(value, list):
        copy = container[key] = list(value)
        for index in range(len(copy)):
            _note_single(copy, index, places)


def _round_single(places: list[_Slot]) -> None:
    """The floats at ``places`` as :func:`float32_shortest`, in one call for all."""
    if places:
        rounded = float32_shortest([c[k] for c, k in places]).tolist()
        for (container, key), number in zip(places, rounded, strict=True):
            container[key] = number


@dataclass
class _Group:
    """The tensors of one device and dtype, and where their values go.

    Attributes:
        scalars: The 0-d tensors logged as they are, one stack for all.
        scalar_slots: Where each scalar's number goes.
        others: The other tensors logged as they are.
        other_slots: Where each of them goes (as nested lists).
        inputs: The inputs of :class:`OnHost` functions (copied, as float64
            arrays for floating dtypes).

    """

    scalars: list[Tensor] = field(default_factory=list)
    scalar_slots: list[_Slot] = field(default_factory=list)
    others: list[Tensor] = field(default_factory=list)
    other_slots: list[_Slot] = field(default_factory=list)
    inputs: list[Tensor] = field(default_factory=list)


@dataclass
class _Found:
    """What :func:`_skeleton` found: tensors by device and dtype, and OnHost nodes.

    Attributes:
        groups: ``(device, dtype)`` -> :class:`_Group`, in the order first seen.
        on_host: ``(node, slot, path)`` of each :class:`OnHost`, in tree order.
        named: ``(slot, names)`` of each :class:`~cockpit._layer_rows.LayerRows`,
            whose list of rows becomes a dict by name once copied.

    """

    groups: dict[tuple[torch.device, torch.dtype], _Group] = field(default_factory=dict)
    on_host: list[tuple[OnHost, _Slot, str]] = field(default_factory=list)
    named: list[tuple[_Slot, list[str]]] = field(default_factory=list)

    def group(self, tensor: Tensor) -> _Group:
        """The group of ``tensor``'s device and dtype (new if it is the first)."""
        kind = _KIND(tensor)
        group = self.groups.get(kind)
        if group is None:
            group = self.groups[kind] = _Group()
        return group


def _skeleton(tree: dict | list | tuple, path: str, found: _Found) -> dict | list:
    """A copy of the containers of ``tree``, each tensor and OnHost noted in ``found``.

    One walk over the containers; their values are put into the copy later
    (:func:`_fill`), where the tensors and the :class:`OnHost` nodes stand now.
    ``path`` is the dotted path of ``tree`` (as in a record's ``notes``), ``""`` for
    the values themselves.
    """
    if isinstance(tree, dict):
        out: dict | list = dict(tree)
        if _scalars_alike(tree, out, found):
            return out
        items: Iterable[tuple[Any, Any]] = tree.items()
    else:
        out, items = list(tree), enumerate(tree)
    for key, value in items:
        if isinstance(value, Tensor):
            group = found.group(value)
            if value.dim() == 0:
                group.scalars.append(value)
                group.scalar_slots.append((out, key))
            else:
                group.others.append(value)
                group.other_slots.append((out, key))
        elif isinstance(value, LayerRows):  # one tensor, split by name once copied
            group = found.group(value.rows)
            group.others.append(value.rows)
            group.other_slots.append((out, key))
            found.named.append(((out, key), value.names))
        elif isinstance(value, (dict, list, tuple, OnHost)):
            inner = (
                f"{path}[{key}]"
                if isinstance(out, list)
                else (f"{path}.{key}" if path else str(key))
            )
            if isinstance(value, OnHost):
                found.on_host.append((value, (out, key), inner))
            else:
                out[key] = _skeleton(value, inner, found)
    return out


def _scalars_alike(tree: dict, out: dict, found: _Found) -> bool:
    """Note a dict of 0-d tensors of one device and dtype at once, if it is one.

    The per-layer dicts (a value per parameter) are most of a record: a few C-level
    passes over them instead of a turn of :func:`_skeleton`'s loop per tensor.
    """
    values = list(tree.values())
    if not (values and _TENSOR.issuperset(map(type, values))):
        return False
    kinds = set(map(_KIND, values))
    if len(kinds) != 1 or any(map(Tensor.dim, values)):
        return False
    group = found.group(values[0])
    group.scalars += values
    group.scalar_slots += zip(itertools.repeat(out), tree)
    return True


def _shortest(arrays: np.ndarray, dtype: torch.dtype, single: bool) -> np.ndarray:
    """``arrays`` as logged: float32's digits for narrow dtypes, or when ``single``."""
    if dtype in NARROW_FLOATS:
        return float32_shortest(arrays)
    if not (single and dtype == torch.float64):
        return arrays
    size = np.abs(arrays)
    normal = (size >= _FLOAT32.tiny) & (size <= _FLOAT32.max)
    return np.where(normal, float32_shortest(np.where(normal, arrays, 0)), arrays)


def _fill(found: _Found, single: bool) -> dict[int, np.ndarray]:
    """Copy to the host, put the logged values in place; the OnHost inputs' arrays.

    One device-to-host copy and one conversion per device and dtype: one
    ``torch.stack`` gathers the scalars and one ``torch.cat`` everything (under
    ``no_grad``, no ``detach`` per tensor), one :func:`float32_shortest` and one
    ``tolist`` convert what is logged as it is, so the work per tensor is one
    assignment into the record's copy. The inputs of :class:`OnHost` functions,
    which may be large (Kronecker factors), are only copied; returned by ``id``
    as float64 arrays for floating dtypes. ``single``: see :class:`TensorRecord`.
    """
    for node, _, _ in found.on_host:
        for tensor in node.tensors:
            found.group(tensor).inputs.append(tensor)
    arrays_by_id: dict[int, np.ndarray] = {}
    for (_, dtype), group in found.groups.items():
        scalars, others = group.scalars, group.others
        # 0-d inputs (of a per-layer OnHost) are stacked too: no reshape of each.
        scalar_inputs = [t for t in group.inputs if t.dim() == 0]
        array_inputs = [t for t in group.inputs if t.dim() != 0]
        with torch.no_grad():
            parts = [torch.stack(scalars)] if scalars else []
            parts += [t.reshape(-1) for t in others]
            parts += [torch.stack(scalar_inputs)] if scalar_inputs else []
            parts += [t.reshape(-1) for t in array_inputs]
            flat = torch.cat(parts).cpu()  # a copy even of one part
        arrays = flat.double().numpy() if flat.is_floating_point() else flat.numpy()
        size = len(scalars) + sum(t.numel() for t in others)
        shown = _shortest(arrays[:size], dtype, single)
        numbers = shown[: len(scalars)].tolist()
        for (container, key), number in zip(group.scalar_slots, numbers, strict=True):
            container[key] = number
        offset = len(scalars)
        for tensor, (container, key) in zip(others, group.other_slots, strict=True):
            end = offset + tensor.numel()
            container[key] = shown[offset:end].reshape(tensor.shape).tolist()
            offset = end
        for index, tensor in enumerate(scalar_inputs, start=offset):
            arrays_by_id[id(tensor)] = arrays[index, ...]  # a 0-d array
        offset += len(scalar_inputs)
        for tensor in array_inputs:
            end = offset + tensor.numel()
            arrays_by_id[id(tensor)] = arrays[offset:end].reshape(tensor.shape)
            offset = end
    return arrays_by_id


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
        found = _Found()
        values = _skeleton(self.values, "", found)
        arrays = _fill(found, self.single)
        for (container, key), names in found.named:
            container[key] = dict(zip(names, container[key], strict=True))
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
                if _PLAIN.issuperset(map(type, result.values())):
                    return result  # numbers alone (per-layer values): no call each
                return {k: settle(v, f"{path}.{k}") for k, v in result.items()}
            return result

        single: list[_Slot] = []  # where the results' floats take float32's digits
        decomposes = any(node.decomposes for node, _, _ in found.on_host)
        with one_blas_thread() if decomposes else contextlib.nullcontext():
            for node, (container, key), path in found.on_host:
                inputs = node.tensors
                result = node.fn(*[arrays[i] for i in map(id, inputs)])
                container[key] = settle(result, path)
                narrow = NARROW_FLOATS.issuperset(map(_DTYPE, inputs))
                if self.single or (narrow and inputs):
                    _note_single(container, key, single)
        _round_single(single)
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
