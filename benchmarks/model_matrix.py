"""The library model matrix: which engine handles each model, what it logs, what it costs.

For every case of ``tests/models/cases.py`` (tiny torchvision, Hugging Face, timm and
recurrent models, random weights, batch of 3), trains a few steps of plain SGD with no
Cockpit, with ``preset="economy"`` and with ``preset="business"``, and prints one
Markdown row per model: its parameters, how many parameters each engine handles
(``meta.json``'s ``engines``), the quantities left out (``absent``), and the median
step time of each preset as a ratio to plain training in the same process. The models
are tiny, so the ratios say more about fixed per-layer costs than about the
arithmetic of full-size models (``benchmarks/overhead.py --problems resnet18 gpt2
vit`` has larger ones).

Run from the repository root (about two minutes on an idle 2-core CPU)::

    .venv/bin/python benchmarks/model_matrix.py
    .venv/bin/python benchmarks/model_matrix.py --cases gpt2 resnet18 --steps 8
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path


def _step_times(case, preset: str | None, steps: int, logdir: str):
    import torch

    import cockpit

    model = case.make()
    loss_fn = case.loss()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    ck = None
    if preset is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ck = cockpit.Cockpit(
                model,
                loss_fn,
                optimizer,
                logdir=logdir,
                preset=preset,
                loss_input=case.loss_input,
            )
    times = []
    for batch in case.batches(steps + 2):
        start = time.perf_counter()
        optimizer.zero_grad()
        block = ck.track() if ck is not None else _Untracked()
        with block:
            case.loss_of(loss_fn, batch.forward(model), batch.target).backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    meta = {}
    if ck is not None:
        ck.close()
        meta = json.loads((ck.run_dir / "meta.json").read_text())
    return statistics.median(times[2:]), meta


class _Untracked:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _row(case, steps: int) -> str:
    import logging

    import cockpit.tracker  # noqa: F401  (sets up the engine lines, silenced here)

    logging.getLogger("cockpit").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory() as logdir:
        plain, _ = _step_times(case, None, steps, logdir)
        economy, meta = _step_times(case, "economy", steps, logdir)
        business, meta_b = _step_times(case, "business", steps, logdir)
    engines = meta_b["engines"]
    counts = [
        str(len(engines.get(name, [])))
        for name in ("backpack", "torch.func per module", "torch.func replay")
    ]
    counts.append(str(len(engines.get("batch replay", []))))
    absent = sorted(set(meta.get("absent", {})) | set(meta_b.get("absent", {})))
    params = sum(_numel(shape) for shape in meta["parameters"].values())
    return (
        f"| {case.name} | {params:,} | {' / '.join(counts)} | "
        f"{engines['curvature']} | {', '.join(absent) or '-'} | "
        f"{economy / plain:.1f}x | {business / plain:.1f}x |"
    )


def _numel(shape: list[int]) -> int:
    size = 1
    for dim in shape:
        size *= dim
    return size


def main() -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.models.cases import CASES

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", nargs="*", help="case names (default: all)")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per preset")
    args = parser.parse_args()
    cases = [c for c in CASES if not args.cases or c.name in args.cases]
    print(
        "| model | parameters | tensors by engine: BackPACK / per module / replay / "
        "batch replay | curvature | absent (economy, business) | economy | business |"
    )
    print("|---|---|---|---|---|---|---|")
    for case in cases:
        print(_row(case, args.steps), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
