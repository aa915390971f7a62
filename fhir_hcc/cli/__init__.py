"""The `fhir-hcc` command line: a thin face over the Python API, one module per command.

Only the module of the command being run is imported: `fhir-hcc --help` lists the commands from
the table below without loading any of them (or pandas), so it answers at once.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from fhir_hcc import __version__
from fhir_hcc.errors import ExitCode, FhirHccError

# Command -> (module in fhir_hcc.cli, one-line help). Each module defines `configure(parser)`,
# which adds the command's arguments and sets `func` (parsed namespace -> exit code).
COMMANDS = {
    "cohort": ("cohort", "build the salvage-surgery cohort from FHIR files or a server"),
    "explain": ("explain", "show how one patient was derived, field by field, with sources"),
    "analyze": ("analyze", "survival and recurrence analyses of a cohort table, and the report"),
    "run": ("run", "cohort and analysis in one go: tables, flow, QC, report and figures"),
    "pull": ("pull", "pull the cohort's resources from a FHIR server to NDJSON"),
    "doctor": ("doctor", "check a FHIR server before pulling from it"),
    "validate": (
        "validate",
        "check that the mappings turn FHIR test cases into the expected cohort rows",
    ),
    "sync": ("sync", "refresh the registry from a FHIR server (for cron or a systemd timer)"),
    "registry": ("registry", "what the registry's syncs did and how the cohort changed"),
    "codes": (
        "codes",
        "list every code in the data with its count and what it maps to, unmapped first",
    ),
    "lint-mappings": (
        "lint_mappings",
        "check mapping files: schema, systems, conflicts, check digits, display and source",
    ),
    "fixtures": ("fixtures", "make validation fixtures from real data"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser, with `command`'s arguments; every other command is listed by name only."""
    from fhir_hcc.cli.arguments import CommandParser

    parser = CommandParser(
        prog="fhir-hcc",
        description="Salvage-surgery HCC cohorts and their survival analysis from FHIR R4 data.",
        epilog="`fhir-hcc COMMAND --help` for a command's flags. Exit codes: "
        + ", ".join(f"{code} {code.name.lower().replace('_', ' ')}" for code in ExitCode)
        + ".",
    )
    parser.set_defaults(verbose=False, quiet=False)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, summary) in COMMANDS.items():
        subparser = subparsers.add_parser(name, help=summary, description=summary)
        if name == command:
            importlib.import_module(f"fhir_hcc.cli.{module}").configure(subparser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=_log_level(args), format="fhir-hcc: %(message)s")
    try:
        return args.func(args)
    except FhirHccError as error:
        print(f"fhir-hcc: error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("fhir-hcc: interrupted", file=sys.stderr)
        return ExitCode.INTERRUPTED


def parse(argv: list[str]) -> argparse.Namespace:
    """The parsed command line; argparse exits with code 2 on a usage error."""
    # The command is the first word that is not a flag: no top-level flag takes a value.
    parser = build_parser(next((word for word in argv if not word.startswith("-")), None))
    args = parser.parse_args(argv)
    if args.verbose and args.quiet:
        parser.error("-v/--verbose and -q/--quiet exclude each other")
    return args


def _log_level(args: argparse.Namespace) -> int:
    if args.verbose:
        return logging.INFO
    return logging.ERROR if args.quiet else logging.WARNING
