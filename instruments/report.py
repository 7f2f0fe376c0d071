"""The static report: every instrument of one run as a matplotlib figure.

For papers and machines without a browser (``cockpit report RUN_DIR -o cockpit.png``):
the dashboard's groups in its order (step size, gradients, curvature, performance,
overhead), each panel drawn by its instrument's ``draw_report`` with its title, the
newest value, and the same one-line "how to read it" as the dashboard, taken from the
instrument class. A panel whose quantity the run did not log shows the dashboard's
placeholder text naming the quantity and the preset that fills it. Figures are drawn without pyplot on matplotlib's Agg canvas, so
no display is needed.

Example::

    from cockpit.instruments.report import write_report

    write_report("runs/my-run", "cockpit.pdf")
"""

from __future__ import annotations

import io
import os
import textwrap
from pathlib import Path

import matplotlib as mpl
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure, SubFigure

from cockpit.instruments import GROUPS, REGISTRY
from cockpit.instruments._base import Instrument
from cockpit.instruments._data import RunData
from cockpit.instruments._reading import bar, read_run
from cockpit.instruments._report_alerts import diagnosis_height, draw_diagnosis
from cockpit.instruments._view import View

__all__ = [
    "FORMATS",
    "check_output",
    "report_figure",
    "save",
    "write_report",
]

FORMATS = ("png", "pdf", "svg")
"""Output formats, chosen by the file extension."""

_COLUMNS = 3
_CELL_WIDTH = 6.2  # inches
_CELL_HEIGHT = 4.6
_GROUP_TITLE = 0.4
_HEADER = 0.7
_CAPTION_SIZE = 8
_Segment = tuple[str, list[str], bool]  # group id, instrument ids, opens the group


def layout(columns: int = _COLUMNS) -> list[list[_Segment]]:
    """The report's rows: each group's instruments, at most ``columns`` per row.

    A group that fits whole into the free cells of the row before it shares that row.
    """
    rows: list[list[_Segment]] = []
    for group, (_, ids) in GROUPS.items():
        chunks = [list(ids[i : i + columns]) for i in range(0, len(ids), columns)]
        free = columns - sum(len(cells) for _, cells, _ in rows[-1]) if rows else 0
        if len(chunks) == 1 and len(chunks[0]) <= free:
            rows[-1].append((group, chunks[0], True))
            continue
        rows += [[(group, chunk, i == 0)] for i, chunk in enumerate(chunks)]
    return rows


def _wrap(text: str, width_inches: float, size: float) -> str:
    """Wrap ``text`` to lines that fit ``width_inches`` at font ``size`` points."""
    # A character of DejaVu Sans is about 0.55 em wide on average; 5 % margins.
    return textwrap.fill(text, width=int(0.95 * width_inches * 72 / (0.55 * size)))


def _placeholder(cell: SubFigure, text: str, width_inches: float) -> None:
    """A framed empty plot that says which quantity is missing and how to fill it."""
    ax = cell.subplots()
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_facecolor("#f6f6f6")
    for spine in ax.spines.values():
        spine.set(ls="--", color="0.7")
    lines = [_wrap(part, 0.8 * width_inches, 10) for part in text.split(". ")]
    ax.text(
        0.5,
        0.5,
        ".\n".join(lines),
        transform=ax.transAxes,
        ha="center",
        va="center",
        fontsize=10,
        color="0.3",
    )


def _cell(
    cell: SubFigure, inst: Instrument, run: RunData, view: View, width: float
) -> None:
    cell.suptitle(inst.title, x=0.02, ha="left", fontsize=11, fontweight="bold")
    cell.supxlabel(
        _wrap(inst.how_to_read, width, _CAPTION_SIZE),
        x=0.02,
        ha="left",
        fontsize=_CAPTION_SIZE,
        style="italic",
        color="0.3",
    )
    if inst.available(run):
        inst.draw_report(cell, run, view)
    else:
        _placeholder(cell, inst.missing_text([run]), width)


def _header(figure: Figure, run: RunData) -> None:
    meta = run.meta
    optimizer = meta.get("optimizer")
    parts = [
        f"preset {meta.get('preset')}" if "preset" in meta else "",
        f"model {meta['model']}" if meta.get("model") else "",
        f"optimizer {optimizer['type']}" if isinstance(optimizer, dict) else "",
        f"last step {run.last_step}" if run.last_step is not None else "no steps",
        f"status {meta['status']}" if meta.get("status") else "",
    ]
    figure.suptitle(
        f"cockpit report: {run.name}\n" + " · ".join(p for p in parts if p),
        x=0.005,
        ha="left",
        fontsize=15,
        fontweight="bold",
        linespacing=1.5,
    )


def report_figure(
    run: RunData, view: View | None = None, progress: bool = False
) -> Figure:
    """Every instrument of ``run`` drawn into one figure, below its diagnosis.

    Args:
        run: The run.
        view: Step range and scales; default the whole run with each panel's scale.
        progress: Show a progress bar of the panels drawn on a terminal.

    Returns:
        The figure, on an Agg canvas.

    """
    view = view or View(max_points=4000)
    rows = layout()
    heights = [_CELL_HEIGHT + _GROUP_TITLE * any(s[2] for s in row) for row in rows]
    heights = [diagnosis_height(run), *heights]
    figure = Figure(
        figsize=(_COLUMNS * _CELL_WIDTH, _HEADER + sum(heights)), layout="constrained"
    )
    FigureCanvasAgg(figure)
    _header(figure, run)
    subfigures = figure.subfigures(
        len(heights), 1, height_ratios=heights, squeeze=False
    )
    draw_diagnosis(subfigures[0, 0], run)
    total = sum(len(cells) for row in rows for _, cells, _ in row)
    with bar(total, "drawing", progress, "panel") as shown:
        for row, sub in zip(rows, subfigures[1:, 0], strict=True):
            width = _COLUMNS * _CELL_WIDTH / sum(len(cells) for _, cells, _ in row)
            ratios = [len(cells) for _, cells, _ in row]
            segments = sub.subfigures(1, len(row), width_ratios=ratios, squeeze=False)
            for (group, ids, opens), segment in zip(row, segments[0], strict=True):
                if opens:
                    segment.suptitle(
                        GROUPS[group][0],
                        x=0.005,
                        ha="left",
                        fontsize=14,
                        color="#2a3f5f",
                    )
                cells = segment.subfigures(1, len(ids), squeeze=False)[0]
                for inst_id, cell in zip(ids, cells, strict=True):
                    _cell(cell, REGISTRY[inst_id](), run, view, width)
                    shown.update()
    return figure


def check_output(path: str | os.PathLike[str]) -> str:
    """The format of an output file from its extension, checked before drawing.

    Returns:
        One of :data:`FORMATS`.

    Raises:
        ValueError: If the extension is not one of :data:`FORMATS`.
        OSError: If ``path`` is a directory or its directory does not exist.

    """
    path = Path(path)
    form = path.suffix.lower().lstrip(".")
    if form not in FORMATS:
        choices = ", ".join(f".{f}" for f in FORMATS)
        raise ValueError(
            f"Unknown output extension {path.suffix or '(none)'!r} in {path}. "
            f"Choose one of: {choices}."
        )
    if path.is_dir():
        raise IsADirectoryError(
            f"Cannot write {path}: it is a directory. Name a file, e.g. "
            f"{path / 'cockpit.png'}."
        )
    if not path.parent.is_dir():
        raise NotADirectoryError(
            f"Cannot write {path}: {path.parent} is not a directory. Create it, or "
            "choose another output path."
        )
    return form


def save(figure: Figure, path: str | os.PathLike[str], dpi: int = 150) -> Path:
    """Write ``figure`` to ``path`` in the format its extension names.

    PDF and SVG keep their text as text (TrueType in PDF), so it stays searchable
    and editable for a paper.

    Raises:
        ValueError: If the extension is not one of :data:`FORMATS`.
        OSError: If the file cannot be written.

    """
    path = Path(path)
    form = check_output(path)
    buffer = io.BytesIO()
    with mpl.rc_context({"pdf.fonttype": 42, "svg.fonttype": "none"}):
        figure.savefig(buffer, format=form, dpi=dpi, facecolor="white")
    try:
        path.write_bytes(buffer.getvalue())
    except OSError as err:
        raise OSError(f"Cannot write {path}: {err.strerror or err}.") from err
    return path


def write_report(
    run_dir: str | os.PathLike[str],
    output: str | os.PathLike[str],
    dpi: int = 150,
    progress: bool = False,
) -> Path:
    """Read a run and write its report to ``output`` (``.png``, ``.pdf``, ``.svg``).

    Args:
        run_dir: The run directory.
        output: The file to write; its extension picks the format.
        dpi: Resolution of PNGs (and of the heat maps inside PDF and SVG).
        progress: Show progress bars for reading and drawing on a terminal.

    Returns:
        ``output`` as a path.

    Raises:
        LogFormatError: If ``run_dir`` is not a run directory this cockpit can read.
        ValueError: If the extension is not one of :data:`FORMATS`.
        OSError: If ``output`` cannot be written.

    """
    check_output(output)
    figure = report_figure(read_run(run_dir, progress), progress=progress)
    return save(figure, output, dpi)
