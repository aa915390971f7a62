"""`fhir-hcc doctor URL`: what the server supports, whether the credentials work, pull estimates."""

from __future__ import annotations

import argparse
import asyncio

from fhir_hcc.cli.arguments import add_client_arguments, add_mappings_argument, client_options
from fhir_hcc.server.doctor import diagnose, render


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Read the CapabilityStatement and SMART configuration, try the credentials, and "
        "estimate with _summary=count what a pull would fetch. Exit 0 when a pull can run, "
        "3 server unreachable, 4 auth failed, 5 search parameters missing."
    )
    parser.add_argument("url", metavar="URL", help="FHIR base URL, e.g. https://host/fhir")
    add_mappings_argument(parser)
    add_client_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from fhir_hcc.mappings import load_mappings

    options = client_options(args)
    search_codes = load_mappings(args.mappings).search_codes()
    preflight = asyncio.run(diagnose(args.url, search_codes, options))
    print(render(preflight))
    return preflight.exit_code
