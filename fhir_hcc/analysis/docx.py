"""The report as a Word document a co-author can edit: the same blocks as the HTML and Markdown
(report.py), as real Word headings, lists, tables (a header row, subheading rows in bold, levels
indented, notes under each table) and pictures with their captions."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

from docx import Document
from docx.enum.table import WD_TABLE_ALIGNMENT
from docx.shared import Cm, Pt

from fhir_hcc.analysis.blocks import INDENT, Block, Bullets, FigureBlock, Heading, Paragraph, Table
from fhir_hcc.analysis.report import TITLE, build_document

if TYPE_CHECKING:
    from docx.document import Document as DocumentType

    from fhir_hcc.analysis.result import AnalysisResult

_FIGURE_WIDTH = Cm(16)


def render_docx(result: AnalysisResult) -> bytes:
    document = Document()
    document.core_properties.title = TITLE
    document.core_properties.author = "fhir-hcc"
    style = document.styles["Normal"]
    style.font.name = "Times New Roman"
    style.font.size = Pt(10.5)
    for block in build_document(result):
        _add(document, block, result.figures)
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def _add(document: DocumentType, block: Block, pngs: dict[str, bytes]) -> None:
    match block:
        case Heading(text, level):
            document.add_heading(text, level=0 if level == 1 else level - 1)
        case Paragraph(text):
            document.add_paragraph(text)
        case Bullets(items):
            for item in items:
                document.add_paragraph(item, style="List Bullet")
        case Table():
            _add_table(document, block)
        case FigureBlock():
            document.add_picture(io.BytesIO(pngs[block.name]), width=_FIGURE_WIDTH)
            document.add_paragraph(block.caption, style="Caption")
        case _:
            raise TypeError(f"unknown report block {block!r}")


def _add_table(document: DocumentType, table: Table) -> None:
    document.add_paragraph(table.caption, style="Caption")
    grid = document.add_table(rows=1, cols=len(table.header))
    grid.style = "Table Grid"
    grid.alignment = WD_TABLE_ALIGNMENT.LEFT
    for cell, text in zip(grid.rows[0].cells, table.header, strict=True):
        cell.text = ""
        cell.paragraphs[0].add_run(text).bold = True
    for row in table.rows:
        cells = grid.add_row().cells
        first, rest = row[0], row[1:]
        if not any(rest):  # a subheading across the row
            merged = cells[0].merge(cells[-1])
            merged.text = ""
            merged.paragraphs[0].add_run(first).bold = True
            continue
        cells[0].text = first.strip()
        if first.startswith(INDENT):
            cells[0].paragraphs[0].paragraph_format.left_indent = Cm(0.4)
        for cell, text in zip(cells[1:], rest, strict=True):
            cell.text = text
    for row in grid.rows:
        for cell in row.cells:
            for paragraph in cell.paragraphs:
                for run in paragraph.runs:
                    run.font.size = Pt(8.5)
    for note in table.notes:
        paragraph = document.add_paragraph(note)
        paragraph.runs[0].font.size = Pt(8)
