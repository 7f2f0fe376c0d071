"""Bytes per step of a ``full``-preset log, by top-level field.

Run from the repository root::

    .venv/bin/python benchmarks/log_size.py /tmp/log-size
    .venv/bin/python benchmarks/log_size.py /tmp/log-size --steps 50 --problems demo
    .venv/bin/python benchmarks/log_size.py /tmp/log-size --rewrite
    .venv/bin/python benchmarks/log_size.py /tmp/log-size --codecs
    .venv/bin/python benchmarks/log_size.py /tmp/log-size --rewrite --timing

The runs (trained once into ``DIR/<problem>-<steps>``, reused by later calls):

* ``demo``: what ``cockpit demo`` trains, the digits CNN (8 parameter tensors, 9,280
  histogram counts a step) with the ``full`` preset plus ``early_stopping`` and
  ``cabs``, plain SGD, a validation every 50 steps and after the last (a record of its own);
* ``3c3d``: DeepOBS's 3c3d CNN (12 parameter tensors) with the ``full`` preset on
  ``--batch-3c3d`` noise images (the per-sample statistics cost time with the batch,
  the log's size hardly: it is the parameters' histograms and numbers).

``--rewrite`` writes each run's records again, as ``LogReader`` reads them, with this
checkout's ``RunWriter`` into ``DIR/rewritten/<run>``, and measures that: the same
records in the format of this checkout, so two formats compare on one training.

``--codecs`` compares ways to write the runs' histogram counts (their base64 text
where it is binary, bytes per step): ``json_lists``; ``planes_zlib`` (format 2.0,
each histogram's counts as ``uint64`` byte planes, zlib); ``varint_zlib`` (LEB128
varints, zlib); ``sparse_zlib`` (the zero runs' lengths and the nonzero counts as
varints, zlib); ``bits`` (format 3.0's codec, each histogram apart);
``bits_together`` (format 3.0: a histogram with its per-layer ones).

``--timing`` reads each run whole with ``LogReader`` (decoding every line, unpacking
its histograms into lists), 15 times, with ``--rewrite`` alternating with the run as
trained, and reports the median milliseconds per step (``read_ms_per_step``: the run measured,
then the run as trained; the CPU may be shared: the load average comes with it).

Output: one JSON object per run: ``bytes_per_step`` (the size of ``steps.jsonl`` over
the steps, every record of a step counted) and ``by_field``: the bytes per step of
each log key under ``values`` and of each other key of a record (``<notes>``), each
with its key, quotes, colon and comma, largest first; ``<framing>`` is the rest
(braces, ``"values":``, newlines), so the fields add up to the total.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import io
import json
import os
import shutil
import statistics
import time
import zlib
from pathlib import Path

import numpy as np
import orjson

PROBLEMS = ("demo", "3c3d")


def _train_demo(logdir: Path, name: str, steps: int) -> Path:
    import torch

    from cockpit.zoo.demo import DEMO_EXTRA
    from cockpit.zoo.models import digits_cnn
    from cockpit.zoo.training import Settings, run

    torch.manual_seed(0)
    settings = Settings(
        str(logdir), name, steps, preset="full", momentum=0.0, extra=DEMO_EXTRA
    )
    with contextlib.redirect_stdout(io.StringIO()):
        return Path(run(digits_cnn(), settings, "digits_cnn", lambda *_: None))


def _train_3c3d(logdir: Path, name: str, steps: int, batch: int) -> Path:
    import torch
    from torch import nn

    import cockpit
    from cockpit.zoo.models import cnn_3c3d
    from cockpit.zoo.problems import noise_batches

    torch.manual_seed(0)
    model, data = cnn_3c3d(), noise_batches(batch)
    loss_fn = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    ck = cockpit.Cockpit(
        model, loss_fn, optimizer, logdir=logdir, run_name=name, preset="full"
    )
    with ck:
        for step in range(steps):
            inputs, labels = data[step % len(data)]
            optimizer.zero_grad()
            with ck.track():
                loss_fn(model(inputs), labels).backward()
            optimizer.step()
    return ck.run_dir


def trained(folder: Path, problem: str, steps: int, batch: int) -> Path:
    """The run of ``problem``, trained unless ``folder`` holds it finished."""
    name = f"{problem}-{steps}"
    run_dir = folder / name
    meta = run_dir / "meta.json"
    if meta.is_file() and json.loads(meta.read_text())["status"] == "finished":
        return run_dir
    shutil.rmtree(run_dir, ignore_errors=True)
    if problem == "demo":
        return _train_demo(folder, name, steps)
    return _train_3c3d(folder, name, steps, batch)


def rewritten(run_dir: Path, folder: Path) -> Path:
    """``run_dir``'s records written again by this checkout's ``RunWriter``."""
    from cockpit.logs import LogReader, RunWriter

    reader = LogReader(run_dir)
    meta = reader.meta()
    target = folder / run_dir.name
    shutil.rmtree(target, ignore_errors=True)
    kept = {k: v for k, v in meta.items() if k not in ("format_version", "status")}
    with RunWriter(target, kept, columns=False) as writer:
        for record in reader.read_new():
            writer.submit(record)
    return target


def bytes_by_field(path: Path, steps: int) -> dict[str, int]:
    """Bytes per step of each part of ``path``'s lines, as written, largest first.

    Each log key under ``values`` and each other key of a record (``<notes>``),
    with its key, colon and comma; ``<framing>``: the rest.
    """
    found: dict[str, int] = {}
    framing = 0
    for line in path.read_bytes().splitlines():
        record = orjson.loads(line)
        parts = {f"<{k}>": v for k, v in record.items() if k != "values"}
        fields = {**record.get("values", {}), **parts}
        counted = 0
        for key, value in fields.items():
            size = len(orjson.dumps({key.strip("<>"): value})) - 1  # key, colon, comma
            found[key] = found.get(key, 0) + size
            counted += size
        framing += len(line) + 1 - counted
    found["<framing>"] = framing
    ranked = sorted(found.items(), key=lambda item: -item[1])
    return {key: round(size / steps) for key, size in ranked}


def measure(run_dir: Path, steps: int) -> dict:
    """The size of ``run_dir``'s log per step, in all and by field."""
    path = run_dir / "steps.jsonl"
    meta = json.loads((run_dir / "meta.json").read_text())
    return {
        "run": str(run_dir),
        "format_version": meta["format_version"],
        "steps": steps,
        "bytes_per_step": round(path.stat().st_size / steps),
        "by_field": bytes_by_field(path, steps),
    }


def _varints(values: np.ndarray) -> bytes:
    """LEB128: 7 bits a byte, low bits first, the high bit set on all but the last."""
    out = bytearray()
    for value in values.reshape(-1).tolist():
        while value >= 0x80:
            out.append(value & 0x7F | 0x80)
            value >>= 7
        out.append(value)
    return bytes(out)


def _sparse(counts: np.ndarray) -> bytes:
    flat = counts.reshape(-1)
    nonzero = np.flatnonzero(flat)
    gaps = np.diff(nonzero, prepend=-1) - 1
    return _varints(gaps) + _varints(flat[nonzero])


def _planes(counts: np.ndarray) -> bytes:
    return counts.astype("<u8").reshape(-1).view(np.uint8).reshape(-1, 8).T.tobytes()


def codec_bytes(run_dir: Path, steps: int) -> dict[str, int]:
    """Bytes per step of the run's histogram counts in each way of writing them."""
    from cockpit.logs import LogReader
    from cockpit.logs._count_codec import encode_counts

    def text(data: bytes) -> int:
        return len(base64.b64encode(data))

    apart = {
        "json_lists": lambda c: len(orjson.dumps(c.tolist())),
        "planes_zlib": lambda c: text(zlib.compress(_planes(c))),
        "varint_zlib": lambda c: text(zlib.compress(_varints(c))),
        "sparse_zlib": lambda c: text(zlib.compress(_sparse(c))),
        "bits": lambda c: text(encode_counts(c)),
    }
    sizes = dict.fromkeys([*apart, "bits_together"], 0)
    for record in LogReader(run_dir).read_new():
        for value in record["values"].values():
            if not isinstance(value, dict) or "counts" not in value:
                continue
            layers = value.get("per_layer", {}).values()
            family = [np.asarray(h["counts"]) for h in [value, *layers]]
            for name, size in apart.items():
                sizes[name] += sum(size(counts) for counts in family)
            sizes["bits_together"] += text(encode_counts(np.stack(family)))
    return {name: round(size / steps) for name, size in sizes.items()}


def read_times(runs: list[Path], steps: int, repeats: int = 15) -> list[float]:
    """Median milliseconds per step to read each of ``runs`` whole, reads alternating."""
    from cockpit.logs import LogReader

    seconds: list[list[float]] = [[] for _ in runs]
    for _ in range(repeats):
        for times, run_dir in zip(seconds, runs, strict=True):
            start = time.perf_counter()
            LogReader(run_dir).read_new()
            times.append(time.perf_counter() - start)
    return [round(statistics.median(t) / steps * 1e3, 3) for t in seconds]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="where the runs are (or go)")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--problems", nargs="+", choices=PROBLEMS, default=PROBLEMS)
    parser.add_argument("--batch-3c3d", type=int, default=32)
    parser.add_argument(
        "--rewrite",
        action="store_true",
        help="measure the runs' records written again by this checkout's writer",
    )
    parser.add_argument(
        "--codecs", action="store_true", help="compare ways to write the counts"
    )
    parser.add_argument(
        "--timing", action="store_true", help="time reading the runs whole"
    )
    args = parser.parse_args(argv)
    for problem in args.problems:
        run_dir = trained(args.folder, problem, args.steps, args.batch_3c3d)
        runs = [run_dir]
        if args.rewrite:
            run_dir = rewritten(run_dir, args.folder / "rewritten")
            runs.insert(0, run_dir)
        result = measure(run_dir, args.steps)
        if args.codecs:
            result["count_bytes_per_step"] = codec_bytes(run_dir, args.steps)
        if args.timing:
            result["read_ms_per_step"] = read_times(runs, args.steps)
            result["load_average"] = round(os.getloadavg()[0], 1)
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
