"""`fhir-hcc doctor URL`: what the server supports, whether the credentials work, pull estimates."""

from __future__ import annotations

import argparse
import asyncio

from fhir_hcc.cli.arguments import (
    add_client_arguments,
    add_mappings_argument,
    add_population_arguments,
    client_options,
    population,
)
from fhir_hcc.server.doctor import diagnose, render


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Read the CapabilityStatement and SMART configuration, say which server profile "
        "applies and which plan a pull would follow, try the credentials, and estimate the "
        "requests of a pull (for the case list given, or with _summary=count where searches "
        "need no patient). Exit 0 when a pull can run, 2 when it needs a case list, 3 server "
        "unreachable, 4 auth failed, 5 types or search parameters missing."
    )
    parser.add_argument("url", metavar="URL", help="FHIR base URL, e.g. https://host/fhir")
    add_mappings_argument(parser)
    add_population_arguments(parser)
    add_client_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from fhir_hcc.mappings import load_mappings

    options = client_options(args)
    search_codes = load_mappings(args.mappings).search_codes()
    listed = population(args)
    preflight = asyncio.run(diagnose(args.url, search_codes, options, population=listed))
    print(render(preflight))
    return preflight.exit_code
