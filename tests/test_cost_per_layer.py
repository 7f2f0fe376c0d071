"""The tracker's work per parameter tensor stays small as a model gets deeper.

Counts the ATen operations a step dispatches (a ``TorchDispatchMode``; immune to the
noise of a shared CPU) on narrow MLPs of 8 and 32 hidden layers under the economy
preset, and divides the difference by the number of parameter tensors added. Both
bounds fail on the code before issue 12's fixed-cost work (commit 9c7e66f): writing a
record dispatched 18 operations per added parameter tensor (a ``detach`` and a
``reshape`` per logged value), now none (9 per record at both depths); a tracked step
added 3.5 operations per parameter tensor to plain training, now 2.0 (the copy of the
block's gradient: a view and a multiplication); since the hooks pass 1.0 (the view:
one multiplication scales every gradient, since the small-models pass on one flat
buffer per device and dtype).

Host work is Python as much as operations: the Python function calls a tracked step
adds per parameter tensor (``sys.setprofile``), and the hooks it registers. Before
the hooks pass (commit 8ca3242) a step added 68.5 calls and 2 hook registrations per
added tensor (a tensor hook per parameter, a forward hook and an output hook per
layer, BackPACK's dispatch per layer); after it 34.5 and 1 (the layer's forward
hook and its output's hook, which hands the output gradient to the statistics). The
small-models pass took the calls to 24.5 (no wrapper around the request's scale, no
recomputed histogram sample size per layer, no generator or repeated state lookup per
layer in the quantities' views, no comprehension in the dtype check). Keeping the
layer groups' results stacked to the log (issue 12's stacked pass) took them to 22.5:
the factors' group key and the flat gradient are no longer a function call per
tensor. Reducing a bias from its one factor and drawing a group's histogram
positions at once (2026-12-01) took them from 14.0 to 12.0.
"""

from __future__ import annotations

import collections
import collections.abc
import contextlib
import gc
import sys

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

import cockpit
from cockpit._record import TensorRecord
from tests.spies import record_submitted

WIDTH = 4
BATCH = 4
DEPTHS = (8, 32)
#: Parameter tensors the deeper model adds (a weight and a bias per layer).
ADDED = 2 * (DEPTHS[1] - DEPTHS[0])


class _Operations(TorchDispatchMode):
    """The ATen operations dispatched while it is active, by name (for messages)."""

    def __init__(self) -> None:
        super().__init__()
        self.names: collections.Counter[str] = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names[str(func)] += 1
        return func(*args, **(kwargs or {}))


def _deep_mlp(depth: int) -> nn.Module:
    torch.manual_seed(0)
    layers: list[nn.Module] = [nn.Linear(WIDTH, WIDTH)]
    for _ in range(depth - 1):
        layers += [nn.Tanh(), nn.Linear(WIDTH, WIDTH)]
    return nn.Sequential(*layers)


STEPS = 3

Operations = collections.Counter[str]


class _PythonCalls:
    """Python function calls on this thread while active, by ``file:function``.

    The garbage collector is run before and held off while counting: a collection
    at a random point runs finalizers of other tests' objects (in the full suite it
    once added 13 calls to one of the four counted runs), which are not the step's.
    """

    def __init__(self) -> None:
        self.names: collections.Counter[str] = collections.Counter()

    def _count(self, frame, event: str, arg) -> None:
        if event == "call":
            code = frame.f_code
            self.names[f"{code.co_filename}:{code.co_name}"] += 1

    def __enter__(self) -> _PythonCalls:
        gc.collect()
        gc.disable()
        sys.setprofile(self._count)
        return self

    def __exit__(self, *exc: object) -> None:
        sys.setprofile(None)
        gc.enable()


def _problem(
    depth: int,
) -> tuple[nn.Module, nn.Module, torch.optim.Optimizer, torch.Tensor, torch.Tensor]:
    """The narrow MLP of ``depth`` layers, its loss, plain SGD and one batch."""
    model = _deep_mlp(depth)
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(BATCH, WIDTH, generator=generator)
    y = torch.randint(WIDTH, (BATCH,), generator=generator)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    return model, nn.CrossEntropyLoss(), optimizer, x, y


def _train(
    depth: int,
    tmp_path,
    tracked: bool,
    counter: type = _Operations,
    preset: str = "economy",
) -> tuple[Operations, list[TensorRecord]]:
    """What ``counter`` counts in :data:`STEPS` steps after a warm-up step (ATen
    operations by default), and the records submitted."""
    model, loss_fn, optimizer, x, y = _problem(depth)
    records: list[TensorRecord] = []
    ck = None
    if tracked:
        where = {"logdir": tmp_path, "run_name": f"depth{depth}"}
        ck = cockpit.Cockpit(model, loss_fn, optimizer, preset=preset, **where)
        records = record_submitted(ck)

    def step() -> None:
        optimizer.zero_grad()
        block = ck.track() if ck is not None else contextlib.nullcontext()
        with block:
            loss_fn(model(x), y).backward()
        optimizer.step()

    step()
    with counter() as counted:
        for _ in range(STEPS):
            step()
    if ck is not None:
        ck.close()
    return counted.names, records


def _step_record(records: list[TensorRecord]) -> TensorRecord:
    """The last record holding a whole step's economy quantities."""
    full = [
        r for r in records if isinstance(r, TensorRecord) and "grad_norm" in r.values
    ]
    assert full, "no step record was submitted"
    return full[-1]


def _ops(call: collections.abc.Callable[[], object]) -> Operations:
    with _Operations() as counter:
        call()
    return counter.names


def test_writing_a_record_costs_no_operation_per_parameter_tensor(tmp_path):
    """The writer copies a record's tensors in a few operations per dtype, however
    many layers hold a value."""
    made = [_step_record(_train(d, tmp_path, tracked=True)[1]) for d in DEPTHS]
    per_layer = [len(r.values["grad_norm"]["per_layer"]) for r in made]
    assert per_layer == [2 * d for d in DEPTHS]
    shallow, deep = (_ops(record.materialize) for record in made)
    assert deep.total() - shallow.total() <= 0.1 * ADDED, deep - shallow


def test_a_tracked_step_adds_few_operations_per_parameter_tensor(tmp_path):
    """Operations a tracked step adds to plain training, per added parameter tensor:
    the flat view of the block's gradient (one multiplication of their concatenation
    scales all of them); the statistics themselves are one batched operation per
    layer shape.
    """
    per_tensor, grown = _per_added_tensor(tmp_path, _Operations)
    assert per_tensor <= 1.5, grown


def _per_added_tensor(
    tmp_path, counter: type, preset: str = "economy"
) -> tuple[float, Operations]:
    """What a tracked step adds to plain training per added parameter tensor, and
    the kinds of it that grew with depth."""
    extra = []
    for depth in DEPTHS:
        plain, _ = _train(depth, tmp_path / "plain", tracked=False, counter=counter)
        tracked, _ = _train(
            depth, tmp_path / "tracked", True, counter=counter, preset=preset
        )
        tracked.subtract(plain)
        extra.append(tracked)
    grown = extra[1] - extra[0]
    return (extra[1].total() - extra[0].total()) / STEPS / ADDED, grown


def test_the_curvature_quantities_share_their_per_layer_work(tmp_path):
    """Business adds BackPACK's GGN-diagonal extension per layer (views and
    permutes, most of what is left) and the TIC per layer; before 2026-12-01 a
    step added 32.5 operations per added parameter tensor (the diagonals multiplied
    by a mean loss's scale of 1, each layer's trace summed by both ``hess_trace``
    and ``tic_trace``, ``tic_trace`` a formula call per layer), now 25.5."""
    per_tensor, grown = _per_added_tensor(tmp_path, _Operations, "business")
    assert per_tensor <= 26, grown.most_common(20)


def test_a_tracked_step_adds_few_python_calls_per_parameter_tensor(tmp_path):
    """Python calls per added parameter tensor: 68.5 before the hooks pass, 34.5
    after it, 24.5 after the small-models pass, 22.5 after the stacked pass, 14.0 at
    ba23eb8 and 12.0 since a bias's factors are reduced without ones and a group
    draws its histogram positions at once (no ``Factors.arrive`` per tensor; the
    bound fails on the code before)."""
    per_tensor, grown = _per_added_tensor(tmp_path, _PythonCalls)
    assert per_tensor <= 12.5, grown.most_common(20)


def test_a_tracked_step_registers_one_hook_per_layer(tmp_path):
    """Hooks registered per added parameter tensor (a weight and a bias per layer):
    the layer's forward hook and its output's hook, 1; a tensor hook on every
    parameter made it 2 before the hooks pass."""
    _, grown = _per_added_tensor(tmp_path, _PythonCalls)
    registered = sum(
        count
        for name, count in grown.items()
        if name.rsplit(":", 1)[1].startswith("register_")
        and "hook" in name.rsplit(":", 1)[1]
    )
    assert registered / STEPS / ADDED <= 1.0, {
        name: count for name, count in grown.items() if "register_" in name
    }


def _block_calls(depth: int, tmp_path, tracked: bool) -> collections.Counter[str]:
    """Python calls in entering ``track()``, the forward and the backward pass, over
    :data:`STEPS` steps after a warm-up step (a plain step: the same phases)."""
    model, loss_fn, optimizer, x, y = _problem(depth)
    ck = None
    if tracked:
        where = {"logdir": tmp_path, "run_name": f"block{depth}"}
        ck = cockpit.Cockpit(model, loss_fn, optimizer, preset="economy", **where)
    counter = _PythonCalls()
    for step in range(STEPS + 1):
        optimizer.zero_grad()
        block = ck.track() if ck is not None else contextlib.nullcontext()
        with counter if step else contextlib.nullcontext():
            block.__enter__()
            loss = loss_fn(model(x), y)
            loss.backward()
        block.__exit__(None, None, None)
        optimizer.step()
    if ck is not None:
        ck.close()
    return counter.names


def test_the_hooks_add_few_python_calls_per_layer_to_entry_forward_and_backward(
    tmp_path,
):
    """Python calls the tracker adds to entering the block, the forward and the
    backward pass, per added parameter tensor. Before the second hooks pass each
    layer's hooks were registered anew (``register_forward_hook``), its module found
    by a walk of the model, and its statistics' factors made in its backward hook:
    18.0 calls per added tensor (commit ce9d1d2). Now the modules are kept, the
    hooks swapped in under kept handles and the backward pass only stores each
    output gradient; what is left per layer is putting the hook in, its path
    through ``Module.__call__``, the hook and the output tensor's hook
    registration: 3.5."""
    extra = []
    for depth in DEPTHS:
        plain = _block_calls(depth, tmp_path / "plain", tracked=False)
        tracked = _block_calls(depth, tmp_path / "tracked", tracked=True)
        tracked.subtract(plain)
        extra.append(tracked)
    grown = extra[1] - extra[0]
    per_tensor = (extra[1].total() - extra[0].total()) / STEPS / ADDED
    assert per_tensor <= 4, (per_tensor, grown.most_common(20))
