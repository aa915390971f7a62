"""`fhir-hcc fixtures capture URL --patient ID... --out DIR`: de-identified fixture bundles.

The pseudonym key comes from FHIR_HCC_CAPTURE_KEY, a file named by FHIR_HCC_CAPTURE_KEY_FILE,
or --key-file; never from the command line itself. See `fhir_hcc.capture` for what is removed.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from fhir_hcc.capture import KEY_ENV, KEY_FILE_ENV, capture, load_key
from fhir_hcc.cli.arguments import (
    add_client_arguments,
    add_population_arguments,
    client_options,
    population,
)
from fhir_hcc.errors import ConfigError


def configure(parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(dest="fixtures_command", required=True, metavar="COMMAND")
    capture_parser = commands.add_parser(
        "capture",
        help="pull a few patients and write a de-identified bundle per patient",
        description=(
            "Pull the named patients, or those of a case list (the Patient, every resource of "
            "the types the mappers read, and the Medications referenced) and write one "
            "de-identified collection Bundle per patient: keyed pseudonyms for ids and "
            "references, dates moved by a per-patient offset that keeps intervals, and names, "
            "addresses, telecom, "
            f"identifiers, photos, narrative and notes removed. Key: {KEY_ENV}, {KEY_FILE_ENV} "
            "or --key-file (at least 16 bytes)."
        ),
    )
    capture_parser.add_argument("url", metavar="URL", help="FHIR base URL, e.g. https://host/fhir")
    capture_parser.add_argument(
        "--patient",
        metavar="ID",
        nargs="+",
        action="extend",
        default=[],
        help="Patient logical id (several may follow, and the option may repeat)",
    )
    add_population_arguments(capture_parser)
    capture_parser.add_argument("--out", required=True, type=Path, help="output folder")
    capture_parser.add_argument("--key-file", type=Path, help="file holding the pseudonym key")
    add_client_arguments(capture_parser)
    capture_parser.set_defaults(func=run_capture)


def run_capture(args: argparse.Namespace) -> int:
    key = load_key(args.key_file)
    options = client_options(args)
    listed = population(args)
    if not args.patient and listed is None:
        raise ConfigError(
            "name the patients: --patient ID..., --patients, --identifiers or --group"
        )
    patients = list(dict.fromkeys(args.patient))
    written = asyncio.run(capture(args.url, patients, options, args.out, key, population=listed))
    for item in written:
        # The original id is shown to the person who asked for it, never written to the bundle.
        print(
            f"Patient/{item.patient_id} -> Patient/{item.pseudonym}: "
            f"{item.resources} resources in {item.path}",
            file=sys.stderr,
        )
    return 0
