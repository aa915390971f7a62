"""`fhir-hcc validate [CASES...] [--mappings DIR]`: run mapping test cases, diff the failures.

Exit code 0 when every case passes (or fails as its `xfail:` mark says, or could be checked only
in part because an optional extra is missing), 1 when any case fails, passes despite an `xfail:`
mark, or cannot be used, and 2 when no case can be found.
"""

from __future__ import annotations

import argparse
import logging

from fhir_hcc.cli.arguments import add_mappings_argument
from fhir_hcc.errors import ExitCode
from fhir_hcc.validate import SHIPPED_CASES, format_result, summary, validate_paths


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Run mapping test cases (YAML or JSON files of FHIR resources and the cohort they "
        "must give; format in docs/validation.md) and show a field-by-field diff for each "
        "failure."
    )
    parser.add_argument(
        "cases",
        metavar="CASES",
        nargs="*",
        default=[str(SHIPPED_CASES)],
        help="case files or directories of cases (default: the project's own cases, shipped "
        "with fhir-hcc)",
    )
    add_mappings_argument(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    logger = logging.getLogger("fhir_hcc")
    level = logger.level
    if not args.verbose:
        # Cases feed broken input on purpose; its problems are results here, not warnings.
        logger.setLevel(logging.ERROR)
    try:
        results = validate_paths(args.cases, args.mappings)
    finally:
        logger.setLevel(level)
    for result in results:
        print(format_result(result))
    print(summary(results))
    return ExitCode.OK if all(result.ok for result in results) else ExitCode.CHECKS_FAILED
