"""`fhir-hcc analyze COHORT.csv --out report.json`: the analyses and the report of a cohort table.

Imports the analysis stage (pandas, lifelines, matplotlib) only when the command runs, so that
`fhir-hcc --help` stays fast.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from fhir_hcc.errors import InputError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "analyze",
        help="survival and recurrence analyses of a cohort table, and the report",
        description=(
            "Kaplan-Meier survival, cumulative incidence of recurrence, group comparisons and "
            "Table 1 from a cohort table (the CSV written by `fhir-hcc cohort`). Writes "
            "report.json, and optionally the HTML and Markdown report and the figures."
        ),
    )
    parser.add_argument("cohort", type=Path, metavar="COHORT.csv", help="cohort table (CSV)")
    parser.add_argument("--out", type=Path, required=True, metavar="report.json")
    parser.add_argument("--html", type=Path, metavar="report.html", help="self-contained report")
    parser.add_argument("--markdown", type=Path, metavar="report.md", help="report as Markdown")
    parser.add_argument("--plots", type=Path, metavar="DIR", help="write the figures as PNG")
    parser.add_argument(
        "--config", type=Path, metavar="study.toml", help="study settings; reads [analysis]"
    )
    parser.add_argument(
        "--flow", type=Path, metavar="flow.json", help="flow diagram from `fhir-hcc cohort`"
    )
    parser.add_argument(
        "--suppress-below",
        type=_non_negative,
        metavar="K",
        help="show counts from 1 to K-1 as <K (reports leaving the hospital); 0 = off",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from fhir_hcc.analysis import analyze, load_analysis_config, load_cohort

    config = load_analysis_config(args.config)
    if args.suppress_below is not None:
        config = replace(config, suppress_below=args.suppress_below)
    flow = _read_flow(args.flow) if args.flow else None
    result = analyze(load_cohort(args.cohort), config, flow=flow)
    _write(args.out, json.dumps(result.to_dict(), indent=2, allow_nan=False) + "\n")
    if args.plots:
        try:
            result.save_figures(args.plots)
        except OSError as error:
            raise InputError(f"{args.plots}: cannot write figures: {error.strerror}") from None
    if args.html:
        _write(args.html, result.to_html())
    if args.markdown:
        figures = os.path.relpath(args.plots, args.markdown.parent) if args.plots else None
        _write(args.markdown, result.to_markdown(figures))
    return 0


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


def _write(path: Path, text: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as error:
        raise InputError(f"{path}: cannot write: {error.strerror}") from None


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}")
    return value
