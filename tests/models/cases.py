"""Library models as test cases: tiny configurations, random initialization, no downloads.

Each :class:`Case` builds its model from a constructor or a config (``weights=None``,
``pretrained=False``; nothing is fetched), seeded, in float32; the brute-force tests
call ``.double()``. Dropout is off everywhere, so that per-sample gradients are
deterministic functions of the batch. The frameworks (torchvision, transformers,
timm) come with the ``test`` extra; a case names the ones it needs in ``requires``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

#: Vocabulary, sequence length, image side and classes of the tiny problems.
VOCAB = 11
LENGTH = 6
CLASSES = 3
BATCH = 3


@dataclass
class Batch:
    """The model's positional and keyword inputs and the loss target."""

    args: tuple[Tensor, ...]
    kwargs: dict[str, Tensor]
    target: Tensor

    def forward(self, model: nn.Module) -> Any:
        """The model's output on this batch (a tensor or the library's structure)."""
        return model(*self.args, **self.kwargs)


@dataclass(frozen=True)
class Case:
    """A library model, its batches and its loss."""

    name: str
    build: Callable[[], nn.Module]
    batch: Callable[[torch.Generator, torch.dtype], Batch]
    loss: Callable[[], nn.Module] = nn.CrossEntropyLoss
    #: Maps the model's output to the loss module's input (``None``: the output).
    loss_input: Callable[[Any], Tensor] | None = None
    #: BatchNorm in training mode couples the samples of a batch.
    batchnorm: bool = False
    #: Relative tolerance against brute force. T5's and Llama's RMSNorm compute the
    #: variance in float32 even in a float64 model, so the tracker's and the brute
    #: force's different orders of operations differ by float32 roundoff there.
    rtol: float = 1e-7
    requires: tuple[str, ...] = field(default_factory=tuple)

    def make(self, dtype: torch.dtype = torch.float32) -> nn.Module:
        """The model, built under seed 0, in ``dtype``, in training mode."""
        torch.manual_seed(0)
        return self.build().to(dtype).train()

    def batches(self, steps: int, dtype: torch.dtype = torch.float32) -> list[Batch]:
        """``steps`` deterministic batches of :data:`BATCH` samples."""
        gen = torch.Generator().manual_seed(1)
        return [self.batch(gen, dtype) for _ in range(steps)]

    def loss_of(self, loss_fn: nn.Module, output: Any, target: Tensor) -> Tensor:
        """The batch loss as the training loop computes it."""
        z = output if self.loss_input is None else self.loss_input(output)
        return loss_fn(z, target)


def lm_logits(out: Any) -> Tensor:
    """A Hugging Face LM's ``[N, T, V]`` logits as ``[N, V, T]`` for the loss."""
    return out.logits.transpose(1, 2)


def _images(side: int) -> Callable[[torch.Generator, torch.dtype], Batch]:
    def batch(gen: torch.Generator, dtype: torch.dtype) -> Batch:
        x = torch.randn(BATCH, 3, side, side, generator=gen, dtype=dtype)
        return Batch((x,), {}, torch.randint(0, CLASSES, (BATCH,), generator=gen))

    return batch


def _tokens(gen: torch.Generator) -> Tensor:
    return torch.randint(0, VOCAB, (BATCH, LENGTH), generator=gen)


def _causal_lm(gen: torch.Generator, dtype: torch.dtype) -> Batch:
    return Batch((), {"input_ids": _tokens(gen)}, _tokens(gen))


def _masked_lm(gen: torch.Generator, dtype: torch.dtype) -> Batch:
    """Labels at the masked positions only, -100 (ignored by the loss) elsewhere."""
    tokens = _tokens(gen)
    masked = torch.rand(BATCH, LENGTH, generator=gen) < 0.5
    masked[:, 0] = True  # every sample has a loss term
    inputs = tokens.masked_fill(masked, VOCAB - 1)  # the last id serves as [MASK]
    labels = tokens.masked_fill(~masked, -100)
    return Batch((), {"input_ids": inputs}, labels)


def _seq2seq(gen: torch.Generator, dtype: torch.dtype) -> Batch:
    inputs = {"input_ids": _tokens(gen), "decoder_input_ids": _tokens(gen)}
    return Batch((), inputs, _tokens(gen))


def _sequences(gen: torch.Generator, dtype: torch.dtype) -> Batch:
    x = torch.randn(BATCH, LENGTH, 4, generator=gen, dtype=dtype)
    return Batch((x,), {}, torch.randint(0, CLASSES, (BATCH,), generator=gen))


class RecurrentClassifier(nn.Module):
    """``[N, T, 4]`` sequences -> LSTM or GRU -> last hidden state -> ``Linear``."""

    def __init__(self, cell: type[nn.LSTM] | type[nn.GRU]) -> None:
        super().__init__()
        self.rnn = cell(4, 5, batch_first=True)
        self.head = nn.Linear(5, CLASSES)

    def forward(self, x: Tensor) -> Tensor:
        out, _ = self.rnn(x)
        return self.head(out[:, -1])


def _resnet18() -> nn.Module:
    from torchvision.models import resnet18

    return resnet18(weights=None, num_classes=CLASSES)


def _mobilenet() -> nn.Module:
    from torchvision.models import mobilenet_v3_small

    return mobilenet_v3_small(weights=None, num_classes=CLASSES, dropout=0.0)


def _torchvision_vit() -> nn.Module:
    from torchvision.models import VisionTransformer

    model = VisionTransformer(
        image_size=16,
        patch_size=8,
        num_layers=1,
        num_heads=2,
        hidden_dim=8,
        mlp_dim=16,
        num_classes=CLASSES,
    )
    # Its head starts at zero, which makes every other gradient zero at step 0.
    nn.init.normal_(model.heads.head.weight, std=0.5)
    return model


def _gpt2() -> nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        n_layer=1,
        n_head=2,
        n_embd=8,
        vocab_size=VOCAB,
        n_positions=LENGTH,
        bos_token_id=0,
        eos_token_id=0,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
    )
    return GPT2LMHeadModel(config)


def _bert() -> nn.Module:
    from transformers import BertConfig, BertForMaskedLM

    config = BertConfig(
        vocab_size=VOCAB,
        hidden_size=8,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=16,
        max_position_embeddings=LENGTH,
        pad_token_id=0,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    return BertForMaskedLM(config)


def _t5() -> nn.Module:
    from transformers import T5Config, T5ForConditionalGeneration

    config = T5Config(
        vocab_size=VOCAB,
        d_model=8,
        d_ff=16,
        d_kv=4,
        num_layers=1,
        num_heads=2,
        dropout_rate=0.0,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    )
    return T5ForConditionalGeneration(config)


def _llama() -> nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=8,
        intermediate_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=LENGTH,
        bos_token_id=0,
        eos_token_id=1,
    )
    return LlamaForCausalLM(config)


def _timm_vit() -> nn.Module:
    import timm

    return timm.create_model(
        "vit_tiny_patch16_224",
        pretrained=False,
        img_size=16,
        patch_size=8,
        embed_dim=8,
        depth=1,
        num_heads=2,
        num_classes=CLASSES,
    )


def _timm_convnext() -> nn.Module:
    import timm

    return timm.create_model(
        "convnext_atto",
        pretrained=False,
        depths=(1, 1, 1, 1),
        dims=(8, 16, 24, 32),
        num_classes=CLASSES,
    )


TV, HF, TIMM = ("torchvision",), ("transformers",), ("timm",)

CASES = [
    Case("resnet18", _resnet18, _images(32), batchnorm=True, requires=TV),
    Case("mobilenet_v3_small", _mobilenet, _images(32), batchnorm=True, requires=TV),
    Case("torchvision_vit", _torchvision_vit, _images(16), requires=TV),
    Case("gpt2", _gpt2, _causal_lm, loss_input=lm_logits, requires=HF),
    Case("bert_mlm", _bert, _masked_lm, loss_input=lm_logits, requires=HF),
    Case("t5", _t5, _seq2seq, loss_input=lm_logits, rtol=1e-5, requires=HF),
    Case("llama", _llama, _causal_lm, loss_input=lm_logits, rtol=1e-5, requires=HF),
    Case("timm_vit", _timm_vit, _images(16), requires=TIMM),
    Case("timm_convnext", _timm_convnext, _images(32), requires=TIMM),
    Case("lstm", lambda: RecurrentClassifier(nn.LSTM), _sequences),
    Case("gru", lambda: RecurrentClassifier(nn.GRU), _sequences),
]
