"""`fhir-hcc codes SOURCE [--mappings DIR] [--out codes.csv]`: the codes in the data, mapped or not.

Writes one CSV row per (resource type, field, system, code, display) with its count and the
concept.class it maps to (or "unmapped"), the codes a site must look at first on top (the order
is explained in `fhir_hcc.codes_report`). Without --out the CSV goes to standard output.
"""

from __future__ import annotations

import argparse
import logging
import sys

from fhir_hcc.cli.arguments import (
    add_engine_arguments,
    add_mappings_argument,
    check_engine,
    note,
    reading_progress,
    spark_session,
)
from fhir_hcc.codes_report import collect_codes, summary, write_codes_csv
from fhir_hcc.errors import FhirHccError
from fhir_hcc.mappings import load_mappings
from fhir_hcc.sources import InputProblem

log = logging.getLogger(__name__)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Count every (system, code, display) in the fields the mappers read and show the "
        "concept.class each maps to, or 'unmapped'. Unmapped codes of local code systems in "
        "the fields the cohort uses come first: these are the codes a site must add."
    )
    parser.add_argument("source", metavar="SOURCE", help="file or directory of FHIR JSON/NDJSON")
    add_mappings_argument(parser)
    add_engine_arguments(parser)
    parser.add_argument("--out", metavar="FILE", help="write the CSV here (default: stdout)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    problems: list[InputProblem] = []

    def report(problem: InputProblem) -> None:
        log.info("%s", problem)
        problems.append(problem)

    check_engine(args, {})
    mappings = load_mappings(args.mappings)
    if args.engine == "spark":
        from fhir_hcc.spark import collect_codes as collect_on_spark

        rows = collect_on_spark(spark_session(args), args.source, mappings, report)
    else:
        rows = collect_codes(args.source, mappings, report, reading_progress(args))
    if args.out:
        try:
            with open(args.out, "w", encoding="utf-8", newline="") as handle:
                write_codes_csv(rows, handle)
        except OSError as error:
            raise FhirHccError(f"{args.out}: cannot write the codes report: {error}") from None
    else:
        write_codes_csv(rows, sys.stdout)
    note(args, summary(rows))
    if problems:
        note(args, f"{len(problems)} input problems skipped (-v lists them)")
    return 0
