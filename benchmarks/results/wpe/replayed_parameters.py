"""Which parameters of the tiny GPT-2, BERT and T5 cases end in the whole-model replay.

Three economy steps of plain SGD per case (``tests/models/cases.py``), then the
engine assignment's ``replay`` (parameter -> why). Run from the repository root::

    .venv/bin/python benchmarks/results/wpe/replayed_parameters.py
"""

from __future__ import annotations

import sys
import tempfile
import warnings

import torch

import cockpit

sys.path.insert(0, ".")
from tests.models.cases import CASES

NAMES = ("gpt2", "bert_mlm", "t5")


def replayed(case) -> dict[str, str]:
    """The case's replayed parameters after three tracked economy steps."""
    model, loss_fn = case.make(), case.loss()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ck = cockpit.Cockpit(
            model,
            loss_fn,
            optimizer,
            logdir=tempfile.mkdtemp(),
            preset="economy",
            loss_input=case.loss_input,
        )
        for batch in case.batches(3):
            optimizer.zero_grad()
            with ck.track():
                case.loss_of(loss_fn, batch.forward(model), batch.target).backward()
            optimizer.step()
        ck.close()
    return ck.engines.replay


if __name__ == "__main__":
    for case in CASES:
        if case.name in NAMES:
            print(case.name, "replay:", replayed(case))
