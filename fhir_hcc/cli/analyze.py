"""`fhir-hcc analyze COHORT.csv --out report.json`: the analyses and the report of a cohort table
(CSV, or Parquet as `fhir-hcc cohort --out x.parquet` writes it).

Imports the analysis stage (pandas, lifelines, matplotlib) only when the command runs, so that
`fhir-hcc --help` stays fast.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from fhir_hcc.cli.arguments import add_config_argument, add_suppress_argument
from fhir_hcc.errors import InputError
from fhir_hcc.output import write_bytes, write_text
from fhir_hcc.provenance import file_hash

if TYPE_CHECKING:
    import pandas as pd

    from fhir_hcc.analysis import AnalysisResult


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Kaplan-Meier survival, cumulative incidence of recurrence, group comparisons and "
        "Table 1 from a cohort table (the CSV or Parquet written by `fhir-hcc cohort`). Writes "
        "report.json, and optionally the report as HTML, Markdown and Word, the figures (PNG, "
        "SVG, PDF) and the tables (CSV)."
    )
    parser.add_argument(
        "cohort", type=Path, metavar="COHORT.csv", help="cohort table (.csv or .parquet)"
    )
    parser.add_argument("--out", type=Path, required=True, metavar="report.json")
    parser.add_argument("--html", type=Path, metavar="report.html", help="self-contained report")
    parser.add_argument("--markdown", type=Path, metavar="report.md", help="report as Markdown")
    parser.add_argument("--docx", type=Path, metavar="report.docx", help="report as Word")
    parser.add_argument(
        "--plots", type=Path, metavar="DIR", help="write the figures as PNG (300 dpi), SVG and PDF"
    )
    parser.add_argument("--tables", type=Path, metavar="DIR", help="write every table as CSV")
    add_config_argument(parser, "[analysis]")
    parser.add_argument(
        "--flow", type=Path, metavar="flow.json", help="flow diagram from `fhir-hcc cohort`"
    )
    add_suppress_argument(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from fhir_hcc.analysis import load_cohort

    flow = _read_flow(args.flow) if args.flow else None
    result = analyze_table(load_cohort(args.cohort), args.config, args.suppress_below, flow)
    files = ReportFiles(args.html, args.markdown, args.docx, args.plots, args.tables)
    write_report(result, args.out, files)
    return 0


def analyze_table(
    table: pd.DataFrame, config_path: Path | None, suppress_below: int | None, flow: dict | None
) -> AnalysisResult:
    from fhir_hcc.analysis import analyze, load_analysis_config

    config = load_analysis_config(config_path)
    if suppress_below is not None:
        config = replace(config, suppress_below=suppress_below)
    if config_path is not None:  # the analysis settings join the cohort's provenance
        flow = dict(flow or {})
        flow["provenance"] = dict(flow.get("provenance") or {}) | {
            "analysis_config_path": str(config_path),
            "analysis_config_sha256": file_hash(Path(config_path)),
        }
    return analyze(table, config, flow=flow)


@dataclass(frozen=True)
class ReportFiles:
    """Where the report goes besides report.json; None for a file not wanted."""

    html: Path | None = None
    markdown: Path | None = None
    docx: Path | None = None
    figures: Path | None = None
    tables: Path | None = None


def write_report(result: AnalysisResult, out: Path, files: ReportFiles = ReportFiles()) -> None:
    """report.json, and the HTML, the Markdown (linking the figures), the Word document, the
    figures (PNG, SVG, PDF) and the tables (CSV)."""
    write_text(json.dumps(result.to_dict(), indent=2, allow_nan=False) + "\n", out)
    for directory, save in (
        (files.figures, result.save_figures),
        (files.tables, result.save_tables),
    ):
        if directory:
            try:
                save(directory)
            except OSError as error:
                raise InputError(f"{directory}: cannot write: {error.strerror}") from None
    if files.html:
        write_text(result.to_html(), files.html)
    if files.markdown:
        figures = os.path.relpath(files.figures, files.markdown.parent) if files.figures else None
        write_text(result.to_markdown(figures), files.markdown)
    if files.docx:
        write_bytes(result.to_docx(), files.docx)


def _read_flow(path: Path) -> dict:
    """The flow.json of `fhir-hcc cohort` (or {step: n}), checked here to name the file."""
    from fhir_hcc.analysis.study import flow_steps

    try:
        flow = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise InputError(f"{path}: cannot read flow counts: {error}") from None
    try:
        flow_steps(flow if isinstance(flow, dict) else {"steps": None})
    except InputError as error:
        raise InputError(f"{path}: {error}") from None
    return flow
