"""The figures that are not curves: the CONSORT/STROBE flow diagram drawn from flow.json, and
the forest plot of the hazard ratios (Cox, univariable and multivariable; Fine-Gray beside).

matplotlib's object API, as plots.py: no pyplot, no global state.
"""

from __future__ import annotations

import textwrap
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch

from fhir_hcc.analysis.compare import term_name
from fhir_hcc.analysis.labels import step_name

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes

    from fhir_hcc.analysis.result import AnalysisResult

_LINE = 0.19  # inches per line of box text
_WRAP = 44  # characters per line of an exclusion box


def flow_figure(result: AnalysisResult) -> Figure:
    """Boxes for the patients reaching each step, an arrow down to the next, and beside each
    arrow a box with those left out there, by reason."""
    steps = result.flow or ()
    layout = []  # (main lines, exclusion lines)
    for step in steps:
        main = [step_name(step.step), f"n = {result.count(step.n)}"]
        left = sum(step.left_out.values())
        exclusions = []
        if left:
            exclusions.append(f"Left out (n = {result.count(left)}):")
            for reason, n in step.left_out.items():
                text = f"{reason.replace('_', ' ')}: {result.count(n)}"
                exclusions += textwrap.wrap(
                    text, _WRAP, initial_indent="- ", subsequent_indent="  "
                )
        layout.append((main, exclusions))
    gaps = [max(len(exclusions) * _LINE + 0.3, 0.45) for _, exclusions in layout[:-1]]
    height = sum(len(main) * _LINE + 0.2 for main, _ in layout) + sum(gaps) + 0.2
    figure = Figure(figsize=(7.0, max(height, 1.5)))
    axes = figure.add_axes((0, 0, 1, 1))
    axes.set_xlim(0, 7.0)
    axes.set_ylim(-max(height, 1.5), 0)
    axes.axis("off")
    y = -0.1
    for index, (main, exclusions) in enumerate(layout):
        box_height = len(main) * _LINE + 0.2
        _box(axes, 1.85, y - box_height / 2, main, width=2.9, height=box_height, bold=True)
        y -= box_height
        if index == len(layout) - 1:
            break
        gap = gaps[index]
        axes.annotate(
            "",
            xy=(1.85, y - gap),
            xytext=(1.85, y),
            arrowprops={"arrowstyle": "-|>", "color": "#111", "linewidth": 1},
        )
        if exclusions:
            middle = y - gap / 2
            axes.annotate(
                "",
                xy=(3.6, middle),
                xytext=(1.85, middle),
                arrowprops={"arrowstyle": "-|>", "color": "#111", "linewidth": 1},
            )
            box_height_left = len(exclusions) * _LINE + 0.15
            _box(axes, 5.25, middle, exclusions, width=3.3, height=box_height_left, align="left")
        y -= gap
    return figure


def _box(
    axes: Axes,
    x: float,
    y: float,
    lines: list[str],
    width: float,
    height: float,
    bold: bool = False,
    align: str = "center",
) -> None:
    axes.add_patch(
        FancyBboxPatch(
            (x - width / 2, y - height / 2),
            width,
            height,
            boxstyle="square,pad=0",
            facecolor="white",
            edgecolor="#111",
            linewidth=1,
        )
    )
    text_x = x if align == "center" else x - width / 2 + 0.1
    axes.text(
        text_x,
        y,
        "\n".join(lines),
        ha=align,
        va="center",
        fontsize=8.5,
        linespacing=1.35,
        fontweight="bold" if bold else "normal",
    )


def forest_figure(result: AnalysisResult) -> Figure:
    """Hazard ratios with their intervals on a log scale: Cox (death) on the left, univariable
    and multivariable; Fine-Gray (recurrence, subdistribution) on the right."""
    cox = _estimates(
        [model.terms for model in result.cox_univariable if model.fitter is not None],
        None if result.cox_multivariable is None else result.cox_multivariable.terms,
    )
    fine_gray = _estimates(
        [model.terms for model in result.fine_gray_univariable if model.fitted],
        None if result.fine_gray_multivariable is None else result.fine_gray_multivariable.terms,
    )
    terms = list(dict.fromkeys([*cox, *fine_gray]))
    figure = Figure(figsize=(7.6, 1.2 + 0.42 * max(len(terms), 1)), layout="constrained")
    left, right = figure.subplots(1, 2, sharey=True)
    level = f"{result.config.confidence_level:.0%}"
    _forest_panel(left, terms, cox, "Death (Cox)\nhazard ratio", level)
    _forest_panel(
        right, terms, fine_gray, "Recurrence (Fine-Gray)\nsubdistribution hazard ratio", level
    )
    left.invert_yaxis()  # first term on top (the axis is shared)
    left.set_yticks(range(len(terms)), [textwrap.fill(term_name(t), 34) for t in terms], fontsize=8)
    handles, labels = left.get_legend_handles_labels()
    figure.legend(handles, labels, frameon=False, fontsize=8, loc="outside lower center", ncol=2)
    return figure


Estimate = tuple[float, float, float]  # ratio, lower, upper


def _estimates(
    univariable: list[pd.DataFrame], multivariable: pd.DataFrame | None
) -> dict[str, dict[str, Estimate]]:
    """term -> {"univariable": (ratio, lower, upper), "multivariable": ...}."""
    found: dict[str, dict[str, Estimate]] = {}
    for kind, tables in (("univariable", univariable), ("multivariable", [multivariable])):
        for table in tables:
            if table is None or table.empty:
                continue
            for term, row in table.iterrows():
                estimate = (row["hazard_ratio"], row["lower"], row["upper"])
                found.setdefault(str(term), {})[kind] = estimate
    return found


def _forest_panel(
    axes: Axes,
    terms: list[str],
    estimates: dict[str, dict[str, Estimate]],
    title: str,
    level: str,
) -> None:
    styles = {"univariable": ("s", "#7a7a7a", -0.13), "multivariable": ("D", "#111111", 0.13)}
    for kind, (marker, color, shift) in styles.items():
        shown = [i for i, term in enumerate(terms) if kind in estimates.get(term, {})]
        if not shown:
            continue
        rows = np.array(shown) + shift
        values = np.array([estimates[terms[i]][kind] for i in shown], dtype=float)
        ratio, lower, upper = values.T
        finite = np.isfinite(lower) & np.isfinite(upper) & (lower > 0)
        axes.errorbar(
            ratio[finite],
            rows[finite],
            xerr=[ratio[finite] - lower[finite], upper[finite] - ratio[finite]],
            fmt=marker,
            color=color,
            markersize=5,
            capsize=2,
            linewidth=1,
            label=kind.capitalize(),
        )
    axes.axvline(1.0, color="#555", linewidth=0.8, linestyle="--")
    axes.set_xscale("log")
    axes.set_title(title, fontsize=9)
    axes.set_xlabel(f"Ratio ({level} CI, log scale)", fontsize=8.5)
    axes.tick_params(labelsize=8)
    for side in ("top", "right"):
        axes.spines[side].set_visible(False)
