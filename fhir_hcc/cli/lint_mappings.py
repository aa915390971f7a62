"""`fhir-hcc lint-mappings [DIR...]`: check the shipped mapping files and site directories.

Each DIR is a site directory layered over the shipped `mappings/` (which is always checked too).
Exit code 0 without findings, 1 with findings (one line each: file, code, rule, what).
"""

from __future__ import annotations

import argparse

from fhir_hcc.errors import ExitCode
from fhir_hcc.mapping_lint import lint_directories
from fhir_hcc.mappings import SHIPPED_MAPPINGS


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Check the shipped mapping files and each site mapping directory DIR layered over "
        "them: schema, known system URIs, no code in two conflicting classes or concepts, "
        "SNOMED CT Verhoeff and LOINC mod-10 check digits, a display and a source on every "
        "code, and text patterns that compile."
    )
    parser.add_argument("directories", metavar="DIR", nargs="*", help="site mapping directory")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    directories = [SHIPPED_MAPPINGS, *args.directories]
    findings = lint_directories(directories)
    for finding in findings:
        print(finding)
    checked = ", ".join(str(d) for d in directories)
    print(f"{len(findings)} findings in {checked}")
    return ExitCode.CHECKS_FAILED if findings else ExitCode.OK
