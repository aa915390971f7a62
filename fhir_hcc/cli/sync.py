"""`fhir-hcc sync URL [--registry PATH]`: one scheduled registry refresh (see docs/registry.md)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fhir_hcc.registry.sync import MODES
from fhir_hcc.server.errors import EXIT_INCOMPLETE_DATA
from fhir_hcc.server.options import add_client_arguments, options_from_args
from fhir_hcc.server.progress import progress_for


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "sync",
        help="refresh the registry from a FHIR server (for cron or a systemd timer)",
        description=(
            "Fetch what changed on the server into the registry in one transaction and store "
            "the cohort of this run. Exit codes: 0 ok, 3 server unreachable, 4 auth failed, "
            "5 partial data (what arrived is kept; no deletions are inferred), 6 another sync "
            "is running, 7 registry unusable, 2 bad input or configuration."
        ),
    )
    parser.add_argument("url", metavar="URL", help="FHIR base URL, e.g. https://host/fhir")
    add_registry_argument(parser)
    parser.add_argument(
        "--mode",
        choices=MODES,
        default="auto",
        help="auto (default): full Bulk export when the server offers $export, else search; "
        "incremental: a _since export, or _lastUpdated searches (search-incremental) on a "
        "server without $export",
    )
    parser.add_argument("--group", metavar="ID", help="export Group/ID instead of the system")
    parser.add_argument("--config", help="study TOML file ([cohort] settings)")
    parser.add_argument(
        "--no-type-filter", action="store_true", help="do not send _typeFilter with the export"
    )
    add_client_arguments(parser)
    parser.set_defaults(func=run)


def add_registry_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--registry",
        type=Path,
        help="registry file (default $FHIR_HCC_REGISTRY, else "
        "~/.local/share/fhir-hcc/registry.sqlite)",
    )


def run(args: argparse.Namespace) -> int:
    from fhir_hcc.registry import SyncSettings, default_path, sync

    settings = SyncSettings(
        base_url=args.url,
        registry=args.registry or default_path(),
        mode=args.mode,
        group=args.group,
        type_filter=not args.no_type_filter,
        config=args.config,
    )
    record = sync(settings, options_from_args(args), progress=progress_for(sys.stderr))
    print(summary(record), file=sys.stderr)
    return 0 if record["status"] == "ok" else EXIT_INCOMPLETE_DATA


def summary(record: dict) -> str:
    lines = [f"run {record['id']} {record['status']} ({record['mode']}): {record['message']}"]
    for resource_type, counts in record["counts"].items():
        changes = ", ".join(f"{name} {n}" for name, n in counts.items() if n)
        lines.append(f"  {resource_type}: {changes or 'nothing'}")
    return "\n".join(lines)
