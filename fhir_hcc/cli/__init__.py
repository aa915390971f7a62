"""The `fhir-hcc` command line: a thin face over the Python API, one module per command."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from fhir_hcc.errors import FhirHccError

# Each module defines `add_parser(subparsers)`, which registers the command and sets `func`
# (a callable taking the parsed namespace and returning the exit code).
COMMAND_MODULES = (
    "cohort",
    "explain",
    "analyze",
    "run",
    "pull",
    "doctor",
    "validate",
    "sync",
    "registry",
    "codes",
    "lint_mappings",
    "fixtures",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fhir-hcc",
        description="Salvage-surgery HCC cohorts and their survival analysis from FHIR R4 data.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"fhir_hcc.cli.{name}").add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="fhir-hcc: %(message)s",
    )
    try:
        return args.func(args)
    except FhirHccError as error:
        print(f"fhir-hcc: error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("fhir-hcc: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
