"""PyTorch Lightning: the callback tracks every training step, on one or two processes.

The fits run the example ``examples/lightning_digits.py`` (in this process, and as a
script on two gloo processes, which Lightning's ``ddp`` strategy launches itself) and a
tiny float64 module for what needs two fits (bit-identical training, gradient
accumulation against one batch of the same samples).
"""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import cockpit
from cockpit.exceptions import ConfigurationError
from cockpit.presets import PRESETS
from tests.scripts import run_python

pl = pytest.importorskip("lightning.pytorch")
from cockpit.integrations.lightning import CockpitCallback  # noqa: E402

pytestmark = [
    # Lightning's own deprecation notice about torch's pytree API (Lightning 2.6).
    pytest.mark.filterwarnings("ignore:`isinstance\\(treespec, LeafSpec\\)`"),
    # Lightning's advice to use more data loader workers; the tests want none.
    pytest.mark.filterwarnings("ignore:The '\\w+_dataloader' does not have many"),
]

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
TRAIN = 1500  # digits training images (cockpit.zoo.digits)


def steps(run: cockpit.Run, quantity: str) -> list[int]:
    return run.scalar(quantity).index.tolist()


def assert_complete(run: cockpit.Run, n_steps: int) -> None:
    """Finished, every step tracked, every quantity of the preset present."""
    assert run.meta["status"] == "finished"
    assert run.errors == []
    assert run.meta["absent"] == {}
    logged = set(run.scalars["quantity"].str.split(".").str[0])
    assert set(PRESETS["economy"]) <= logged | set(run.histograms["quantity"])
    for quantity in ("loss", "grad_norm", "update_size", "norm_test", "batch_size"):
        assert steps(run, quantity) == list(range(n_steps)), quantity
    # Alpha of a step needs the next one, so the last step has none.
    assert steps(run, "alpha") == list(range(n_steps - 1))
    assert run.scalar("loss").notna().all()


def test_two_epochs_on_one_device_write_a_complete_log(tmp_path, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(EXAMPLES))
    example = importlib.import_module("lightning_digits")
    with torch.random.fork_rng(devices=[]):
        run_dir = example.main(["--epochs", "2", "--logdir", str(tmp_path)])
    assert f"Run written to {run_dir}" in capsys.readouterr().out
    assert list(tmp_path.iterdir()) == [run_dir]

    run = cockpit.load(run_dir)
    per_epoch = -(-TRAIN // 64)  # the last batch of an epoch is smaller
    assert_complete(run, 2 * per_epoch)
    assert run.scalar("batch_size").sum() == 2 * TRAIN
    assert run.meta["config"]["example"] == "lightning_digits"
    assert steps(run, "val_loss") == [per_epoch - 1, 2 * per_epoch - 1]


def test_ddp_on_two_processes_logs_the_global_batch_from_rank_zero(tmp_path):
    command = [str(EXAMPLES / "lightning_digits.py"), "--epochs", "2"]
    command += ["--devices", "2", "--strategy", "ddp", "--logdir", str(tmp_path)]
    result = run_python(command, tmp_path, timeout=400)
    (run_dir,) = tmp_path.iterdir()  # rank 1 writes nothing
    assert result.stdout.count("Run written to") == 1

    run = cockpit.load(run_dir)
    shard = TRAIN // 2  # DistributedSampler: 750 images per rank and epoch
    per_epoch = -(-shard // 64)
    assert_complete(run, 2 * per_epoch)
    assert run.meta["world_size"] == 2
    assert run.meta["global_batch_size"] == 2 * 64
    # The tracker's gradients come from this rank's backward pass (tensor hooks),
    # not from .grad, which DDP averages: no parameter was moved for that.
    assert run.meta["engines"]["torch.func replay"] == {}
    # Every rank's samples: the whole epoch, each step both ranks' batches.
    sizes = run.scalar("batch_size").tolist()
    assert sum(sizes) == 2 * TRAIN
    last = 2 * (shard - (per_epoch - 1) * 64)
    assert sizes == 2 * ([2 * 64] * (per_epoch - 1) + [last])


class TinyModule(pl.LightningModule):
    """A float64 MLP on random data; its loss module in ``criterion``."""

    def __init__(self, skip: int | None = None):
        super().__init__()
        self.skip = skip
        self.net = nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3)).double()
        self.criterion = nn.CrossEntropyLoss()

    def training_step(self, batch, batch_idx):
        if batch_idx == self.skip:
            return None  # Lightning skips this batch's backward and step
        x, y = batch
        return self.criterion(self.net(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.5, momentum=0.9)


def tiny_fit(
    callbacks: list, skip: int | None = None, batch_size: int = 6, **trainer_options
) -> TinyModule:
    """Two epochs of 24 samples in batches of ``batch_size`` (4 of 6), seeded.

    The same fit every call; the shuffled order does not depend on ``batch_size``.
    """
    pl.seed_everything(0, verbose=False)
    module = TinyModule(skip)
    x = torch.randn(24, 5, dtype=torch.float64)
    y = torch.randint(3, (24,))
    loader = DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=True)
    trainer = pl.Trainer(
        accelerator="cpu",
        max_epochs=2,
        callbacks=callbacks,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        **trainer_options,
    )
    with torch.random.fork_rng(devices=[]):
        trainer.fit(module, loader)
    return module


def test_training_is_bit_identical_with_and_without_the_callback(tmp_path):
    callback = CockpitCallback(
        loss="criterion", model="net", logdir=tmp_path, preset="full"
    )
    tracked = tiny_fit([callback])
    plain = tiny_fit([])
    for (name, p), q in zip(
        tracked.named_parameters(), plain.parameters(), strict=True
    ):
        assert torch.equal(p, q), name
    run = cockpit.load(callback.run_dir)
    assert steps(run, "loss") == list(range(8))
    assert run.meta["status"] == "finished"


@pytest.mark.filterwarnings("ignore:`training_step` returned `None`")
def test_a_batch_without_loss_is_skipped_and_training_goes_on(tmp_path):
    callback = CockpitCallback(
        loss="criterion", model="net", logdir=tmp_path, preset="economy"
    )
    tiny_fit([callback], skip=1)
    run = cockpit.load(callback.run_dir)
    assert run.meta["status"] == "finished"
    # Batch 1 of each epoch (blocks 1 and 5) has no backward and no step.
    assert steps(run, "update_size") == [0, 2, 3, 4, 6, 7]


def test_a_missing_loss_attribute_says_how_to_fix_it(tmp_path):
    with pytest.raises(ConfigurationError, match=r"TinyModule\.loss_fn.*loss='\.\.\.'"):
        tiny_fit([CockpitCallback(logdir=tmp_path)])


#: Logged keys that measure time, not the training.
TIMING = {"step_time", "tracker_time", "overhead_share"}


def test_gradient_accumulation_logs_the_whole_accumulated_batch(tmp_path):
    accumulated = CockpitCallback(
        loss="criterion", model="net", logdir=tmp_path, preset="economy"
    )
    tiny_fit([accumulated], accumulate_grad_batches=2)
    whole = CockpitCallback(
        loss="criterion", model="net", logdir=tmp_path, preset="economy"
    )
    tiny_fit([whole], batch_size=12)

    run = cockpit.load(accumulated.run_dir)
    reference = cockpit.load(whole.run_dir)
    assert run.meta["status"] == "finished"
    assert run.meta["accumulation_steps"] == 2
    # 8 micro-batches of 6 samples make 4 optimizer steps of 12.
    assert steps(run, "update_size") == list(range(4))
    assert run.scalar("batch_size").tolist() == [12] * 4
    # Each step equals the step of one batch of the same 12 samples (float64).
    names = set(reference.scalars["quantity"]) - TIMING
    assert set(run.scalars["quantity"]) - TIMING == names
    assert {"loss", "loss.variance", "norm_test", "grad_norm", "alpha"} <= names
    for name in sorted(names):
        torch.testing.assert_close(
            torch.tensor(run.scalar(name).to_numpy()),
            torch.tensor(reference.scalar(name).to_numpy()),
            equal_nan=True,  # gradient_noise_scale where noise swamps the signal
            msg=name,
        )


def test_an_epoch_with_a_shorter_accumulation_window_is_refused(tmp_path):
    callback = CockpitCallback(
        loss="criterion", model="net", logdir=tmp_path, preset="economy"
    )
    with pytest.raises(ConfigurationError, match=r"an epoch has 4 per process.*of 3"):
        tiny_fit([callback], accumulate_grad_batches=3)


def test_accumulation_steps_come_from_the_trainer(tmp_path):
    with pytest.raises(ConfigurationError, match=r"\['accumulation_steps'\].*remove"):
        CockpitCallback(logdir=tmp_path, accumulation_steps=2)
