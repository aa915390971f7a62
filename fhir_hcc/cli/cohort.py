"""`fhir-hcc cohort SOURCE --out cohort.csv`: build the cohort table, flow and QC."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fhir_hcc.cli.arguments import add_mappings_argument
from fhir_hcc.cohort import CohortResult, build_cohort
from fhir_hcc.config import load_config
from fhir_hcc.inputs import is_server_url
from fhir_hcc.mappings import load_mappings
from fhir_hcc.output import write_result
from fhir_hcc.server.options import add_client_arguments, options_from_args


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "cohort",
        help="build the salvage-surgery cohort from FHIR files or a server",
        description="Build the cohort table (one row per included patient) from FHIR R4 data.",
    )
    add_source_arguments(parser)
    parser.add_argument("--out", required=True, help="cohort table: .csv or .parquet")
    parser.add_argument("--flow", help="write the CONSORT/STROBE flow counts to this JSON file")
    parser.add_argument("--qc", help="write every data-quality decision to this CSV file")
    parser.set_defaults(func=run)


def add_source_arguments(parser: argparse.ArgumentParser) -> None:
    """SOURCE, --config and --strict: shared by every command that builds a cohort."""
    parser.add_argument(
        "source", metavar="SOURCE", help="directory or file of FHIR JSON/NDJSON, or a FHIR base URL"
    )
    parser.add_argument("--config", help="study TOML file ([cohort] settings)")
    parser.add_argument(
        "--strict", action="store_true", help="stop at the first bad input (exit code 2)"
    )
    parser.add_argument(
        "--workers", type=int, help="processes reading a large NDJSON export (default: cores)"
    )
    parser.add_argument("--pull-dir", help="with a server SOURCE: keep what was pulled here")
    add_mappings_argument(parser)
    add_client_arguments(parser)


def build_from_args(args: argparse.Namespace) -> CohortResult:
    server_options = None
    if is_server_url(args.source):
        server_options = {
            "options": options_from_args(args),
            "workdir": args.pull_dir and Path(args.pull_dir),
        }
    config = load_config(args.config)
    mappings = load_mappings([*config.mappings, *args.mappings])
    return build_cohort(
        args.source,
        config,
        strict=args.strict,
        mappings=mappings,
        workers=args.workers,
        server_options=server_options,
    )


def run(args: argparse.Namespace) -> int:
    result = build_from_args(args)
    write_result(result, args.out, args.flow, args.qc)
    print(summary(result), file=sys.stderr)
    return 0


def summary(result: CohortResult) -> str:
    """A few lines a person reads after a run: the flow and the problems met."""
    lines = ["flow:"]
    for step in result.flow["steps"]:
        lines.append(f"  {step['step']:<28} {step['n']:>6}")
        for reason, count in step["left_out"].items():
            lines.append(f"      - {reason}: {count}")
    problems = result.flow["input"]["problems"]
    skipped = sum(result.flow["input"]["skipped"].values())
    lines.append(f"input problems: {problems}; resources skipped by rule: {skipped}")
    return "\n".join(lines)
