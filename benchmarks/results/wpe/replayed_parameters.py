"""Which parameters of the tiny GPT-2, BERT and T5 cases end in the whole-model replay.

Three economy steps of plain SGD per case (``model_matrix.py``'s runs of
``tests/models/cases.py``), then ``meta.json``'s ``torch.func replay`` (parameter ->
why). Run from the ``benchmarks`` folder::

    python results/wpe/replayed_parameters.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(BENCHMARKS), str(BENCHMARKS.parent)]

from model_matrix import _step_times  # noqa: E402

from tests.models.cases import CASES  # noqa: E402

if __name__ == "__main__":
    for case in CASES:
        if case.name in ("gpt2", "bert_mlm", "t5"):
            _, meta = _step_times(case, "economy", 3, tempfile.mkdtemp())
            print(case.name, "replay:", meta["engines"]["torch.func replay"])
