"""Cross-entropy's per-element losses read from the user's graph, not recomputed."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional
from torch.utils._python_dispatch import TorchDispatchMode

import cockpit
from cockpit import _graph_losses
from cockpit._graph_losses import elementwise_from_graph
from tests.quantities.tracking import logged

CLASSES = 5


@pytest.fixture(autouse=True)
def _any_size(monkeypatch, request):
    """The tiny losses here take the graph route (they are recomputed otherwise)."""
    if "small" not in request.node.name:
        monkeypatch.setattr(_graph_losses, "MIN_ELEMENTS", 0)


#: Input shapes [N, C, ...]: no positions, a sequence, an image, a volume.
SHAPES = [(6, CLASSES), (6, CLASSES, 3), (6, CLASSES, 3, 2), (6, CLASSES, 2, 2, 2)]
#: Module options; the weights only with a summed loss (the mean is refused).
OPTIONS = {
    "mean": {},
    "sum": {"reduction": "sum"},
    "class 0 ignored": {"ignore_index": 0},
    "weighted sum, class 2 ignored": {
        "reduction": "sum",
        "ignore_index": 2,
        "weight": torch.linspace(0.5, 2.0, CLASSES, dtype=torch.float64),
    },
}


def _batch(
    shape: tuple[int, ...], ignore_index: int = -100
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random float64 logits and class targets; the first target is ignored."""
    gen = torch.Generator().manual_seed(len(shape))
    x = torch.randn(shape, generator=gen, dtype=torch.float64, requires_grad=True)
    y = torch.randint(CLASSES, (shape[0], *shape[2:]), generator=gen)
    y.view(-1)[0] = ignore_index
    return x, y


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("options", OPTIONS.values(), ids=OPTIONS.keys())
def test_equals_the_unreduced_loss_bit_for_bit(shape, options):
    x, y = _batch(shape, options.get("ignore_index", -100))
    loss_fn = nn.CrossEntropyLoss(**options)
    got = elementwise_from_graph(loss_fn, loss_fn(x, y), y)
    options = {k: v for k, v in options.items() if k != "reduction"}
    expected = functional.cross_entropy(x, y, reduction="none", **options)
    assert got is not None and not got.requires_grad
    assert torch.equal(got, expected.detach())


def test_nll_loss_reads_its_own_input():
    x, y = _batch((6, CLASSES, 3), ignore_index=1)
    log_probs = x.log_softmax(1)
    loss_fn = nn.NLLLoss(ignore_index=1)
    got = elementwise_from_graph(loss_fn, loss_fn(log_probs, y), y)
    expected = functional.nll_loss(log_probs, y, ignore_index=1, reduction="none")
    assert torch.equal(got, expected.detach())


class _TemperedLoss(nn.CrossEntropyLoss):
    """A subclass with its own forward: its graph ends in nll_loss of other numbers."""

    def forward(self, x, y):
        return functional.cross_entropy(x / 2, y, reduction=self.reduction)


def _declined() -> dict[str, tuple]:
    x, y = _batch((6, CLASSES, 3))
    probs = torch.softmax(torch.randn(6, CLASSES, 3, dtype=torch.float64), 1)
    with torch.no_grad():
        no_graph = nn.CrossEntropyLoss()(x, y)
    smoothing = nn.CrossEntropyLoss(label_smoothing=0.1)
    return {
        "label smoothing": (smoothing, smoothing(x, y), y),
        "class probabilities": (
            nn.CrossEntropyLoss(),
            nn.CrossEntropyLoss()(x, probs),
            probs,
        ),
        "own forward": (_TemperedLoss(), _TemperedLoss()(x, y), y),
        "no graph": (nn.CrossEntropyLoss(), no_graph, y),
        "mse": (nn.MSELoss(), nn.MSELoss()(x, probs), probs),
    }


@pytest.mark.parametrize("case", _declined().keys())
def test_declines_what_it_cannot_read(case):
    loss_fn, output, target = _declined()[case]
    assert elementwise_from_graph(loss_fn, output, target) is None


def test_declines_under_saved_tensor_hooks():
    x, y = _batch((6, CLASSES))
    loss_fn = nn.CrossEntropyLoss()
    with torch.autograd.graph.save_on_cpu():
        output = loss_fn(x, y)
        assert elementwise_from_graph(loss_fn, output, y) is None
    assert elementwise_from_graph(loss_fn, loss_fn(x, y), y) is not None


class _CountLogSoftmax(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.calls = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.overloadpacket is torch.ops.aten._log_softmax:
            self.calls += 1
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("own_forward", [False, True], ids=["plain", "own forward"])
def test_tracked_step_runs_one_log_softmax(tmp_path, own_forward):
    """The plain module's per-sample losses cost no second log-softmax; others do."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, CLASSES)).double()
    loss_fn = _TemperedLoss() if own_forward else nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    ck = cockpit.Cockpit(
        model, loss_fn, optimizer, logdir=tmp_path, preset=None, quantities=["loss"]
    )
    x = torch.randn(8, 3, 4, dtype=torch.float64)
    y = torch.randint(CLASSES, (8,))
    with torch.no_grad():
        expected = functional.cross_entropy(
            model(x) / (2 if own_forward else 1), y, reduction="none"
        )
    with ck.track():
        with _CountLogSoftmax() as counter:
            loss = loss_fn(model(x), y)
        loss.backward()
    ck.close()
    run = cockpit.load(ck.run_dir)
    assert counter.calls == (2 if own_forward else 1)
    assert logged(run, "loss", 0) == pytest.approx(float(expected.mean()), rel=1e-12)
    assert logged(run, "loss.variance", 0) == pytest.approx(
        float(expected.var()), rel=1e-12
    )


def test_small_losses_are_recomputed():
    """Below MIN_ELEMENTS log-probabilities the recomputation is the cheaper route."""
    x, y = _batch((6, CLASSES, 3))
    loss_fn = nn.CrossEntropyLoss()
    assert x[0].numel() * 6 < _graph_losses.MIN_ELEMENTS
    assert elementwise_from_graph(loss_fn, loss_fn(x, y), y) is None
    wide = torch.randn(8, 2048, 1, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(2048, (8, 1))
    assert wide.numel() >= _graph_losses.MIN_ELEMENTS
    got = elementwise_from_graph(loss_fn, loss_fn(wide, targets), targets)
    expected = functional.cross_entropy(wide, targets, reduction="none")
    assert torch.equal(got, expected.detach())
