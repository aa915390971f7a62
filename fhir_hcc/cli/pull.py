"""`fhir-hcc pull URL --out DIR`: the cohort's resources as NDJSON per type plus a manifest."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from fhir_hcc.server.errors import EXIT_INCOMPLETE_DATA
from fhir_hcc.server.options import add_client_arguments, options_from_args
from fhir_hcc.server.progress import progress_for
from fhir_hcc.server.pull import pull


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "pull",
        help="pull the cohort's resources from a FHIR server to NDJSON",
        description=(
            "Find candidate patients by the mapping codes, fetch their Patient, Condition, "
            "Procedure, MedicationAdministration (+ Medication), mapped Observation and "
            "Encounter resources, and write <Type>.ndjson plus manifest.json. Exit codes: "
            "3 server unreachable, 4 auth failed, 5 incomplete data (also when --allow-gaps "
            "recorded a gap)."
        ),
    )
    parser.add_argument("url", metavar="URL", help="FHIR base URL, e.g. https://host/fhir")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument(
        "--mappings", action="append", default=[], help="extra mapping folder (repeatable)"
    )
    add_client_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from fhir_hcc.mappings import load_mappings

    search_codes = load_mappings(args.mappings).search_codes()
    options = options_from_args(args)
    manifest = asyncio.run(
        pull(args.url, search_codes, options, args.out, progress=progress_for(sys.stderr))
    )
    print(summary(manifest, args.out), file=sys.stderr)
    # Gaps were allowed, so the files are written; the exit code still says they are incomplete.
    return EXIT_INCOMPLETE_DATA if manifest["gaps"] else 0


def summary(manifest: dict, out: Path) -> str:
    counts = ", ".join(f"{name} {count}" for name, count in manifest["counts"].items())
    requests = manifest["requests"]
    lines = [
        f"pulled {sum(manifest['counts'].values())} resources for "
        f"{manifest['candidates']} candidate patients in {manifest['seconds']:.1f} s "
        f"({requests['requests']} requests, {requests['retries']} retries)",
        f"  {counts}" if counts else "  nothing matched the mapping codes",
        f"  manifest: {out / 'manifest.json'}",
    ]
    if manifest["warnings"]:
        lines.append(f"  {len(manifest['warnings'])} warnings (see the manifest)")
    if manifest["gaps"]:
        lines.append(f"  INCOMPLETE: {len(manifest['gaps'])} searches have gaps (see the manifest)")
    return "\n".join(lines)
