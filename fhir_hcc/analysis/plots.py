"""Journal-style figures: Kaplan-Meier curves with censor marks and a number-at-risk table under
the axis (at the start of each interval, T >= t, as R), the cumulative incidence overall and by
group; with the flow diagram and the forest plot (diagrams.py), as 300-dpi PNG, SVG and PDF.

Uses matplotlib's object API on the Agg canvas: no pyplot, no display, no global state.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter

from fhir_hcc.analysis.compare import FACTORS
from fhir_hcc.analysis.competing import aalen_johansen
from fhir_hcc.analysis.km import fit_kaplan_meier, number_at_risk, survival_steps
from fhir_hcc.analysis.labels import ORIGIN_NAMES, level_name

if TYPE_CHECKING:
    from fhir_hcc.analysis.compare import LogRankTest
    from fhir_hcc.analysis.competing import GrayTest
    from fhir_hcc.analysis.result import AnalysisResult

DPI = 300
FORMATS = ("png", "svg", "pdf")
# No creation dates or tool versions inside the files: the same figure gives the same bytes.
_METADATA = {
    "png": {"Software": None},
    "svg": {"Date": None, "Creator": None},
    "pdf": {"CreationDate": None, "Creator": None, "Producer": None},
}
COLORS = ("#000000", "#7a7a7a", "#1f5fa8", "#b2182b")
LINESTYLES = ("-", "--", "-.", ":")
_AXES_HEIGHT = 3.6  # inches; the at-risk table adds a header and one line per row
_ROW_HEIGHT = 0.2


@dataclass(frozen=True)
class Curve:
    """A step curve from (0, start) through (time, value) at each step."""

    label: str
    steps: pd.DataFrame  # index time; column `value`, optional `lower` and `upper`
    start: float
    censored_at: np.ndarray = field(default_factory=lambda: np.array([]))
    color: str = COLORS[0]
    linestyle: str = "-"
    band: str = ""  # legend label of a shaded confidence band; empty for none


@dataclass(frozen=True)
class AtRiskRow:
    label: str
    durations: pd.Series
    color: str = COLORS[0]


def draw_figures(result: AnalysisResult) -> dict[str, Figure]:
    """Every figure of the report, keyed by name (labels.FIGURES), in report order."""
    from fhir_hcc.analysis.diagrams import flow_figure, forest_figure

    figures = {"flow_diagram": flow_figure(result)} if result.flow else {}
    figures |= {
        "overall_survival": survival_figure(result, "os", "Overall survival (%)"),
        "recurrence_free_survival": survival_figure(result, "rfs", "Recurrence-free survival (%)"),
        "cumulative_incidence": incidence_figure(result),
        "overall_survival_by_treatment_group": group_figure(result, "treatment_group", "os"),
        "recurrence_free_survival_by_treatment_group": group_figure(
            result, "treatment_group", "rfs"
        ),
        "cumulative_incidence_by_treatment_group": incidence_group_figure(
            result, "treatment_group"
        ),
        "forest_plot": forest_figure(result),
    }
    return figures


def figure_bytes(figure: Figure, fmt: str = "png") -> bytes:
    buffer = io.BytesIO()
    FigureCanvasAgg(figure)  # attaches the Agg canvas: no pyplot, no display
    if fmt == "svg":
        with matplotlib.rc_context({"svg.hashsalt": "fhir-hcc"}):  # stable element ids
            figure.savefig(buffer, format=fmt, metadata=_METADATA[fmt])
    else:
        figure.savefig(buffer, format=fmt, dpi=DPI, metadata=_METADATA[fmt])
    return buffer.getvalue()


def survival_figure(result: AnalysisResult, outcome: str, ylabel: str) -> Figure:
    km = result.overall_survival if outcome == "os" else result.recurrence_free_survival
    durations = result.times[f"{outcome}_months"]
    events = result.times[f"{outcome}_event"]
    band = _band_label(result)
    curve = _survival_curve("Kaplan-Meier estimate", km.steps, durations, events, band=band)
    figure, axes = step_figure(result, [curve], ylabel, [AtRiskRow("", durations)])
    axes.legend(frameon=False, fontsize=8, loc="lower left")
    return figure


def incidence_figure(result: AnalysisResult) -> Figure:
    incidence = result.cumulative_incidence
    curves = [
        Curve("Recurrence", _incidence_steps(incidence.table, 1), 0.0, band=_band_label(result)),
        Curve(
            "Death without recurrence (competing event)",
            _incidence_steps(incidence.table, 2),
            0.0,
            color=COLORS[1],
            linestyle="--",
        ),
        Curve(
            "1 - Kaplan-Meier, deaths censored (overestimates; comparison only)",
            pd.DataFrame({"value": 1 - incidence.naive.steps["survival"]}),
            0.0,
            color=COLORS[1],
            linestyle=":",
        ),
    ]
    rows = [AtRiskRow("", result.times["rfs_months"])]
    figure, axes = step_figure(result, curves, "Cumulative incidence (%)", rows)
    axes.legend(frameon=False, fontsize=8, loc="upper left")
    return figure


def group_figure(result: AnalysisResult, factor: str, outcome: str) -> Figure:
    """Overall ("os") or recurrence-free ("rfs") survival by the levels of a factor, with the
    log-rank p-value."""
    times = result.times
    duration, event = f"{outcome}_months", f"{outcome}_event"
    curves, rows = [], []
    for index, (level, group) in enumerate(_groups(times, factor)):
        name = level_name(level)
        color, linestyle = COLORS[index % len(COLORS)], LINESTYLES[index % len(LINESTYLES)]
        label = f"{name} (n = {result.count(len(group))})"
        steps = survival_steps(fit_kaplan_meier(group[duration], group[event], level))
        curves.append(
            _survival_curve(label, steps, group[duration], group[event], color, linestyle)
        )
        rows.append(AtRiskRow(name, group[duration], color))
    ylabel = "Overall survival (%)" if outcome == "os" else "Recurrence-free survival (%)"
    figure, axes = step_figure(result, curves, ylabel, rows)
    axes.legend(frameon=False, fontsize=8, loc="lower left")
    tests = result.logrank if outcome == "os" else result.rfs_logrank
    _p_label(axes, "Log-rank", next((t for t in tests if t.factor == factor), None), "bottom")
    return figure


def incidence_group_figure(result: AnalysisResult, factor: str) -> Figure:
    """Cumulative incidence of recurrence by the levels of a factor, with Gray's p-value."""
    times = result.times
    curves, rows = [], []
    for index, (level, group) in enumerate(_groups(times, factor)):
        name = level_name(level)
        table = aalen_johansen(group["rfs_months"], group["cr_status"])
        curves.append(
            Curve(
                f"{name} (n = {result.count(len(group))})",
                _incidence_steps(table, 1),
                0.0,
                color=COLORS[index % len(COLORS)],
                linestyle=LINESTYLES[index % len(LINESTYLES)],
            )
        )
        rows.append(AtRiskRow(name, group["rfs_months"], COLORS[index % len(COLORS)]))
    figure, axes = step_figure(result, curves, "Cumulative incidence of recurrence (%)", rows)
    axes.legend(frameon=False, fontsize=8, loc="upper left")
    _p_label(
        axes, "Gray's test", next((t for t in result.gray_tests if t.factor == factor), None), "top"
    )
    return figure


def _groups(times: pd.DataFrame, factor: str) -> list[tuple[str, pd.DataFrame]]:
    return [
        (level, times[times[factor] == level])
        for level in FACTORS[factor]
        if (times[factor] == level).any()
    ]


def _p_label(axes: Axes, name: str, test: LogRankTest | GrayTest | None, where: str) -> None:
    if test is None or test.p_value is None:
        return
    y, va = (0.04, "bottom") if where == "bottom" else (0.96, "top")
    axes.text(
        0.98,
        y,
        f"{name} p = {test.p_value:.2f}",
        transform=axes.transAxes,
        ha="right",
        va=va,
        fontsize=9,
    )


def step_figure(
    result: AnalysisResult, curves: list[Curve], ylabel: str, rows: list[AtRiskRow]
) -> tuple[Figure, Axes]:
    """Curves over months since the time origin, with the number-at-risk table underneath."""
    ticks = result.at_risk_ticks()
    table_height = 0.3 + _ROW_HEIGHT * len(rows)
    figure = Figure(figsize=(6.8, _AXES_HEIGHT + table_height + 0.9), layout="constrained")
    grid = figure.add_gridspec(2, 1, height_ratios=[_AXES_HEIGHT, table_height])
    axes = figure.add_subplot(grid[0])
    for curve in curves:
        _draw(axes, curve)
    _style_axes(axes, ticks, float(result.times["os_months"].max()), ylabel, result)
    _draw_at_risk(figure.add_subplot(grid[1], sharex=axes), rows, ticks, result)
    return figure, axes


def _survival_curve(
    label: str,
    steps: pd.DataFrame,
    durations: pd.Series,
    events: pd.Series,
    color: str = COLORS[0],
    linestyle: str = "-",
    band: str = "",
) -> Curve:
    return Curve(
        label,
        steps.rename(columns={"survival": "value"}),
        1.0,
        censored_at=durations[events == 0].to_numpy(dtype=float),
        color=color,
        linestyle=linestyle,
        band=band,
    )


def _band_label(result: AnalysisResult) -> str:
    return f"{result.config.confidence_level:.0%} confidence interval"


def _incidence_steps(table: pd.DataFrame, cause: int) -> pd.DataFrame:
    columns = {f"cif_{cause}": "value", f"lower_{cause}": "lower", f"upper_{cause}": "upper"}
    return table[list(columns)].rename(columns=columns)


def _draw(axes: Axes, curve: Curve) -> None:
    steps = curve.steps
    x = np.concatenate([[0.0], steps.index.to_numpy(dtype=float)])
    y = np.concatenate([[curve.start], steps["value"].to_numpy()])
    axes.step(
        x,
        y,
        where="post",
        color=curve.color,
        linestyle=curve.linestyle,
        linewidth=1.4,
        label=curve.label,
    )
    if curve.band:
        lower = np.concatenate([[curve.start], steps["lower"].to_numpy()])
        upper = np.concatenate([[curve.start], steps["upper"].to_numpy()])
        axes.fill_between(
            x,
            lower,
            upper,
            step="post",
            color=curve.color,
            alpha=0.12,
            linewidth=0,
            label=curve.band,
        )
    if len(curve.censored_at):
        # A censor mark sits on the curve's value at its time (after any event then).
        at = np.searchsorted(steps.index.to_numpy(dtype=float), curve.censored_at, side="right")
        marks = steps["value"].to_numpy()[at - 1]
        label = "Censored" if curve.band else "_nolegend_"
        axes.plot(
            curve.censored_at,
            marks,
            linestyle="none",
            marker="|",
            markersize=7,
            markeredgewidth=1.1,
            color=curve.color,
            label=label,
        )


def _style_axes(
    axes: Axes, ticks: list[float], last: float, ylabel: str, result: AnalysisResult
) -> None:
    axes.set_xlim(0, max(last, ticks[-1]) * 1.02)
    axes.set_ylim(0, 1.02)
    axes.set_xticks(ticks)
    axes.set_yticks(np.linspace(0, 1, 6))
    axes.yaxis.set_major_formatter(PercentFormatter(xmax=1.0, decimals=0, symbol=""))
    axes.set_ylabel(ylabel)
    axes.set_xlabel(f"Months since {ORIGIN_NAMES[result.config.time_origin]}")
    axes.tick_params(labelsize=9)
    for side in ("top", "right"):
        axes.spines[side].set_visible(False)


def _draw_at_risk(
    table: Axes, rows: list[AtRiskRow], ticks: list[float], result: AnalysisResult
) -> None:
    table.axis("off")
    table.set_ylim(len(rows) - 0.5, -1.2)
    left = ("axes fraction", "data")
    table.annotate(
        "No. at risk",
        xy=(0, -1),
        xycoords=left,
        fontsize=8.5,
        fontweight="bold",
        ha="left",
        va="center",
    )
    for position, row in enumerate(rows):
        if row.label:
            table.annotate(
                row.label,
                xy=(0, position),
                xycoords=left,
                xytext=(-16, 0),
                textcoords="offset points",
                ha="right",
                va="center",
                fontsize=8,
                color=row.color,
            )
        for time, n in number_at_risk(row.durations, ticks).items():
            table.text(
                time,
                position,
                str(result.count(int(n))),
                ha="center",
                va="center",
                fontsize=8,
                color=row.color,
            )
