"""The digits examples run end to end and write a readable, finished run."""

from __future__ import annotations

import importlib
import subprocess
from pathlib import Path
from types import ModuleType

import pytest
import torch

import cockpit
from tests.scripts import run_python

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
NAMES = ["digits_mlp", "digits_cnn", "resnet_digits"]


@pytest.fixture(params=NAMES)
def example(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch):
    """The example module, imported as its script imports its sibling ``_digits``."""
    monkeypatch.syspath_prepend(str(EXAMPLES))
    return importlib.import_module(request.param)


def run_main(module: ModuleType, argv: list[str], capsys) -> tuple[Path, str]:
    """Run ``module.main(argv)`` without touching the global random state.

    Returns:
        The run directory named by the "Run written to" line, and the whole output.

    """
    with torch.random.fork_rng(devices=[]):
        returned = module.main(argv)
    out = capsys.readouterr().out
    written = [line for line in out.splitlines() if line.startswith("Run written to ")]
    assert len(written) == 1, out
    run_dir = Path(written[0].removeprefix("Run written to "))
    assert run_dir == returned
    return run_dir, out


def steps(run: cockpit.Run, quantity: str) -> list[int]:
    return run.scalar(quantity).index.tolist()


def test_example_writes_a_finished_run(example, tmp_path, capsys):
    argv = ["--steps", "6", "--valid-every", "3", "--logdir", str(tmp_path)]
    run_dir, out = run_main(example, argv, capsys)

    assert run_dir.is_dir()
    assert run_dir.parent == tmp_path
    run = cockpit.load(run_dir)
    assert run.meta["status"] == "finished"
    assert run.meta["preset"] == "economy"
    assert run.meta["config"]["example"] == example.NAME
    assert run.meta["absent"] == {}
    assert run.errors == []
    assert steps(run, "loss") == list(range(6))
    assert steps(run, "grad_norm") == list(range(6))
    # Alpha of step t needs step t + 1, so the last step has none.
    assert steps(run, "alpha") == list(range(5))
    assert sorted(set(run.histograms["quantity"])) == ["grad_hist_1d"]
    # Validation every 3 steps and after the last one.
    accuracy = run.scalar("valid_accuracy")
    assert accuracy.index.tolist() == [0, 3, 5]
    assert accuracy.between(0.0, 1.0).all()
    assert run.scalar("valid_loss").gt(0).all()
    assert "Final train loss" in out.splitlines()[-1]


@pytest.fixture(params=["digits_mlp", "digits_cnn"])
def chain_example(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch):
    """An example whose model BackPACK's second order handles (kfac_block too)."""
    monkeypatch.syspath_prepend(str(EXAMPLES))
    return importlib.import_module(request.param)


def test_full_preset_every_second_step(chain_example, tmp_path, capsys):
    example = chain_example
    # A small histogram sample keeps the 2D histograms cheap on a CPU.
    argv = [
        "--steps",
        "6",
        "--preset",
        "full",
        "--every",
        "2",
        "--logdir",
        str(tmp_path),
    ]
    run_dir, _ = run_main(example, [*argv, "--hist-samples", "4096"], capsys)

    run = cockpit.load(run_dir)
    assert run.meta["status"] == "finished"
    assert run.meta["preset"] == "full"
    assert run.meta["hist_samples"] == 4096
    assert run.errors == []
    assert steps(run, "loss") == [0, 2, 4]
    # Alpha tracks the step after each of its own as well.
    assert steps(run, "alpha") == [0, 2, 4]
    histograms = run.histograms
    for name in ("grad_hist_1d", "grad_hist_2d"):
        logged = histograms[histograms["quantity"] == name]["step"]
        assert sorted(logged.unique()) == [0, 2, 4], name


def test_same_seed_same_run(tmp_path, capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLES))
    module = importlib.import_module("digits_mlp")
    argv = ["--steps", "3", "--logdir", str(tmp_path), "--run-name"]
    runs = [cockpit.load(run_main(module, [*argv, name], capsys)[0]) for name in "ab"]
    assert runs[0].scalar("loss").tolist() == runs[1].scalar("loss").tolist()


def test_rejects_bad_arguments(example, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        example.main(["--every", "0", "--logdir", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "--every must be >= 1" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def run_script(script: str, args: list[str]) -> subprocess.CompletedProcess:
    """Run an example as a script with warnings as errors; it must succeed."""
    return run_python(["-W", "error", f"examples/{script}", *args], ROOT, 300)


def test_mlp_runs_as_a_script(tmp_path):
    result = run_script("digits_mlp.py", ["--steps", "3", "--logdir", str(tmp_path)])
    written = [
        line
        for line in result.stdout.splitlines()
        if line.startswith("Run written to ")
    ]
    assert len(written) == 1, result.stdout
    run_dir = Path(written[0].removeprefix("Run written to "))
    assert run_dir.parent == tmp_path
    assert cockpit.load(run_dir).meta["status"] == "finished"


def test_resnet_business_preset_has_curvature_by_torch_func(
    tmp_path, capsys, monkeypatch
):
    monkeypatch.syspath_prepend(str(EXAMPLES))
    module = importlib.import_module("resnet_digits")
    argv = ["--steps", "3", "--preset", "business", "--logdir", str(tmp_path)]
    run = cockpit.load(run_main(module, argv, capsys)[0])
    assert run.meta["status"] == "finished"
    engines = run.meta["engines"]
    assert engines["curvature"] == "torch.func"
    assert any("GroupNorm" in why for why in engines["torch.func per module"].values())
    assert "0.weight" in engines["backpack"]
    for name in ("hess_trace", "tic_diag", "tic_trace", "norm_test"):
        assert steps(run, name) == [0, 1, 2], name
    assert run.scalar("hess_trace").gt(0).all()


TRANSFORMER_ARGS = [
    "--steps",
    "3",
    "--characters",
    "5000",
    "--context",
    "16",
    "--width",
    "16",
    "--layers",
    "1",
    "--batch-size",
    "4",
]


def test_char_transformer_runs_as_a_script(tmp_path):
    """A few steps of the transformer with the business preset, warnings as errors."""
    result = run_script(
        "char_transformer.py", [*TRANSFORMER_ARGS, "--logdir", str(tmp_path)]
    )
    assert "torch.func per module for" in result.stderr  # the engine line
    (run_dir,) = tmp_path.iterdir()
    run = cockpit.load(run_dir)
    assert run.meta["status"] == "finished"
    assert run.meta["preset"] == "business"
    # Character ids have no scale; everything else is tracked.
    assert list(run.meta["absent"]) == ["input_scale"]
    assert "token ids" in run.meta["absent"]["input_scale"]
    engines = run.meta["engines"]
    assert (
        engines["torch.func per module"]["tok.weight"] == "shared by modules tok, head"
    )
    assert engines["torch.func replay"] == {}
    assert engines["curvature"] == "torch.func"
    for name in ("loss", "grad_norm", "norm_test", "hess_trace", "tic_diag"):
        assert steps(run, name) == [0, 1, 2], name
    assert run.scalar("hess_trace").gt(0).all()
    layers = set(run.scalars.query("quantity == 'norm_test'")["layer"].dropna())
    assert {"tok.weight", "ln.weight", "blocks.0.attn.qkv.weight"} <= layers


def test_example_runs_are_healthy(example, tmp_path, capsys):
    """60 steps of each example raise no warning or error (notes may be logged)."""
    from cockpit.diagnosis import diagnose, is_holding

    argv = ["--steps", "60", "--valid-every", "60", "--logdir", str(tmp_path)]
    run_dir, _ = run_main(example, argv, capsys)
    holding = [a for a in diagnose(run_dir) if is_holding(a)]
    assert holding == []
