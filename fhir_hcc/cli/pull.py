"""`fhir-hcc pull URL --out DIR [--bulk]`: the cohort's resources as NDJSON plus a manifest.

Without `--bulk` the search plan of `fhir_hcc.server.puller` runs; with it, a Bulk Data `$export`
(`fhir_hcc.server.bulk`) whose output the same NDJSON reader takes.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from fhir_hcc.cli.arguments import (
    add_client_arguments,
    add_export_arguments,
    add_mappings_argument,
    add_population_arguments,
    client_options,
    note,
    population,
    progress,
)
from fhir_hcc.errors import ConfigError, ExitCode
from fhir_hcc.server.bulk import ExportRequest, bulk_export, type_filters
from fhir_hcc.server.puller import pull


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Take the patients of a case list (--patients, --identifiers, --group), or find them "
        "by the mapping codes where the server allows searches without a patient; fetch every "
        "resource type the mappers read of each patient (Observations: mapped codes only) and "
        "the Medications referenced, and write <Type>.ndjson plus manifest.json. With --bulk, "
        "run a Bulk Data $export instead (an interrupted export resumes on the next run "
        "with the same arguments). Exit codes: 2 bad input (also: the server needs a case "
        "list), 3 server unreachable, 4 auth failed, 5 incomplete data (also when "
        "--allow-gaps recorded a gap or an export reported errors)."
    )
    parser.add_argument("url", metavar="URL", help="FHIR base URL, e.g. https://host/fhir")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    add_mappings_argument(parser)
    add_population_arguments(parser, "the members of Group/ID (with --bulk: a Group export)")
    add_bulk_arguments(parser)
    add_client_arguments(parser)
    parser.set_defaults(func=run)


def add_bulk_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("Bulk Data $export")
    group.add_argument("--bulk", action="store_true", help="use $export instead of searches")
    add_export_arguments(group)
    group.add_argument(
        "--patient-level", action="store_true", help="export Patient/$export (all patients)"
    )
    group.add_argument("--since", metavar="T", help="only resources changed after instant T")


def export_request(args: argparse.Namespace, search_codes: dict) -> ExportRequest:
    if args.group and args.patient_level:
        raise ConfigError("--group and --patient-level exclude each other")
    filters = () if args.no_type_filter else type_filters(search_codes)
    return ExportRequest(
        type_filters=filters,
        since=args.since,
        group=args.group,
        patient_level=args.patient_level,
    )


def run(args: argparse.Namespace) -> int:
    from fhir_hcc.mappings import load_mappings

    search_codes = load_mappings(args.mappings).search_codes()
    options = client_options(args)
    listed = population(args)
    shown = progress(args)
    if args.bulk:
        if listed is not None and listed.kind != "group":
            raise ConfigError("--patients and --identifiers go with searches; --bulk takes --group")
        request = export_request(args, search_codes)
        manifest = asyncio.run(bulk_export(args.url, request, options, args.out, progress=shown))
        note(args, bulk_summary(manifest, args.out))
        return ExitCode.OK if manifest["complete"] else ExitCode.INCOMPLETE_DATA
    if args.since or args.patient_level:
        raise ConfigError("--since and --patient-level need --bulk")
    manifest = asyncio.run(
        pull(args.url, search_codes, options, args.out, population=listed, progress=shown)
    )
    note(args, summary(manifest, args.out))
    # Gaps were allowed, so the files are written; the exit code still says they are incomplete.
    return ExitCode.INCOMPLETE_DATA if manifest["gaps"] else ExitCode.OK


def bulk_summary(manifest: dict, out: Path) -> str:
    counts = ", ".join(f"{name} {count}" for name, count in manifest["counts"].items())
    resumed = ", resumed" if manifest["resumed"] else ""
    lines = [
        f"exported {sum(manifest['counts'].values())} resources in {manifest['seconds']:.1f} s "
        f"(transaction time {manifest['transactionTime']}{resumed})",
        f"  {counts}" if counts else "  the export is empty",
        f"  manifest: {out / 'manifest.json'}",
    ]
    if manifest["deleted"]:
        lines.append(f"  {len(manifest['deleted'])} resources deleted on the server since then")
    if manifest["errors"]:
        lines.append(f"  INCOMPLETE: {len(manifest['errors'])} errors (see the manifest)")
    return "\n".join(lines)


def summary(manifest: dict, out: Path) -> str:
    counts = ", ".join(f"{name} {count}" for name, count in manifest["counts"].items())
    requests = manifest["requests"]
    found = manifest["population"]
    who = "candidate patients" if found["kind"] == "codes" else f"patients of the {found['kind']}"
    lines = [
        f"pulled {sum(manifest['counts'].values())} resources for "
        f"{manifest['candidates']} {who} in {manifest['seconds']:.1f} s "
        f"({requests['requests']} requests, {requests['retries']} retries; "
        f"profile {manifest['profile']['name']})",
        f"  {counts}" if counts else "  nothing matched the mapping codes",
        f"  manifest: {out / 'manifest.json'}",
    ]
    unresolved = found.get("unknownLines", []) + found.get("ambiguousLines", [])
    if unresolved or found.get("badLines"):
        lines.append(
            f"  case list: {len(found['unknownLines'])} lines match no patient, "
            f"{len(found['ambiguousLines'])} several, {len(found['badLines'])} unreadable "
            "(line numbers in the manifest)"
        )
    if manifest["warnings"]:
        lines.append(f"  {len(manifest['warnings'])} warnings (see the manifest)")
    if manifest["gaps"]:
        lines.append(f"  INCOMPLETE: {len(manifest['gaps'])} searches have gaps (see the manifest)")
    return "\n".join(lines)
