"""Hugging Face ``Trainer``: a tiny GPT-2 from a config, tracked with exact losses.

The per-sample references are brute force: each sequence's own forward pass in
float64, its token losses summed over the kept targets and normalized by the batch's
kept-token count, and autograd for its gradient. Nothing is downloaded.
"""

from __future__ import annotations

import importlib
import textwrap
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

import cockpit
from cockpit.exceptions import ConfigurationError
from tests import reference
from tests.models.cases import CASES, LENGTH, VOCAB
from tests.scripts import run_python, torchrun

transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate")
from cockpit.integrations.huggingface import (  # noqa: E402
    CockpitCallback,
    CockpitTrainer,
    causal_lm_loss_input,
)

BATCH = 4
GPT2 = next(case for case in CASES if case.name == "gpt2")


def tiny_gpt2(dtype: torch.dtype) -> nn.Module:
    """The test matrix's GPT-2 (one layer, width 8, no dropout), seeded."""
    return GPT2.make(dtype)


def sequences(count: int) -> list[dict[str, Tensor]]:
    """Random token ids; some labels ignored (-100), as padding or prompts are."""
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(VOCAB, (count, LENGTH), generator=gen)
    labels = ids.clone()
    labels[0, 3:] = -100
    labels[2, 1] = -100
    return [{"input_ids": i, "labels": y} for i, y in zip(ids, labels, strict=True)]


def arguments(tmp_path, steps: int) -> transformers.TrainingArguments:
    return transformers.TrainingArguments(
        output_dir=str(tmp_path / "trainer"),
        max_steps=steps,
        per_device_train_batch_size=BATCH,
        learning_rate=0.1,
        optim="sgd",
        seed=0,
        use_cpu=True,
        report_to="none",
        save_strategy="no",
        logging_strategy="no",
        disable_tqdm=True,
    )


def brute_force(model: nn.Module, batch: list[dict[str, Tensor]]):
    """``[N]`` per-sample losses ``l_n = N sum_t loss_{n,t} / Z`` and ``[N, D]``
    their gradients, one sequence's forward pass at a time."""
    labels = torch.stack([b["labels"] for b in batch])
    kept = (labels[:, 1:] != -100).sum()
    token_loss = nn.CrossEntropyLoss(ignore_index=-100, reduction="sum")
    losses, grads = [], []
    for sample in batch:
        logits = model(input_ids=sample["input_ids"][None]).logits[0, :-1]
        loss = token_loss(logits, sample["labels"][1:]) * len(batch) / kept
        grad = torch.autograd.grad(loss, list(model.parameters()))
        losses.append(loss.detach())
        grads.append(torch.cat([g.reshape(-1) for g in grad]))
    return torch.stack(losses), torch.stack(grads)


def test_per_sample_losses_and_gradients_match_brute_force(tmp_path):
    model = tiny_gpt2(torch.float64)
    batch = sequences(BATCH)
    losses, grads = brute_force(model, batch)
    own = model(
        input_ids=torch.stack([b["input_ids"] for b in batch]),
        labels=torch.stack([b["labels"] for b in batch]),
    ).loss

    callback = CockpitCallback(
        logdir=tmp_path, preset=None, quantities=["loss", "norm_test"]
    )
    trainer = CockpitTrainer(
        model=model,
        args=arguments(tmp_path, steps=1),
        train_dataset=batch,
        callbacks=[callback],
    )
    trainer.train()

    run = cockpit.load(callback.run_dir)
    assert run.meta["status"] == "finished"
    logged = {name: run.scalar(name).loc[0] for name in run.scalars["quantity"]}
    assert logged["batch_size"] == BATCH
    # The model's own loss (ForCausalLMLoss, float32 there) is the mean of the l_n.
    torch.testing.assert_close(losses.mean(), own.double(), rtol=1e-6, atol=0)
    expected = {
        "loss": losses.mean(),
        "loss.variance": losses.var(),
        "norm_test": reference.norm_test(grads),
    }
    for name, value in expected.items():
        torch.testing.assert_close(
            torch.tensor(logged[name], dtype=torch.float64), value, msg=name
        )


def next_token_loss(outputs, labels: Tensor, num_items_in_batch=None) -> Tensor:
    """The same loss by the plain Trainer's own hook (``compute_loss_func``)."""
    return nn.CrossEntropyLoss()(causal_lm_loss_input(outputs), labels[:, 1:])


def train(tmp_path, trainer_class, loss_type: str | None = None, **options):
    """Three SGD steps of the tiny GPT-2 (float32) by ``trainer_class``."""
    model = tiny_gpt2(torch.float32)
    if loss_type is not None:
        model.loss_type = loss_type
    trainer = trainer_class(
        model=model,
        args=arguments(tmp_path, steps=3),
        train_dataset=sequences(3 * BATCH),
        **options,
    )
    trainer.train()
    return model


def test_training_equals_the_plain_trainer(tmp_path):
    callback = CockpitCallback(logdir=tmp_path, preset="economy")
    tracked = train(tmp_path, CockpitTrainer, callbacks=[callback])
    same_loss = train(tmp_path, transformers.Trainer, compute_loss_func=next_token_loss)
    # GPT2LMHeadModel's class name does not name its loss, so the Trainer would
    # divide its summed token losses by the count of unshifted labels, position 0
    # included; with its loss type named, it counts the predicted tokens, as the
    # model's own forward pass and CockpitTrainer do.
    models_loss = train(tmp_path, transformers.Trainer, loss_type="ForCausalLM")

    run = cockpit.load(callback.run_dir)
    assert run.meta["status"] == "finished"
    assert run.scalar("update_size").index.tolist() == [0, 1, 2]
    for (name, p), q, r in zip(
        tracked.named_parameters(),
        same_loss.parameters(),
        models_loss.parameters(),
        strict=True,
    ):
        # Bit for bit against the same loss untracked; against the model's own
        # loss up to float32 rounding (the cross-entropy's layout differs).
        assert torch.equal(p, q), name
        torch.testing.assert_close(p, r, rtol=1e-5, atol=1e-6, msg=name)


def test_gradient_accumulation_logs_the_whole_accumulated_batch(tmp_path):
    model = tiny_gpt2(torch.float64)
    data = sequences(4 * BATCH)
    # Step 0 is the first two micro-batches in order (sequential sampling), each
    # normalized by its own kept tokens: only the first ignores some labels.
    pieces = [brute_force(model, data[i : i + BATCH]) for i in (0, BATCH)]
    losses = torch.cat([piece[0] for piece in pieces])
    grads = torch.cat([piece[1] for piece in pieces])

    callback = CockpitCallback(
        logdir=tmp_path, preset=None, quantities=["loss", "norm_test", "grad_norm"]
    )
    args = arguments(tmp_path, steps=2)
    args.gradient_accumulation_steps = 2
    args.train_sampling_strategy = "sequential"
    trainer = CockpitTrainer(
        model=model, args=args, train_dataset=data, callbacks=[callback]
    )
    trainer.train()

    run = cockpit.load(callback.run_dir)
    assert run.meta["status"] == "finished"
    assert run.meta["accumulation_steps"] == 2
    assert run.scalar("loss").index.tolist() == [0, 1]
    assert run.scalar("batch_size").tolist() == [2 * BATCH] * 2
    # The Trainer's loss / 2 on equal micro-batches: the step's gradient is the mean
    # of all eight per-sample gradients.
    expected = {
        "loss": losses.mean(),
        "loss.variance": losses.var(),
        "norm_test": reference.norm_test(grads),
        "grad_norm": grads.mean(0).norm(),
    }
    for name, value in expected.items():
        logged = torch.tensor(run.scalar(name).loc[0], dtype=torch.float64)
        torch.testing.assert_close(logged, value, msg=name)


def test_an_epoch_with_a_shorter_accumulation_window_is_refused(tmp_path):
    args = arguments(tmp_path, steps=2)
    args.gradient_accumulation_steps = 2
    trainer = CockpitTrainer(
        model=tiny_gpt2(torch.float32),
        args=args,
        train_dataset=sequences(3 * BATCH),
        callbacks=[CockpitCallback(logdir=tmp_path, preset="economy")],
    )
    with pytest.raises(ConfigurationError, match=r"an epoch has 3 per process"):
        trainer.train()


ROOT = Path(__file__).resolve().parents[2]

#: Two steps of two micro-batches on each of two processes, by ``torch.distributed.run``.
DISTRIBUTED_SCRIPT = """
import gc
import sys
from pathlib import Path

import torch

sys.path.insert(0, {root!r})
from cockpit.integrations.huggingface import CockpitCallback, CockpitTrainer
from tests.integrations.test_huggingface import BATCH, arguments, sequences, tiny_gpt2

out = Path(sys.argv[1])
callback = CockpitCallback(logdir=out / "runs", preset="economy")
args = arguments(out, steps=2)
args.gradient_accumulation_steps = 2
CockpitTrainer(
    model=tiny_gpt2(torch.float32),
    args=args,
    train_dataset=sequences(8 * BATCH),
    callbacks=[callback],
).train()
print(f"rank {{args.process_index}} of {{args.world_size}} writes to {{callback.run_dir}}")
# The Trainer (and the DDP model holding the process group) is gone; destroy the
# group now rather than at interpreter exit, where gloo aborts now and then.
gc.collect()
torch.distributed.destroy_process_group()
"""


def test_two_processes_log_the_global_accumulated_batch_from_rank_zero(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent(DISTRIBUTED_SCRIPT.format(root=str(ROOT))))
    launch = torchrun(2)
    result = run_python([*launch, str(script), str(tmp_path)], tmp_path, timeout=120)
    assert "rank 1 of 2 writes to None" in result.stdout
    (run_dir,) = (tmp_path / "runs").iterdir()  # rank 1 writes nothing
    assert f"rank 0 of 2 writes to {run_dir}" in result.stdout

    run = cockpit.load(run_dir)
    assert run.meta["status"] == "finished"
    assert run.meta["world_size"] == 2
    assert run.meta["accumulation_steps"] == 2
    # Each step: 2 processes x 2 micro-batches x 4 sequences.
    assert run.meta["global_batch_size"] == 4 * BATCH
    assert run.scalar("batch_size").tolist() == [4 * BATCH] * 2
    assert run.scalar("loss").notna().all()


def test_the_callback_without_cockpit_trainer_is_refused(tmp_path):
    trainer = transformers.Trainer(
        model=tiny_gpt2(torch.float32),
        args=arguments(tmp_path, steps=1),
        train_dataset=sequences(BATCH),
        callbacks=[CockpitCallback(logdir=tmp_path)],
    )
    with pytest.raises(ConfigurationError, match="needs CockpitTrainer"):
        trainer.train()


def test_cockpit_trainer_without_the_callback_is_refused(tmp_path):
    with pytest.raises(ConfigurationError, match=r"exactly one CockpitCallback"):
        CockpitTrainer(
            model=tiny_gpt2(torch.float32),
            args=arguments(tmp_path, steps=1),
            train_dataset=sequences(BATCH),
        )


def test_example_writes_a_finished_run(tmp_path, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[2] / "examples"))
    example = importlib.import_module("huggingface_gpt2")
    with torch.random.fork_rng(devices=[]):
        run_dir = example.main(["--steps", "4", "--logdir", str(tmp_path)])
    assert f"Run written to {run_dir}" in capsys.readouterr().out
    run = cockpit.load(run_dir)
    assert run.meta["status"] == "finished"
    # Token ids have no scale; everything else is tracked.
    assert list(run.meta["absent"]) == ["input_scale"]
    assert run.scalar("loss").index.tolist() == [0, 1, 2, 3]
    # Evaluated halfway and at the end, inside the run.
    assert run.scalar("eval_loss").index.tolist() == [1, 3]
    # position_ids spare GPT-2's position embedding the replay.
    assert run.meta["engines"]["torch.func replay"] == {}
