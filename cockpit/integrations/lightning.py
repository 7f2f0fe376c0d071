"""PyTorch Lightning: one callback tracks every ``training_step``.

Usage, one line added to the ``Trainer``::

    from cockpit.integrations.lightning import CockpitCallback

    trainer = lightning.Trainer(callbacks=[CockpitCallback(logdir="runs")])
    trainer.fit(module, loader)

What the ``LightningModule`` must provide:

- its loss as a torch loss module in an attribute (default ``loss_fn``;
  ``CockpitCallback(loss="criterion")`` names another), called exactly once per
  ``training_step`` on the model's output and the targets: the tracker reads the
  per-sample losses from that call;
- one optimizer (``configure_optimizers``) and automatic optimization (Lightning's
  default); a module with manual optimization creates ``cockpit.Cockpit`` itself and
  puts ``ck.track()`` around its forward pass and ``manual_backward``;
- the model whose forward pass maps the inputs to the loss input: the
  ``LightningModule`` itself (``training_step`` calls ``self(x)``, the default) or a
  submodule, ``CockpitCallback(model="net")`` when ``training_step`` calls
  ``self.net(x)``. Its trainable parameters are the tracked ones.

How it hooks in: Lightning runs ``training_step``, ``zero_grad`` and ``backward``
inside the optimizer's closure, which ``optimizer.step(closure)`` calls. The block
opens at ``on_train_batch_start`` (before ``training_step``) and closes at
``on_after_backward``; the optimizer then steps as usual, and the tracker reads the
step it took. Lightning zeroes the gradients after ``training_step``, i.e. inside the
block; so that the block's backward pass starts from empty ``.grad``, the callback
zeroes them at the batch start instead, on exactly the batches where Lightning zeroes
them (the first of each ``accumulate_grad_batches`` window). Nothing else changes:
training is bit-identical with and without the callback.

Several processes (``strategy="ddp"``): every rank tracks its shard, the tracker
reduces the states across the ranks of the DDP model's process group, and rank 0
alone writes the log, so each record describes the global batch (every rank's
samples). Give ``preset=`` or ``quantities=`` then: the overhead budget plans on each
rank's own timings (:func:`cockpit.integrations._shared.open_cockpit`). Gradient
accumulation (``accumulate_grad_batches=K``) opens one block per micro-batch and
passes K as the Cockpit's ``accumulation_steps``: the K blocks make one record, of
the whole accumulated batch. An epoch's batches per process must then be a multiple
of K, as Lightning steps after an epoch's last batch even in a shorter window.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from torch import nn

from cockpit.exceptions import ConfigurationError
from cockpit.integrations._shared import (
    check_options,
    check_window,
    open_cockpit,
    written_run_dir,
)
from cockpit.tracker import Cockpit

__all__ = ["CockpitCallback"]


class CockpitCallback(pl.Callback):
    """Tracks each ``training_step``'s forward and backward pass with a Cockpit.

    Args:
        loss: Name of the ``LightningModule`` attribute holding the loss module.
        model: Name of the submodule whose forward pass ``training_step`` calls;
            ``None``: the ``LightningModule`` itself.
        **options: Keyword arguments of :class:`cockpit.Cockpit` (``logdir``,
            ``preset``, ``quantities``, ``run_name``, ``config``, ...).

    """

    def __init__(self, loss: str = "loss_fn", model: str | None = None, **options: Any):
        check_options(options, "Lightning Trainer")
        self.loss_attribute = loss
        self.model_attribute = model
        self.options = options
        self.cockpit: Cockpit | None = None
        self._block: contextlib.AbstractContextManager | None = None

    @property
    def run_dir(self) -> Path | None:
        """Where the log is written (``None`` before training and on ranks > 0)."""
        return written_run_dir(self.cockpit)

    def on_train_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule
    ) -> None:
        if not pl_module.automatic_optimization:
            raise ConfigurationError(
                "CockpitCallback needs automatic optimization, but "
                f"{type(pl_module).__name__}.automatic_optimization is False. Create "
                "cockpit.Cockpit in the module and put ck.track() around the forward "
                "pass and manual_backward instead."
            )
        if len(trainer.optimizers) != 1:
            raise ConfigurationError(
                "CockpitCallback tracks one optimizer, but configure_optimizers gave "
                f"{len(trainer.optimizers)}. Return one optimizer."
            )
        accumulation = trainer.accumulate_grad_batches
        if accumulation > 1 and trainer.num_training_batches != float("inf"):
            check_window(
                int(trainer.num_training_batches), accumulation, "Lightning Trainer"
            )
        self.cockpit = open_cockpit(
            self._tracked_model(pl_module),
            self._loss(pl_module),
            trainer.optimizers[0],
            world_size=trainer.world_size,
            accumulation_steps=accumulation,
            # The DDP wrapper's group; None (the world) for other strategies.
            process_group=getattr(trainer.strategy.model, "process_group", None),
            options=self.options,
        )

    def _loss(self, pl_module: pl.LightningModule) -> nn.Module:
        loss = getattr(pl_module, self.loss_attribute, None)
        if not isinstance(loss, nn.Module):
            raise ConfigurationError(
                f"CockpitCallback reads the loss module from "
                f"{type(pl_module).__name__}.{self.loss_attribute}, but it is "
                f"{type(loss).__name__}. Store the loss module that training_step "
                f"calls there (e.g. self.{self.loss_attribute} = nn.CrossEntropyLoss()) "
                "or name its attribute: CockpitCallback(loss='...')."
            )
        return loss

    def _tracked_model(self, pl_module: pl.LightningModule) -> nn.Module:
        if self.model_attribute is None:
            return pl_module
        model = getattr(pl_module, self.model_attribute, None)
        if not isinstance(model, nn.Module):
            raise ConfigurationError(
                f"CockpitCallback(model='{self.model_attribute}') names no submodule "
                f"of {type(pl_module).__name__} (found {type(model).__name__}). Name "
                "the module training_step calls, or pass model=None for the "
                "LightningModule itself."
            )
        return model

    def on_train_batch_start(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        batch: Any,
        batch_idx: int,
    ) -> None:
        if self.cockpit is None:
            return
        if batch_idx % trainer.accumulate_grad_batches == 0:
            trainer.optimizers[0].zero_grad(set_to_none=True)
        self._block = self.cockpit.track()
        self._block.__enter__()

    def on_after_backward(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule
    ) -> None:
        block, self._block = self._block, None
        if block is not None:
            block.__exit__(None, None, None)

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        """Discard a block without backward: ``training_step`` returned ``None``."""
        block, self._block = self._block, None
        if block is not None:
            # Thrown into the block, it ends the step without a record; the step's
            # index stays unused, as Lightning skips the batch's optimizer step.
            skipped = _SkippedBatchError()
            block.__exit__(_SkippedBatchError, skipped, None)

    def on_exception(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        exception: BaseException,
    ) -> None:
        block, self._block = self._block, None
        if block is not None:
            block.__exit__(type(exception), exception, exception.__traceback__)
        if self.cockpit is not None:
            self.cockpit.close("crashed")

    def on_validation_epoch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule
    ) -> None:
        """Log the validation metrics (``self.log("val_...")``) at the last step."""
        if self.cockpit is None or trainer.sanity_checking:
            return
        metrics = {
            name: value
            for name, value in trainer.callback_metrics.items()
            if name.startswith("val")
        }
        if metrics:
            self.cockpit.log(**metrics)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.cockpit is not None:
            self.cockpit.close()


class _SkippedBatchError(Exception):
    """Ends the block of a batch whose ``training_step`` returned ``None``."""
