"""Lookups without the batch dimension: GPT-2's ``wpe`` on ``position_ids`` ``[1, T]``.

The per-module engine spreads such a lookup over the batch (``module_func``'s module
docstring); these tests check, in float64 against per-sample gradients by brute
force, that its statistics are right, that it needs no replay, that training is bit
for bit the same, and that a call on a float input with leading dimension 1 (no
lookup) still ends in the replay with right statistics.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import Tensor, nn

import cockpit
from cockpit.engines.module_func import ModuleGrads
from tests.models.cases import CASES, LENGTH, Batch, Case
from tests.models.test_matrix import brute_force_run, check_first_order

STEPS = 3


class SharedQuery(nn.Module):
    """A ``Linear`` on a learned ``[1, T, C]`` query, added to every sample by broadcast.

    Its input is floating point: not a lookup, so it is not spread and its
    parameters must end in the replay (``query`` is there from the start: it is
    the root module's own parameter).
    """

    def __init__(self) -> None:
        super().__init__()
        self.query = nn.Parameter(torch.randn(1, LENGTH, 4))
        self.shared = nn.Linear(4, 4)
        self.embed = nn.Embedding(11, 4)
        self.head = nn.Linear(4, 3)

    def forward(self, input_ids: Tensor) -> Tensor:
        h = torch.tanh(self.embed(input_ids) + self.shared(self.query))
        return self.head(h).transpose(1, 2)  # [N, classes, T] for the loss


def _token_classes(gen: torch.Generator, dtype: torch.dtype) -> Batch:
    tokens = torch.randint(0, 11, (3, LENGTH), generator=gen)
    return Batch((), {"input_ids": tokens}, torch.randint(0, 3, (3, LENGTH)))


GPT2 = next(c for c in CASES if c.name == "gpt2")
SHARED_QUERY = Case("shared_query", SharedQuery, _token_classes)


@pytest.mark.parametrize(
    ("case", "spread", "replayed"),
    [
        (GPT2, {"transformer.wpe.weight"}, set()),
        (SHARED_QUERY, set(), {"query", "shared.weight", "shared.bias"}),
    ],
    ids=["gpt2", "shared_query"],
)
def test_statistics_match_brute_force(tmp_path, case, spread, replayed):
    """Step 0 from the replay (BackPACK found no batch dimension), then per module."""
    pytest.importorskip("transformers")
    ck, run, expected = brute_force_run(case, tmp_path, STEPS)
    assert set(ck.engines.replay) == replayed
    assert spread <= set(ck.engines.module)
    assert ck.engines.verified  # checked again at the step after the move
    for step, grads in enumerate(expected):
        check_first_order(run, step, grads, case.rtol)


@pytest.mark.parametrize("case", [GPT2, SHARED_QUERY], ids=["gpt2", "shared_query"])
def test_training_bit_identical(tmp_path, case):
    pytest.importorskip("transformers")
    model, loss_fn = case.make(), case.loss()
    twin = copy.deepcopy(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    twin_optimizer = torch.optim.SGD(twin.parameters(), lr=0.1)
    ck = cockpit.Cockpit(
        model, loss_fn, optimizer, logdir=tmp_path, loss_input=case.loss_input
    )
    for batch in case.batches(STEPS):
        optimizer.zero_grad()
        twin_optimizer.zero_grad()
        with ck.track():
            case.loss_of(loss_fn, batch.forward(model), batch.target).backward()
        case.loss_of(loss_fn, batch.forward(twin), batch.target).backward()
        for (name, p), q in zip(
            model.named_parameters(), twin.parameters(), strict=True
        ):
            assert torch.equal(p.grad, q.grad), f".grad of {name} differs"
        optimizer.step()
        twin_optimizer.step()
    ck.close()


def _hooked_output(
    grads: ModuleGrads, model: nn.Module, module: nn.Module, *inputs: Tensor
):
    handles = grads.attach()
    try:
        outputs = []
        module.register_forward_hook(lambda m, a, out: outputs.append(out))
        model(*inputs)
        return outputs[0]
    finally:
        for handle in handles:
            handle.remove()


class Lookup(nn.Module):
    """Position table on ``[1, T]`` indices added to a batch of token embeddings."""

    def __init__(self) -> None:
        super().__init__()
        self.tokens = nn.Embedding(5, 2)
        self.positions = nn.Embedding(LENGTH, 2)

    def forward(self, ids: Tensor) -> Tensor:
        positions = torch.arange(ids.shape[1]).unsqueeze(0)
        return self.tokens(ids) + self.positions(positions)


@pytest.mark.parametrize(("n", "spread"), [(3, True), (1, False)])
def test_lookup_spread_only_for_a_batch_of_several(n, spread):
    """N > 1: the hook returns ``[N, T, C]``; N = 1: the leading 1 is the batch."""
    model = Lookup()
    owners = {model.positions: [("positions.weight", "weight")]}
    grads = ModuleGrads(owners, lambda: n, lambda n: 1, model)
    ids = torch.randint(0, 5, (n, LENGTH))
    output = _hooked_output(grads, model, model.positions, ids)
    assert output.shape == (n if spread else 1, LENGTH, 2)
