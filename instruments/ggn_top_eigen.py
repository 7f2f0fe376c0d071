"""The top GGN eigenvalues and the noise of curvature and slope along them."""

from __future__ import annotations

from typing import TYPE_CHECKING

import plotly.graph_objects as go

from cockpit.instruments._base import Instrument
from cockpit.instruments._data import RunData, Series
from cockpit.instruments._figures import (
    add_series,
    color,
    header,
    hline,
    new_figure,
    set_axes,
)
from cockpit.instruments._report_axes import (
    COLORS,
    STYLES,
    legend,
    newest_text,
    note,
    plot_series,
    reference,
    set_log_y,
    step_axis,
    subtitle,
)
from cockpit.instruments._view import View
from cockpit.presets import how_to_fill

if TYPE_CHECKING:
    from matplotlib.figure import SubFigure

__all__ = ["GgnTopEigenGauge"]

_DASHES = ("solid", "dash", "dot", "dashdot", "longdash", "longdashdot")
_SNRS = (("curvature_snr", "curvature", "circle"), ("slope_snr", "slope", "diamond"))


def directions(run: RunData, prefix: str) -> list[str]:
    """The direction labels ``"1", "2", ...`` logged under ``prefix``, in order.

    Other keys beside them (the Lanczos solver's ``iterations``, ...) are no
    directions.
    """
    found = [
        q[len(prefix) + 1 :] for q in run.quantities() if q.startswith(prefix + ".")
    ]
    return sorted((k for k in found if k.isdigit()), key=int)


class GgnTopEigenGauge(Instrument):
    """``ggn_top_eigen`` over steps, and the newest ``curvature_noise`` SNRs.

    Top: each of the k largest GGN eigenvalues (one dash style per direction).
    Bottom: for each direction, the signal-to-noise ratio of the per-sample
    curvatures (circles) and slopes (diamonds) along it, with the line at 1.
    """

    id = "ggn_top_eigen"
    title = "Curvature directions and their noise"
    quantities = ("ggn_top_eigen", "curvature_noise")
    log_y = True
    height = 480

    def draw(self, runs: list[RunData], view: View) -> go.Figure:
        figure = new_figure(
            2,
            1,
            vertical_spacing=0.2,
            row_heights=[0.6, 0.4],
            subplot_titles=("", "newest SNR per direction"),
        )
        newest: list[tuple[str, Series]] = []
        for index, run in enumerate(runs):
            for k, dash in zip(directions(run, "ggn_top_eigen"), _DASHES, strict=False):
                shown = add_series(
                    figure,
                    run.series(f"ggn_top_eigen.{k}"),
                    view,
                    name=f"{run.name} λ{k}",
                    index=index,
                    group=run.name,
                    cell=(1, 1),
                    dash=dash,
                )
                if k == "1":
                    newest.append((run.name, shown))
            self._snrs(figure, run, index, view)
        log = self.log_y_for(view)
        set_axes(figure, view, log, (1, 1), y_title="GGN eigenvalue", x_title=False)
        figure.update_xaxes(title_text="direction", type="category", row=2, col=1)
        figure.update_yaxes(
            title_text="SNR", type="log" if log else "linear", row=2, col=1
        )
        hline(figure, 1.0, "SNR 1", (2, 1))
        if not any(run.has("curvature_noise") for run in runs):
            hint = how_to_fill("curvature_noise")
            figure.add_annotation(
                text=f"No curvature_noise logged: {hint[0].lower()}{hint[1:]}",
                xref="x2 domain",
                yref="y2 domain",
                x=0.5,
                y=0.5,
                showarrow=False,
            )
        figure.update_layout(title_text=header(self.title + ": λ1", newest))
        return figure

    def draw_report(self, cell: SubFigure, run: RunData, view: View) -> None:
        """The top GGN eigenvalues over steps; the newest SNRs along each direction."""
        top, bottom = cell.subplots(2, 1, height_ratios=[3, 2])
        first = None
        for line_color, style, k in zip(
            COLORS, STYLES, directions(run, "ggn_top_eigen"), strict=False
        ):
            shown = plot_series(
                top,
                run.series(f"ggn_top_eigen.{k}"),
                view,
                label=f"λ{k}",
                color=line_color,
                style=style,
            )
            first = first if first is not None else shown
        top.set_ylabel("GGN eigenvalue", fontsize=8)
        set_log_y(top, self.log_y_for(view))
        legend(top)
        step_axis(top, view)
        subtitle(top, newest_text(first, label="λ1") if first is not None else "")
        for line_color, (key, label, symbol) in zip(COLORS, _SNRS, strict=False):
            prefix = f"curvature_noise.{key}"
            series = [
                (k, run.series(f"{prefix}.{k}").between(*view.steps))
                for k in directions(run, prefix)
            ]
            latest = [(k, s.values[-1]) for k, s in series if len(s)]
            marker = "o" if symbol == "circle" else "D"
            bottom.plot(
                [k for k, _ in latest],
                [v for _, v in latest],
                marker,
                color=line_color,
                ms=6,
                label=f"{label} SNR",
            )
        bottom.set_xlabel("direction", fontsize=8)
        bottom.set_ylabel("SNR", fontsize=8)
        if run.has("curvature_noise"):
            reference(bottom, 1.0, "SNR 1")
            set_log_y(bottom, self.log_y_for(view))
            legend(bottom)
            subtitle(bottom, "newest SNR per direction")
        else:
            note(bottom, f"No curvature_noise logged. {how_to_fill('curvature_noise')}")

    @staticmethod
    def _snrs(figure: go.Figure, run: RunData, index: int, view: View) -> None:
        for key, label, symbol in _SNRS:
            prefix = f"curvature_noise.{key}"
            ks = directions(run, prefix)
            values = [run.series(f"{prefix}.{k}").between(*view.steps) for k in ks]
            points = [
                (k, s.values[-1]) for k, s in zip(ks, values, strict=True) if len(s)
            ]
            if not points:
                continue
            figure.add_trace(
                go.Scatter(
                    x=[k for k, _ in points],
                    y=[v for _, v in points],
                    mode="markers",
                    marker={"symbol": symbol, "size": 10, "color": color(index)},
                    name=f"{run.name} {label} SNR",
                    legendgroup=run.name,
                    hovertemplate="direction %{x}: %{y:.3g}<extra>"
                    + label
                    + "</extra>",
                ),
                row=2,
                col=1,
            )
