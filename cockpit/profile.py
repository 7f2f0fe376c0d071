"""What each quantity and engine costs on a model: ``cockpit.profile`` and its CLI.

:func:`profile` trains copies of the model for a few steps per configuration, each
from the same weights on the same batches with plain SGD (so every quantity is
defined): plain training, each quantity alone at every step, the quantities sharing
an engine together, and each preset at every step. A configuration's time is the
median wall time of its steps, each timed around ``zero_grad``, forward, backward,
``optimizer.step()`` and the writer's work for the step (``torch.cuda.synchronize``
on a GPU); its memory the peak during the steps above what was held before them
(``max_memory_allocated`` on a GPU; on the CPU the resident set's high-water mark,
``VmHWM`` after resetting it through ``/proc/self/clear_refs``, where Linux allows).

The engines' rows come from the same split as the overhead budget's
(:func:`cockpit.budget.attribute`): the cheapest probe needing an engine prices it.
:func:`profile_script` runs a user's script up to its first ``track()`` block and
profiles the model, loss and batch found there.
"""

from __future__ import annotations

import contextlib
import json
import runpy
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from cockpit import _setup
from cockpit._budget import probe_sets
from cockpit._profile_run import measure_steps
from cockpit.budget import attribute
from cockpit.catalog import ENTRIES
from cockpit.exceptions import UsageError
from cockpit.quantities import PRESETS, REGISTRY
from cockpit.tracker import Cockpit

__all__ = ["ProfileRow", "format_table", "profile", "profile_script", "to_json"]

Batch = tuple[Tensor, Tensor]


@dataclass
class ProfileRow:
    """One configuration's cost.

    Attributes:
        kind: ``"plain"``, ``"quantity"``, ``"engine"``, ``"group"`` or ``"preset"``.
        name: The quantity, engine, preset; a group's quantities joined by ``+``.
        ms: Median wall time per step (``plain``), or the extra over plain.
        ratio: Step time over plain's (1 for ``plain``; ``None`` for engines).
        extra_mb: Peak memory during the steps above what was held before them,
            minus plain's (MB = 10^6 bytes); ``None`` where not measured.
        note: Why a quantity is absent, or which engines it needs.

    """

    kind: str
    name: str
    ms: float
    ratio: float | None
    extra_mb: float | None
    note: str = ""


def profile(
    model: nn.Module,
    loss_fn: nn.Module,
    batches: Sequence[Batch],
    *,
    quantities: Sequence[str] | None = None,
    loss_input: Callable[[Any], Tensor] | None = None,
    steps: int = 3,
    warmup: int = 1,
    engine: str = "auto",
) -> list[ProfileRow]:
    """Time and memory of every quantity, engine and preset on ``model``.

    Args:
        model: The model, on its device; it is copied, never trained.
        loss_fn: The loss module (``reduction`` ``"mean"`` or ``"sum"``).
        batches: ``(inputs, targets)`` pairs on the model's device, used in turn.
        quantities: The quantities to profile; default: all of them.
        loss_input: What the loss gets from the model's output (see ``Cockpit``).
        steps: Timed steps per configuration (the median is reported).
        warmup: Untimed steps per configuration before them.
        engine: The tracker's ``engine`` argument.

    Returns:
        Rows: plain, each quantity alone, each engine, each group of quantities
        sharing engines, each preset.

    """
    if steps < 1 or warmup < 0 or not batches:
        raise UsageError(
            f"profile needs steps >= 1, warmup >= 0 and batches; got steps={steps}, "
            f"warmup={warmup}, {len(batches)} batches."
        )
    names = list(quantities or REGISTRY)
    _setup.resolve_quantities(None, names)  # unknown names fail here, clearly

    def measure(tracking: dict[str, Any] | None) -> tuple[float, float | None, str]:
        if tracking is not None:
            tracking = {"engine": engine, "loss_input": loss_input, **tracking}
        return measure_steps(
            model, loss_fn, batches, tracking, loss_input, (steps, warmup)
        )

    rows = _Rows(*measure(None)[:2])
    uses = _setup.engine_uses({name: REGISTRY[name]() for name in names})
    probes: dict[frozenset[str], float] = {}
    for name in names:
        seconds, peak, absent = measure({"quantities": [name]})
        note = absent or ", ".join(sorted(uses[name])) or "no engine"
        rows.add("quantity", name, seconds, peak, note)
        if not absent:  # an absent quantity's step ran nothing: no price from it
            probes[frozenset({name})] = seconds - rows.plain_s
    tracked = {name: uses[name] for name in names if frozenset({name}) in probes}
    for group in probe_sets(tracked):
        if len(group) > 1:
            members = [name for name in names if name in group]
            seconds, peak, _ = measure({"quantities": members})
            probes[group] = seconds - rows.plain_s
            engines = ", ".join(sorted(tracked[members[0]]))
            rows.add("group", "+".join(members), seconds, peak, f"together: {engines}")
    for engine_name, seconds in attribute(probes, tracked).engine.items():
        rows.rows.append(
            ProfileRow("engine", engine_name, 1e3 * seconds, None, None, "cheapest")
        )
    for preset, held in PRESETS.items():
        if set(held) <= set(names):
            seconds, peak, _ = measure({"quantities": dict.fromkeys(held, 1)})
            rows.add("preset", preset, seconds, peak, "every step")
    return rows.rows


class _Rows:
    """The profile's rows, each against plain training's time and peak memory."""

    def __init__(self, plain_s: float, plain_peak: float | None):
        self.plain_s = plain_s
        self.plain_peak = plain_peak
        self.rows = [ProfileRow("plain", "plain", 1e3 * plain_s, 1.0, 0.0)]

    def add(self, kind: str, name: str, seconds: float, peak: float | None, note: str):
        """A row of ``seconds`` per step and ``peak`` bytes, as extras over plain."""
        extra = None
        if peak is not None and self.plain_peak is not None:
            extra = (peak - self.plain_peak) / 1e6
        ms = 1e3 * (seconds - self.plain_s)
        self.rows.append(
            ProfileRow(kind, name, ms, seconds / self.plain_s, extra, note)
        )


class _Captured(Exception):  # noqa: N818 - not an error: the script is done
    """Raised out of the script's first ``track()`` block with what it used."""

    def __init__(self, ck: Cockpit, batch: Batch):
        super().__init__("captured")
        self.ck = ck
        self.batch = batch


@contextlib.contextmanager
def _capturing() -> Iterator[None]:
    """Make ``Cockpit.track`` run its first block plainly, then stop the script."""
    original = Cockpit.track

    @contextlib.contextmanager
    def track(ck: Cockpit) -> Iterator[None]:
        seen: dict[str, Any] = {}

        def inputs(module, args):
            seen.setdefault("x", args[0] if len(args) == 1 else None)

        def target(module, args):
            seen.setdefault("y", args[1] if len(args) > 1 else None)

        handles = [
            ck.model.register_forward_pre_hook(inputs),
            ck.loss_fn.register_forward_pre_hook(target),
        ]
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()
        if seen.get("x") is None or seen.get("y") is None:
            raise UsageError(
                "cockpit profile needs the model called with one input tensor and "
                "the loss module with (output, target) inside the first track() "
                "block; found neither pattern. Call cockpit.profile(...) yourself "
                "with your batches instead."
            )
        raise _Captured(ck, (seen["x"].detach(), seen["y"].detach()))

    Cockpit.track = track  # type: ignore[method-assign]
    try:
        yield
    finally:
        Cockpit.track = original  # type: ignore[method-assign]


def profile_script(
    script: str | Path, argv: Sequence[str] = (), **options: Any
) -> list[ProfileRow]:
    """Run ``script`` until its first ``track()`` block, then :func:`profile` it.

    The script runs as ``__main__`` with ``sys.argv = [script, *argv]``; its first
    ``Cockpit``'s model, loss module and ``loss_input`` and the block's batch are
    profiled, and the script stops there.

    Raises:
        UsageError: If the script ends without a ``track()`` block.

    """
    saved = sys.argv
    sys.argv = [str(script), *argv]
    try:
        with _capturing():
            runpy.run_path(str(script), run_name="__main__")
    except _Captured as found:
        ck = found.ck
        loss_input = None if ck.func.automatic else ck.func.loss_input
        ck.close()
        return profile(
            ck.model, ck.loss_fn, [found.batch], loss_input=loss_input, **options
        )
    finally:
        sys.argv = saved
    raise UsageError(
        f"{script} ended without a track() block of a cockpit.Cockpit, so there was "
        "nothing to profile. Profile a script whose loop tracks its steps."
    )


def to_json(rows: list[ProfileRow]) -> str:
    """The rows as one JSON object ``{"rows": [...]}``."""
    return json.dumps({"rows": [asdict(r) for r in rows]}, indent=2)


def format_table(rows: list[ProfileRow]) -> str:
    """The rows as a plain text table, titles from the quantity catalogue."""
    header = f"{'kind':9s}{'name':44s}{'ms/step':>10s}{'x plain':>9s}{'+MB':>9s}  note"
    lines = [header, "-" * len(header)]
    for r in rows:
        ratio = "" if r.ratio is None else f"{r.ratio:.2f}"
        memory = "" if r.extra_mb is None else f"{r.extra_mb:.1f}"
        title = ENTRIES[r.name].title if r.name in ENTRIES else ""
        name = (
            f"{r.name} ({title})" if title and len(r.name) + len(title) < 40 else r.name
        )
        lines.append(
            f"{r.kind:9s}{name[:43]:44s}{r.ms:10.2f}{ratio:>9s}{memory:>9s}  {r.note}"
        )
    lines.append(
        "ms/step: plain's step, else the extra over plain; engines: priced by the "
        "cheapest probe needing them."
    )
    return "\n".join(lines)
