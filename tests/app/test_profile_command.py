"""``cockpit profile``: the CLI verb on the tiny problem and on a user's script."""

from __future__ import annotations

import json
import textwrap

from cockpit.app import cli, profile_command
from cockpit.quantities import PRESETS, REGISTRY
from cockpit.zoo.problems import PROBLEMS


def test_the_parser_names_the_zoo_problems_without_importing_them():
    assert set(profile_command.PROBLEMS) == set(PROBLEMS)
    args = cli.build_parser().parse_args(
        ["profile", "--problem", "tiny", "--steps", "2", "--format", "json"]
    )
    assert (args.problem, args.script, args.steps, args.format) == (
        "tiny",
        None,
        2,
        "json",
    )


def test_tiny_problem_prints_every_quantity_engine_and_preset(capsys):
    argv = ["profile", "--problem", "tiny", "--steps", "1", "--warmup", "0"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    kinds = {}
    for line in lines[2:-1]:
        kind, name = line.split()[:2]
        kinds.setdefault(kind, set()).add(name)
    assert kinds["plain"] == {"plain"}
    assert kinds["quantity"] == set(REGISTRY)
    assert kinds["engine"] == {"per_sample", "curvature"}
    assert kinds["preset"] == set(PRESETS)
    # kfac_block needs BackPACK's curvature, which the tiny MLP has: no absences.
    assert "not tracked" not in out


SCRIPT = """
    import sys
    import torch
    import cockpit
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3))
    loss_fn = nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=float(sys.argv[1]))
    ck = cockpit.Cockpit(model, loss_fn, optimizer, logdir=sys.argv[2])
    for _ in range(3):
        optimizer.zero_grad()
        with ck.track():
            loss_fn(model(torch.randn(8, 4)), torch.randint(0, 3, (8,))).backward()
        optimizer.step()
    ck.close()
    open(sys.argv[2] + "/finished", "w").close()
"""


def test_script_is_profiled_at_its_first_tracked_block(tmp_path, capsys):
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent(SCRIPT))
    # Options go before SCRIPT: everything after it is the script's.
    argv = ["profile", "--format", "json", "--quantities", "loss", "grad_norm"]
    argv += ["--steps", "1", str(script), "0.01", str(tmp_path)]
    args = cli.build_parser().parse_args(argv)
    assert args.script_args == ["0.01", str(tmp_path)]
    assert cli.main(argv) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert [(r["kind"], r["name"]) for r in rows] == [
        ("plain", "plain"),
        ("quantity", "loss"),
        ("quantity", "grad_norm"),
    ]
    assert all(r["ms"] == r["ms"] for r in rows)  # numbers, not NaN
    assert not (tmp_path / "finished").exists()  # stopped at the first block


def test_script_without_a_tracked_block_is_refused(tmp_path, capsys):
    script = tmp_path / "plain.py"
    script.write_text("print('no tracking here')\n")
    assert cli.main(["profile", str(script)]) == 2
    assert "ended without a track() block" in capsys.readouterr().err
