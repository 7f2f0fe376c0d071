"""PyTorch Lightning on the digits, tracked by one callback.

A ``LightningModule`` wrapping the digits CNN, trained with SGD by
``lightning.Trainer(callbacks=[CockpitCallback(...)])``; the callback writes the run
to ``--logdir``. ``--devices 2 --strategy ddp`` trains on two CPU processes (gloo);
every rank tracks its shard and rank 0 writes the global batch's statistics. About
30 s of CPU time (single process)::

    python examples/lightning_digits.py --epochs 2
    python examples/lightning_digits.py --epochs 2 --devices 2 --strategy ddp
    python examples/lightning_digits.py --epochs 2 --devices 2 --strategy ddp --accumulate 2

With ``--accumulate K`` each record describes the K micro-batches of a step (of
both processes under ddp); an epoch's 24 batches (12 per process under ddp) must be
a multiple of K.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import lightning.pytorch as pl
import torch
from _trainers import build_parser as trainer_parser
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from cockpit.integrations.lightning import CockpitCallback
from cockpit.zoo.digits import train_valid
from cockpit.zoo.models import digits_cnn

NAME = "lightning_digits"


class DigitsClassifier(pl.LightningModule):
    """The digits CNN with its loss module in ``loss_fn``, as the callback reads it."""

    def __init__(self, lr: float):
        super().__init__()
        self.lr = lr
        self.model = digits_cnn()
        self.loss_fn = nn.CrossEntropyLoss()

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        return self.loss_fn(self(x), y)

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        x, y = batch
        logits = self(x)
        self.log("val_loss", self.loss_fn(logits, y), sync_dist=True)
        accuracy = (logits.argmax(dim=1) == y).float().mean()
        self.log("val_accuracy", accuracy, sync_dist=True)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.lr, momentum=0.9)


def build_parser() -> argparse.ArgumentParser:
    """The shared flags, how long it trains, and on how many processes."""
    parser = trainer_parser(__doc__.splitlines()[0], batch_size=64, lr=0.05)
    parser.add_argument("--epochs", type=int, default=2, help="passes over the data")
    parser.add_argument("--devices", type=int, default=1, help="CPU processes")
    parser.add_argument("--strategy", default="auto", help="e.g. ddp")
    parser.add_argument(
        "--accumulate",
        type=int,
        default=1,
        help="micro-batches per optimizer step (accumulate_grad_batches)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> Path | None:
    """Train and track; returns the run directory (``None`` on ranks other than 0)."""
    args = build_parser().parse_args(argv)
    pl.seed_everything(args.seed, verbose=False)
    x_train, y_train, x_valid, y_valid = train_valid()
    train = DataLoader(
        TensorDataset(x_train, y_train), batch_size=args.batch_size, shuffle=True
    )
    valid = DataLoader(TensorDataset(x_valid, y_valid), batch_size=len(y_valid))
    callback = CockpitCallback(
        logdir=args.logdir,
        run_name=args.run_name,
        preset=args.preset,
        config={"example": NAME, **vars(args)},
    )
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=args.devices,
        strategy=args.strategy,
        max_epochs=args.epochs,
        accumulate_grad_batches=args.accumulate,
        callbacks=[callback],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(DigitsClassifier(args.lr), train, valid)
    if callback.run_dir is not None:
        print(f"Run written to {callback.run_dir}")
    return callback.run_dir


if __name__ == "__main__":
    main()
