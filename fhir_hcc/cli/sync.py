"""`fhir-hcc sync URL [--registry PATH]`: one scheduled registry refresh (see docs/registry.md)."""

from __future__ import annotations

import argparse

from fhir_hcc.cli.arguments import (
    add_client_arguments,
    add_config_argument,
    add_export_arguments,
    add_population_arguments,
    add_registry_argument,
    client_options,
    note,
    population,
    progress,
)
from fhir_hcc.errors import ExitCode
from fhir_hcc.registry.sync import MODES


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Fetch what changed on the server into the registry in one transaction and store "
        "the cohort of this run. Exit codes: 0 ok, 3 server unreachable, 4 auth failed, "
        "5 partial data (what arrived is kept; no deletions are inferred), 6 another sync "
        "is running, 7 registry unusable, 2 bad input or configuration."
    )
    parser.add_argument("url", metavar="URL", help="FHIR base URL, e.g. https://host/fhir")
    add_registry_argument(parser)
    parser.add_argument(
        "--mode",
        choices=MODES,
        default="auto",
        help="auto (default): full Bulk export when the server offers $export, else search; "
        "incremental: a _since export, or _lastUpdated searches (search-incremental) on a "
        "server without $export (on one without _lastUpdated, as Epic: search, compared by "
        "content hash)",
    )
    add_population_arguments(
        parser, "export Group/ID, or where the server has no Group export, sync its members"
    )
    add_export_arguments(parser)
    add_config_argument(parser, "[cohort]")
    add_client_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from fhir_hcc.registry import SyncSettings, default_path, sync

    listed = population(args)
    settings = SyncSettings(
        base_url=args.url,
        registry=args.registry or default_path(),
        mode=args.mode,
        group=args.group,
        population=listed if listed is not None and listed.kind != "group" else None,
        type_filter=not args.no_type_filter,
        config=args.config,
    )
    record = sync(settings, client_options(args), progress=progress(args))
    note(args, summary(record))
    return ExitCode.OK if record["status"] == "ok" else ExitCode.INCOMPLETE_DATA


def summary(record: dict) -> str:
    lines = [f"run {record['id']} {record['status']} ({record['mode']}): {record['message']}"]
    for resource_type, counts in record["counts"].items():
        changes = ", ".join(f"{name} {n}" for name, n in counts.items() if n)
        lines.append(f"  {resource_type}: {changes or 'nothing'}")
    return "\n".join(lines)
