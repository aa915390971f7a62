"""The report's building blocks (headings, paragraphs, lists, tables, figures) and the number
formats a surgical journal prints. report.py fills them; render.py (HTML, Markdown) and docx.py
(Word) draw the same blocks, so every format says the same thing."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

import pandas as pd

INDENT = "  "  # a first cell starting with this is a level under the row above


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2


@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class Bullets:
    items: tuple[str, ...]
    style: str = ""  # "provenance": the small print under the title


@dataclass(frozen=True)
class Table:
    """A captioned table; a row whose cells after the first are all empty is a subheading.
    `number` 0 is an unnumbered table; `number_blocks` numbers the others in order."""

    title: str
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    notes: tuple[str, ...] = ()
    numbered: bool = True
    number: int = 0

    @property
    def caption(self) -> str:
        return f"Table {self.number}. {self.title}" if self.number else self.title

    @property
    def file_stem(self) -> str:
        """The CSV file name: `table3_survival`, or the title's slug when unnumbered."""
        words = re.sub(r"[^a-z0-9]+", " ", self.title.lower()).split()[:5]
        slug = "_".join(words)
        return f"table{self.number}_{slug}" if self.number else slug


@dataclass(frozen=True)
class FigureBlock:
    name: str  # file stem, see labels.FIGURES
    title: str
    number: int = 0

    @property
    def caption(self) -> str:
        return f"Figure {self.number}. {self.title}." if self.number else f"{self.title}."


Block = Heading | Paragraph | Bullets | Table | FigureBlock


def number_blocks(blocks: list[Block]) -> list[Block]:
    """Tables and figures numbered in the order they appear."""
    tables = figures = 0
    numbered: list[Block] = []
    for block in blocks:
        if isinstance(block, Table) and block.numbered:
            tables += 1
            block = replace(block, number=tables)
        elif isinstance(block, FigureBlock):
            figures += 1
            block = replace(block, number=figures)
        numbered.append(block)
    return numbered


def percent_ci(estimate: float, lower: float, upper: float) -> str:
    if pd.isna(estimate):
        return "NE"
    return f"{percent(estimate)} ({percent(lower)} to {percent(upper)})"


def percent(value: float) -> str:
    return "NE" if pd.isna(value) else f"{100 * value:.1f}"


def months(value: float | None) -> str:
    return "NR" if value is None else f"{value:.1f}"


def p_value(value: float | None) -> str:
    if value is None or pd.isna(value):
        return ""
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def ratio_ci(ratio: float, lower: float, upper: float) -> str:
    return f"{ratio:.2f} ({lower:.2f} to {upper:.2f})"
