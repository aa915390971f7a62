"""Measure a Bulk Data export folder: resources, bytes and narrative per resource type.

Usage (from the repository root):

    .venv/bin/python bench/measure_sample.py /work/shared/data/synthea-sample-10
    .venv/bin/python bench/measure_sample.py bench/data/export-1000000

This is where the per-type figures of `bench/shapes/*.toml` that cite the Synthea sample come
from, and how a generated export is compared with it: count, share of resources, bytes, share
of bytes, mean bytes per resource, and how many resources carry a narrative (`text.div`) or a
base64 attachment (`content[].attachment.data`, `presentedForm[].data`). Files that are not
FHIR NDJSON (an exporter's `log.ndjson`) are skipped.
"""

from __future__ import annotations

import argparse
import gzip
import sys
from collections import Counter
from pathlib import Path
from typing import IO

import orjson


def open_ndjson(path: Path) -> IO[bytes]:
    return gzip.open(path, "rb") if path.name.endswith(".gz") else path.open("rb")


def has_attachment(resource: dict) -> bool:
    parts = [c.get("attachment", {}) for c in resource.get("content", [])]
    parts += resource.get("presentedForm", [])
    return any("data" in part for part in parts)


def measure(folder: Path) -> dict[str, Counter[str]]:
    """Per type: resources, bytes (uncompressed, newline included), narratives, attachments."""
    figures: dict[str, Counter[str]] = {}
    for path in sorted(folder.glob("*.ndjson*")):
        with open_ndjson(path) as handle:
            for line in handle:
                resource = orjson.loads(line)
                if "resourceType" not in resource:
                    break  # an exporter's log, not FHIR
                counts = figures.setdefault(resource["resourceType"], Counter())
                counts["resources"] += 1
                counts["bytes"] += len(line)
                counts["narrative"] += "div" in resource.get("text", {})
                counts["attachment"] += has_attachment(resource)
    return figures


def table(figures: dict[str, Counter[str]]) -> str:
    resources = sum(c["resources"] for c in figures.values())
    size = sum(c["bytes"] for c in figures.values())
    rows = [
        "| resource type | count | share | MB | share of bytes | bytes each | text.div | base64 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, c in sorted(figures.items(), key=lambda item: -item[1]["resources"]):
        rows.append(
            f"| {name} | {c['resources']:,} | {c['resources'] / resources:.1%} "
            f"| {c['bytes'] / 1e6:,.1f} | {c['bytes'] / size:.1%} "
            f"| {c['bytes'] / c['resources']:,.0f} | {c['narrative']:,} | {c['attachment']:,} |"
        )
    rows.append(f"| total | {resources:,} | | {size / 1e6:,.1f} | | {size / resources:,.0f} | | |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    args = parser.parse_args(argv)
    if not args.folder.is_dir():
        print(f"measure_sample: {args.folder}: not a folder", file=sys.stderr)
        return 2
    print(table(measure(args.folder)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
