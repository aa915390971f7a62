"""`fhir-hcc doctor URL`: what the server supports, whether the credentials work, pull estimates."""

from __future__ import annotations

import argparse
import asyncio
import os

from fhir_hcc.cli.arguments import add_mappings_argument
from fhir_hcc.server.auth import build_credentials
from fhir_hcc.server.doctor import diagnose, render
from fhir_hcc.server.options import add_client_arguments, options_from_args


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "doctor",
        help="check a FHIR server before pulling from it",
        description=(
            "Read the CapabilityStatement and SMART configuration, try the credentials, and "
            "estimate with _summary=count what a pull would fetch. Exit 0 when a pull can run, "
            "3 server unreachable, 4 auth failed, 5 search parameters missing."
        ),
    )
    parser.add_argument("url", metavar="URL", help="FHIR base URL, e.g. https://host/fhir")
    add_mappings_argument(parser)
    add_client_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from fhir_hcc.mappings import load_mappings

    options = options_from_args(args)
    credentials = build_credentials(options.auth, os.environ)
    search_codes = load_mappings(args.mappings).search_codes()
    report = asyncio.run(diagnose(args.url, search_codes, options, credentials))
    print(render(report))
    return report.exit_code
