"""Hugging Face ``Trainer`` on causal language models, with exact per-sample losses.

Usage, two changes to a ``Trainer`` script::

    from cockpit.integrations.huggingface import CockpitCallback, CockpitTrainer

    trainer = CockpitTrainer(
        model=model, args=args, train_dataset=data,
        callbacks=[CockpitCallback(logdir="runs", preset="economy")],
    )
    trainer.train()

Why a subclass besides the callback: a causal LM computes its loss inside
``forward`` from ``labels`` (``ForCausalLMLoss``: logits upcast to float32, labels
shifted by one, targets ``-100`` ignored, the mean over the kept tokens), so no loss
module is ever called where the tracker could read the per-sample losses; and a
callback has no hook between the backward pass and gradient clipping, which changes
``.grad`` in place. :class:`CockpitTrainer` therefore

- computes the same loss outside the model (``compute_loss``): the model runs without
  ``labels``, and :attr:`CockpitCallback.loss_fn`, an ``nn.CrossEntropyLoss
  (ignore_index=-100)``, gets :func:`causal_lm_loss_input` ``[N, V, T-1]`` and the
  targets ``labels[:, 1:]`` ``[N, T-1]``. Its value equals the model's own loss bit
  for bit; its gradients differ from the model's by float32 rounding, as the
  cross-entropy runs on the ``[N, V, T-1]`` layout instead of ``[N (T-1), V]``;
- puts ``track()`` around ``training_step`` (forward and backward of one batch),
  before clipping and ``optimizer.step()``, which the Trainer runs as usual.

The tracker's per-sample loss of sequence n is then ``l_n = N sum_t loss_{n,t} / Z``
(``Z``: the batch's kept tokens), whose mean is the model's loss.

:class:`CockpitCallback` opens the Cockpit at the first training step (when the
Trainer has created its optimizer), logs the ``eval_*`` metrics of the evaluations
during training (``eval_strategy``) and closes the run when training ends.

Gradient accumulation: ``gradient_accumulation_steps=K`` becomes the Cockpit's
``accumulation_steps``, so the K ``training_step`` blocks of an optimizer step make
one record of the whole accumulated batch. The loss is a per-batch mean, so the
Trainer scales it as ``loss / K`` (``loss_is_scaled_for_ga = False``), which weighs
micro-batches equally rather than by their token counts; the tracker reads that
scale off the backward pass. An epoch's batches per process must be a multiple of K
(the Trainer's last window of an epoch is shorter otherwise). Several processes:
every rank tracks its shard, the states are reduced across the world and rank 0
alone writes (:func:`cockpit.integrations._shared.open_cockpit`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import transformers
from torch import Tensor, nn

from cockpit.exceptions import ConfigurationError
from cockpit.integrations._shared import (
    check_options,
    check_window,
    open_cockpit,
    written_run_dir,
)
from cockpit.tracker import Cockpit

__all__ = ["IGNORE_INDEX", "CockpitCallback", "CockpitTrainer", "causal_lm_loss_input"]

#: The label Hugging Face's losses ignore (padding, prompts).
IGNORE_INDEX = -100


def causal_lm_loss_input(output: Any) -> Tensor:
    """``[N, V, T-1]``: the logits that predict tokens 1..T-1, class axis second.

    Args:
        output: The model's output with ``logits`` ``[N, T, V]``.

    Half-precision logits are upcast to float32, as ``ForCausalLMLoss`` does; float32
    and float64 stay as they are.
    """
    logits = output.logits[:, :-1]
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()
    return logits.transpose(1, 2)


class CockpitCallback(transformers.TrainerCallback):
    """Holds the Cockpit of a :class:`CockpitTrainer`'s run.

    Args:
        **options: Keyword arguments of :class:`cockpit.Cockpit` (``logdir``,
            ``preset``, ``quantities``, ``run_name``, ``config``, ...).

    """

    def __init__(self, **options: Any):
        if "loss_input" in options:
            raise ConfigurationError(
                "CockpitCallback sets loss_input itself (causal_lm_loss_input); "
                "remove loss_input= from its arguments."
            )
        check_options(options, "Hugging Face Trainer")
        self.options = options
        self.loss_fn = nn.CrossEntropyLoss(ignore_index=IGNORE_INDEX)
        self.cockpit: Cockpit | None = None
        self.attached = False
        self._opened = False
        self._closed = False

    @property
    def run_dir(self) -> Path | None:
        """Where the log is written (``None`` before training and on ranks > 0)."""
        return written_run_dir(self.cockpit)

    def open(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        args: transformers.TrainingArguments,
    ) -> None:
        """Create the Cockpit once (on every rank), when the optimizer exists."""
        if self._opened:
            return
        self._opened = True
        options = {**self.options, "loss_input": causal_lm_loss_input}
        self.cockpit = open_cockpit(
            model,
            self.loss_fn,
            optimizer,
            world_size=args.world_size,
            accumulation_steps=args.gradient_accumulation_steps,
            process_group=None,
            options=options,
        )

    def on_train_begin(self, args, state, control, **kwargs) -> None:
        if not self.attached:
            raise ConfigurationError(
                "CockpitCallback needs CockpitTrainer: a causal LM computes its loss "
                "inside forward, where the per-sample losses cannot be read. Use "
                "cockpit.integrations.huggingface.CockpitTrainer instead of "
                "transformers.Trainer."
            )
        accumulation = args.gradient_accumulation_steps
        loader = kwargs.get("train_dataloader")
        # The short window comes only if training reaches an epoch's end.
        reaches_end = transformers.trainer_utils.has_length(loader) and (
            state.max_steps > len(loader) // accumulation
        )
        if reaches_end:
            check_window(len(loader), accumulation, "Hugging Face Trainer")

    def on_evaluate(self, args, state, control, metrics=None, **kwargs) -> None:
        if self.cockpit is None or self._closed or not metrics:
            return
        numbers = {
            name: value
            for name, value in metrics.items()
            if name.startswith("eval_") and isinstance(value, (int, float))
        }
        if numbers:
            self.cockpit.log(**numbers)

    def on_train_end(self, args, state, control, **kwargs) -> None:
        self._closed = True
        if self.cockpit is not None:
            self.cockpit.close()


class CockpitTrainer(transformers.Trainer):
    """A ``transformers.Trainer`` whose :class:`CockpitCallback` tracks each step.

    The causal LM loss is computed by the callback's loss module (module docstring).
    Needs exactly one :class:`CockpitCallback` in ``callbacks`` and ``labels`` in
    each batch (the token ids, unshifted, ``-100`` where ignored), as for the
    model's own loss.
    """

    loss_is_scaled_for_ga = False

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        found = [
            callback
            for callback in self.callback_handler.callbacks
            if isinstance(callback, CockpitCallback)
        ]
        if len(found) != 1:
            raise ConfigurationError(
                "CockpitTrainer needs exactly one CockpitCallback in callbacks, got "
                f"{len(found)}. Pass callbacks=[CockpitCallback(logdir=...)]."
            )
        self.cockpit_callback = found[0]
        self.cockpit_callback.attached = True

    def compute_loss(
        self,
        model: nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: Tensor | int | None = None,
    ) -> Tensor | tuple[Tensor, Any]:
        """The mean cross-entropy of the next tokens, by the callback's loss module."""
        if "labels" not in inputs:
            raise ConfigurationError(
                f"CockpitTrainer needs 'labels' in each batch, got {sorted(inputs)}. "
                "Put the token ids there (-100 where no loss is wanted), e.g. with "
                "DataCollatorForLanguageModeling(tokenizer, mlm=False)."
            )
        features = {name: value for name, value in inputs.items() if name != "labels"}
        outputs = model(**features)
        targets = inputs["labels"][:, 1:]
        loss = self.cockpit_callback.loss_fn(causal_lm_loss_input(outputs), targets)
        return (loss, outputs) if return_outputs else loss

    def training_step(
        self,
        model: nn.Module,
        inputs: dict[str, Any],
        num_items_in_batch: Tensor | int | None = None,
    ) -> Tensor:
        """One batch's forward and backward pass inside the callback's block."""
        callback = self.cockpit_callback
        callback.open(self.model, self.optimizer, self.args)
        assert callback.cockpit is not None  # open() created it
        with callback.cockpit.track():
            return super().training_step(model, inputs, num_items_in_batch)
