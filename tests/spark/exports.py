"""Inputs for the Spark equality tests, written from the reference bundles."""

from __future__ import annotations

import gzip
from pathlib import Path

import orjson

from fhir_hcc.sources import FileSource

ROOT = Path(__file__).resolve().parents[2]
SALVAGE = ROOT / "fixtures" / "salvage2004"


def reference_resources() -> dict[str, list[bytes]]:
    """The reference bundles' resources by type (urn:uuid references made local), as JSON."""
    by_type: dict[str, list[bytes]] = {}
    for line, _ in FileSource(SALVAGE).read(lambda problem: None):
        by_type.setdefault(orjson.loads(line)["resourceType"], []).append(line)
    return by_type


def write_messy_export(folder: Path, compressed: bool = True) -> None:
    """A Bulk-Data-style export of the reference resources, one file per type, with the odd
    lines a real export has: a line cut short and a blank line mid-file, CRLF ends, a byte-order
    mark, invalid UTF-8, a carriage return inside a line, lines that are no resource, a last line
    cut without its newline, a manifest, and (`compressed`) gzip files, one cut mid-stream."""
    by_type = reference_resources()
    observations = by_type.pop("Observation")
    third = len(observations) // 3
    observations[third:third] = [b'{"resourceType": "Observation", "id": "cut', b""]
    observations[2 * third : 2 * third] = [
        b'{"resourceType": "Observation", "id": "bad-utf8", "note": "\xff\xfe"}',
        b"[1, 2]",
        b'{"resourceType": "Observation",\r "id": "carriage-return"}',
        b"NaN",
        b'{"id": "no-type"}',
    ]
    (folder / "Observation.ndjson").write_bytes(b"\n".join(observations) + b"\n")
    patients = by_type.pop("Patient")
    (folder / "Patient.ndjson").write_bytes(b"\xef\xbb\xbf" + b"\r\n".join(patients) + b"\r\n")
    conditions = by_type.pop("Condition")
    (folder / "Condition.ndjson").write_bytes(b"\n".join([*conditions, b'{"resourceType": "Con']))
    if compressed:
        procedures = gzip.compress(b"\n".join(by_type.pop("Procedure")) + b"\n")
        (folder / "Procedure.ndjson.gz").write_bytes(procedures[: len(procedures) * 2 // 3])
    nested = folder / "more"
    nested.mkdir()
    for resource_type, lines in by_type.items():
        data = b"\n".join(lines)
        if compressed:
            (nested / f"{resource_type}.ndjson.gz").write_bytes(gzip.compress(data))
        else:
            (nested / f"{resource_type}.ndjson").write_bytes(data)
    (folder / "manifest.json").write_bytes(b'{"output": []}')
