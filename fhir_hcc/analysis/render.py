"""Render the report blocks (report.py) as one self-contained HTML page or as Markdown; docx.py
draws the same blocks as a Word document."""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import TYPE_CHECKING

from fhir_hcc.analysis.blocks import INDENT, Block, Bullets, FigureBlock, Heading, Paragraph, Table
from fhir_hcc.analysis.report import TITLE, build_document

if TYPE_CHECKING:
    from fhir_hcc.analysis.result import AnalysisResult

_STYLE = """
body { font-family: Georgia, "Times New Roman", serif; color: #111; margin: 2em auto;
       max-width: 64em; padding: 0 1em; line-height: 1.4; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; }
ul.provenance { font-size: 0.85em; color: #333; padding-left: 1.2em; }
table { border-collapse: collapse; margin: 1em 0 0.3em; font-size: 0.9em; }
caption { text-align: left; font-weight: bold; padding-bottom: 0.4em; }
thead th { border-top: 2px solid #111; border-bottom: 1px solid #111; text-align: left;
           padding: 0.3em 0.8em; vertical-align: bottom; }
tbody td { padding: 0.15em 0.8em; vertical-align: top; }
tbody tr:last-child td { border-bottom: 2px solid #111; }
td.sub { font-weight: bold; padding-top: 0.5em; } td.level { padding-left: 1.8em; }
p.note { font-size: 0.8em; margin: 0.2em 0; color: #333; }
figure { margin: 1.5em 0; } figure img { max-width: 100%; height: auto; }
figcaption { font-size: 0.9em; }
@media print {
  @page { size: A4; margin: 18mm 16mm; }
  body { max-width: none; margin: 0; padding: 0; font-size: 10pt; line-height: 1.3; }
  h2 { break-after: avoid; page-break-after: avoid; margin-top: 1.2em; }
  table, figure, caption { break-inside: avoid; page-break-inside: avoid; }
  thead { display: table-header-group; }
  figure { break-before: auto; }
  figure img { max-height: 23cm; }
  a { color: inherit; text-decoration: none; }
}
"""


def render_html(result: AnalysisResult) -> str:
    blocks = build_document(result)
    body = "\n".join(_html_block(block, result.figures) for block in blocks)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(TITLE)}</title>\n"
        f"<style>{_STYLE}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n"
    )


def render_markdown(result: AnalysisResult, figure_dir: str | Path | None = None) -> str:
    blocks = build_document(result)
    return "\n\n".join(_markdown_block(block, figure_dir) for block in blocks) + "\n"


def _html_block(block: Block, pngs: dict[str, bytes]) -> str:
    match block:
        case Heading(text, level):
            return f"<h{level}>{html.escape(text)}</h{level}>"
        case Paragraph(text):
            return f"<p>{html.escape(text)}</p>"
        case Bullets(items, style):
            css = f' class="{style}"' if style else ""
            return (
                f"<ul{css}>" + "".join(f"<li>{html.escape(item)}</li>" for item in items) + "</ul>"
            )
        case Table():
            return _html_table(block)
        case FigureBlock():
            data = base64.b64encode(pngs[block.name]).decode("ascii")
            caption = html.escape(block.caption)
            return (
                f'<figure id="{block.name}"><img src="data:image/png;base64,{data}" '
                f'alt="{caption}"><figcaption>{caption}</figcaption></figure>'
            )
    raise TypeError(f"unknown report block {block!r}")


def _html_table(table: Table) -> str:
    head = "".join(f"<th>{html.escape(cell)}</th>" for cell in table.header)
    rows = "\n".join(_html_row(row) for row in table.rows)
    notes = "".join(f'<p class="note">{html.escape(note)}</p>' for note in table.notes)
    return (
        f'<table id="{table.file_stem}"><caption>{html.escape(table.caption)}</caption>\n'
        f"<thead><tr>{head}</tr></thead>\n<tbody>\n{rows}\n</tbody></table>{notes}"
    )


def _html_row(row: tuple[str, ...]) -> str:
    first, rest = row[0], row[1:]
    if not any(rest):
        return f'<tr><td class="sub" colspan="{len(row)}">{html.escape(first)}</td></tr>'
    css = ' class="level"' if first.startswith(INDENT) else ""
    cells = f"<td{css}>{html.escape(first.strip())}</td>"
    cells += "".join(f"<td>{html.escape(cell)}</td>" for cell in rest)
    return f"<tr>{cells}</tr>"


def _markdown_block(block: Block, figure_dir: str | Path | None) -> str:
    match block:
        case Heading(text, level):
            return f"{'#' * level} {text}"
        case Paragraph(text):
            return text
        case Bullets(items):
            return "\n".join(f"- {item}" for item in items)
        case Table():
            return _markdown_table(block)
        case FigureBlock():
            if figure_dir is None:
                return f"*{block.caption} (figure not saved: see the HTML report or pass --plots)*"
            stem = Path(figure_dir, block.name).as_posix()
            return (
                f"![{block.caption}]({stem}.png)\n\n*{block.caption}* "
                f"([SVG]({stem}.svg), [PDF]({stem}.pdf))"
            )
    raise TypeError(f"unknown report block {block!r}")


def _markdown_table(table: Table) -> str:
    lines = [
        f"**{table.caption}**",
        "",
        _markdown_row(table.header),
        "|" + "---|" * len(table.header),
    ]
    for row in table.rows:
        first, rest = row[0], row[1:]
        if not any(rest):
            lines.append(_markdown_row((f"**{first}**", *rest)))
        elif first.startswith(INDENT):
            lines.append(_markdown_row((f"&nbsp;&nbsp;{first.strip()}", *rest)))
        else:
            lines.append(_markdown_row(row))
    lines += [""] + [f"*{note}*  " for note in table.notes] if table.notes else []
    return "\n".join(lines).rstrip()


def _markdown_row(cells: tuple[str, ...]) -> str:
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"
