"""The records: the demo CNN's real log lines, repeated into runs of any length."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Any

META_KEYS = ("format_version", "status", "start_time", "end_time")


def template_records(steps: int, folder: Path) -> tuple[list[dict[str, Any]], dict]:
    """Train the demo CNN with the economy preset; its records and ``meta.json``."""
    import torch

    from cockpit.logs import LogReader
    from cockpit.zoo.models import digits_cnn
    from cockpit.zoo.training import Settings, run

    torch.manual_seed(0)
    settings = Settings(str(folder), "template", steps, valid_every=10)
    with contextlib.redirect_stdout(io.StringIO()):
        run_dir = run(digits_cnn(), settings, "digits_cnn", lambda *_: None)
    reader = LogReader(run_dir)
    return reader.read_new(), reader.meta()


def repeated(templates: list[dict[str, Any]], period: int, steps: int) -> list[dict]:
    """The template records repeated with shifted steps, up to step ``steps - 1``."""
    out = []
    for offset in range(0, steps, period):
        out.extend(
            {**record, "step": record["step"] + offset}
            for record in templates
            if record["step"] + offset < steps
        )
    return out


def write_run(run_dir: Path, meta: dict, records: list[dict], close: bool = True):
    """Write ``records`` with the real writer; returns it (open unless ``close``)."""
    from cockpit.logs import RunWriter

    kept = {k: v for k, v in meta.items() if k not in META_KEYS}
    writer = RunWriter(run_dir, {**kept, "run_name": run_dir.name})
    for record in records:
        writer.submit(record)
    writer.flush()
    if close:
        writer.close()
    return writer
