"""The log writer's Python work per record stays small as a model gets deeper.

The writer thread runs Python, and Python holds the GIL: where the training thread is
itself mostly Python (small models, every step tracked), each millisecond the writer
spends is a millisecond the training waits (``benchmarks/writer_contention.py``). So
its work on a record must not grow with a call per value: this counts the Python
function calls (``sys.setprofile``, deterministic, unlike time on a shared machine)
of everything the writer does with one step's record, from the tensors to the line
and the columnar cache's rows, on narrow MLPs of 8 and 32 hidden layers under the
economy preset, and divides the difference by the parameter tensors added. On the
code before (commit 8ca3242) that was 102 calls per added parameter tensor (a call per
logged value and stage: ``_leaves``, ``convert``, ``to_python``, ``compact``, the
layer table's walks, ``flatten``'s ``layer`` and ``number``). The bound below fails
at commit 785e45a, where the layer table still walked each per-layer dict entry by
entry. What is left is almost all the path of a value that is not finite (this tiny
model's gradient noise swamps the signal in nearly every layer, and each such
layer's value is flagged, settled and named: five calls). A layer whose values are
finite costs no call of its own.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import torch
from torch import nn

import cockpit
from cockpit._record import TensorRecord
from cockpit.logs._format import decode_line, encode_record
from cockpit.logs._note_table import NoteTable
from cockpit.logs.flatten import flatten_rows
from tests.spies import record_submitted

WIDTH, BATCH = 4, 4
DEPTHS = (8, 32)
#: Parameter tensors the deeper model adds (a weight and a bias per layer).
ADDED = 2 * (DEPTHS[1] - DEPTHS[0])


def _step_record(depth: int, tmp_path) -> TensorRecord:
    """The record of the second tracked step of an economy Cockpit."""
    torch.manual_seed(0)
    layers: list[nn.Module] = [nn.Linear(WIDTH, WIDTH)]
    for _ in range(depth - 1):
        layers += [nn.Tanh(), nn.Linear(WIDTH, WIDTH)]
    model = nn.Sequential(*layers)
    loss_fn = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = torch.randn(BATCH, WIDTH), torch.randint(WIDTH, (BATCH,))
    ck = cockpit.Cockpit(
        model, loss_fn, optimizer, logdir=tmp_path, run_name=f"d{depth}"
    )
    records: list[TensorRecord] = record_submitted(ck)
    for _ in range(2):
        optimizer.zero_grad()
        with ck.track():
            loss_fn(model(x), y).backward()
        optimizer.step()
    ck.close()
    return [r for r in records if "grad_norm" in r.values][-1]


def _write(record: TensorRecord) -> None:
    """What the writer thread does with a record: line, and the cache's rows."""
    line, _ = encode_record(record.materialize(), NoteTable())
    decoded = decode_line(line)
    NoteTable().expand(decoded)
    flatten_rows([decoded])


def _python_calls(call: Callable[[], object]) -> int:
    calls = 0

    def count(frame, event, arg) -> None:
        nonlocal calls
        calls += event == "call"

    sys.setprofile(count)
    try:
        call()
    finally:
        sys.setprofile(None)
    return calls


def test_writing_a_record_costs_few_python_calls_per_parameter_tensor(tmp_path):
    shallow, deep = (_step_record(depth, tmp_path) for depth in DEPTHS)
    assert len(deep.values["grad_norm"]["per_layer"]) == 2 * DEPTHS[1]
    _write(shallow)  # imports and caches of the first call
    grown = _python_calls(lambda: _write(deep)) - _python_calls(lambda: _write(shallow))
    assert grown / ADDED <= 5.5
