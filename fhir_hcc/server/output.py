"""Where a pull's files go: a staging folder, published whole (manifest last), or nothing.

The search pull, the bulk export and the registry sync write through these helpers, so a reader
of the output folder never sees half a pull, and every manifest starts with the same header.
"""

from __future__ import annotations

import shutil
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from fhir_hcc.errors import ConfigError
from fhir_hcc.server.client import FhirClient, tool_version

MANIFEST = "manifest.json"


def search_staging(out_dir: Path) -> Path:
    """A fresh staging folder inside `out_dir` (a search pull starts over every time)."""
    refuse_foreign(out_dir)
    partial = out_dir / ".pull-partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    return partial


def export_staging(out_dir: Path) -> Path:
    """Beside the output, kept between runs so an interrupted export resumes."""
    return out_dir.with_name(f"{out_dir.name}.bulk-partial")


def refuse_foreign(out_dir: Path) -> None:
    """Create `out_dir`; refuse one that holds NDJSON files not written by a pull."""
    out_dir.mkdir(parents=True, exist_ok=True)
    if any(out_dir.glob("*.ndjson*")) and not (out_dir / MANIFEST).is_file():
        raise ConfigError(f"{out_dir}: holds NDJSON files that are not a pull; use an empty folder")


def publish(partial: Path, out_dir: Path, manifest: dict[str, Any]) -> None:
    """Replace a previous pull's files by this one's, manifest last."""
    previous = out_dir / MANIFEST
    if previous.is_file():
        old_files = orjson.loads(previous.read_bytes()).get("files", {}).values()
        for name in old_files:
            (out_dir / Path(name).name).unlink(missing_ok=True)
    for path in partial.iterdir():
        path.replace(out_dir / path.name)
    partial.rmdir()
    staged = out_dir / f"{MANIFEST}.tmp"
    staged.write_bytes(orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
    staged.replace(previous)


def read_manifest(out_dir: Path) -> dict[str, Any] | None:
    """A published manifest, or None when there is none (or it cannot be read)."""
    try:
        manifest = orjson.loads((out_dir / MANIFEST).read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    return manifest if isinstance(manifest, dict) else None


def manifest_header(client: FhirClient, mode: str, started: float) -> dict[str, Any]:
    """What every manifest starts with: tool, server, mode and timing."""
    capability = client.capability_statement or {}
    software = capability.get("software")
    finished = time.time()
    return {
        "tool": {"name": "fhir-hcc", "version": tool_version()},
        "server": {
            "baseUrl": client.base_url,
            "fhirVersion": capability.get("fhirVersion"),
            "software": software if isinstance(software, dict) else None,
        },
        "mode": mode,
        "started": iso_timestamp(started),
        "finished": iso_timestamp(finished),
        "seconds": round(finished - started, 3),
    }


def request_figures(client: FhirClient) -> dict[str, Any]:
    return vars(client.stats) | {"lowestConcurrency": client.limiter.lowest}


def iso_timestamp(seconds: float) -> str:
    """UTC to the millisecond: a pull's start bounds the next incremental pull's `_lastUpdated`,
    and a second-precision bound would skip changes later in that same second."""
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds")
