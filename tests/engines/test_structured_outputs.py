"""Models returning a dict, a tuple or a Hugging Face ``ModelOutput``: the loss input
is found without ``loss_input`` when one field fits, else the error names them."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cockpit.exceptions import UsageError
from tests import reference
from tests.quantities.tracking import assert_per_layer, make_cockpit


class Structured(nn.Module):
    """A residual MLP (the replay's case) returning its logits inside ``kind``."""

    def __init__(self, kind: str, extra_shape: tuple[int, ...] = (2,)):
        super().__init__()
        self.a, self.b = nn.Linear(5, 3), nn.Linear(3, 3)
        self.kind, self.extra_shape = kind, extra_shape

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        h = self.a(x)
        return h + torch.tanh(self.b(h))

    def forward(self, x: torch.Tensor):
        logits = self.logits(x)
        extra = logits.new_zeros(x.shape[0], *self.extra_shape)
        if self.kind == "dict":
            return {"hidden": extra, "logits": logits}
        return extra, logits


class Plain(nn.Module):
    def __init__(self, inner: Structured):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner.logits(x)


def train_one(model, loss_fn, x, y, logdir, pick):
    ck = make_cockpit(model, loss_fn, logdir, ["norm_test"])
    with ck.track():
        loss_fn(pick(model(x)), y).backward()
    ck.close()
    import cockpit

    return cockpit.load(ck.run_dir)


@pytest.mark.parametrize("kind", ["dict", "tuple"])
def test_the_one_field_of_the_loss_input_shape_is_found(tmp_path, kind):
    torch.manual_seed(0)
    model = Structured(kind).double()
    loss_fn = nn.CrossEntropyLoss()
    x, y = torch.randn(4, 5, dtype=torch.float64), torch.randint(0, 3, (4,))
    expected = reference.norm_test(
        reference.flat(reference.per_sample_grads(Plain(model), loss_fn, x, y))
    )
    key = "logits" if kind == "dict" else 1
    run = train_one(model, loss_fn, x, y, tmp_path, lambda out: out[key])
    assert_per_layer(run, "norm_test", 0, {"total": expected})


def test_two_fitting_fields_are_refused_naming_them(tmp_path):
    model = Structured("dict", extra_shape=(3,)).double()
    loss_fn = nn.CrossEntropyLoss()
    x, y = torch.randn(4, 5, dtype=torch.float64), torch.randint(0, 3, (4,))
    with pytest.raises(
        UsageError, match=r"'hidden': \[4, 3\], 'logits': \[4, 3\].*loss_input="
    ):
        train_one(model, loss_fn, x, y, tmp_path, lambda out: out["logits"])


def test_gpt2_logits_transposed_for_the_loss(tmp_path):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.GPT2Config(
        n_layer=1, n_head=2, n_embd=8, vocab_size=11, n_positions=8
    )
    model = transformers.GPT2LMHeadModel(config).double()
    loss_fn = nn.CrossEntropyLoss()
    tokens = torch.randint(0, 11, (3, 5))
    targets = torch.randint(0, 11, (3, 5))
    ck = make_cockpit(model, loss_fn, tmp_path, ["norm_test", "grad_norm"])
    with ck.track():
        loss_fn(model(tokens).logits.transpose(1, 2), targets).backward()
    assert ck.func.automatic is False  # the logits field, transposed, was chosen
    ck.close()
    import cockpit

    run = cockpit.load(ck.run_dir)
    assert run.scalars.query("quantity == 'norm_test'").value.notna().all()
