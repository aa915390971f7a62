"""What a cohort was built from, for the report's header: the data source (and, for a pulled
source, the pull manifest's transaction time), the study window and cut-off, the fhir-hcc
version, and SHA-256 hashes of the mapping files and of the study configuration. No clock time:
the same inputs give the same flow.json (the report states its own run date).

The cohort commands write it into flow.json (`"provenance"`), which `fhir-hcc analyze --flow`
reads back; the analysis shows it as given. No PHI: paths, URLs, dates and hashes only.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import orjson

from fhir_hcc.config import CohortConfig
from fhir_hcc.mappings import SHIPPED_MAPPINGS

MANIFEST = "manifest.json"  # written beside the data by `fhir-hcc pull` and bulk exports


def cohort_provenance(
    source: str | Path,
    config: CohortConfig,
    config_path: str | Path | None,
    mapping_directories: Sequence[Path],
    pull_dir: str | Path | None = None,
) -> dict[str, Any]:
    """The provenance record of one cohort build (keys as docs/analysis.md lists them)."""
    text = str(source)
    server = text.startswith(("http://", "https://"))
    manifest_dir = Path(pull_dir) if server and pull_dir else None if server else Path(source)
    record: dict[str, Any] = {
        "source": text,
        "source_kind": "FHIR server" if server else "files",
        **_pull(manifest_dir),
        "study_start": config.study_start.isoformat(),
        "study_end": config.study_end.isoformat(),
        "window_applies_to": config.window_applies_to,
        "cutoff": config.cutoff.isoformat(),
        "censoring": config.censoring,
        "fhir_hcc_version": fhir_hcc_version(),
        "mapping_directories": [_shown(directory) for directory in mapping_directories],
        "mappings_sha256": mappings_hash(mapping_directories),
        "config_path": None if config_path is None else str(config_path),
        "config_sha256": None if config_path is None else file_hash(Path(config_path)),
    }
    return record


def _shown(directory: Path) -> str:
    """The shipped code lists by name (their path is an install detail), site lists by path."""
    return "shipped" if Path(directory).resolve() == SHIPPED_MAPPINGS.resolve() else str(directory)


def fhir_hcc_version() -> str:
    try:
        return metadata.version("fhir-hcc")
    except metadata.PackageNotFoundError:
        return "unknown"


def mappings_hash(directories: Sequence[Path]) -> str:
    """SHA-256 over every mapping file (name and bytes), directory by directory in layer order:
    the same code lists give the same hash wherever they are installed."""
    digest = hashlib.sha256()
    for directory in directories:
        for path in sorted(Path(directory).glob("*.toml")):
            digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def file_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _pull(directory: Path | None) -> dict[str, Any]:
    """The transaction time of the pull that wrote `directory`, if a manifest is there
    (a bulk export's transactionTime; a search pull's start)."""
    path = None if directory is None else (directory if directory.is_dir() else directory.parent)
    manifest_path = None if path is None else path / MANIFEST
    if manifest_path is None or not manifest_path.is_file():
        return {}
    try:
        manifest = orjson.loads(manifest_path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return {}
    server = manifest.get("server") or {}
    return {
        "pulled_from": server.get("baseUrl"),
        "transaction_time": manifest.get("transactionTime") or manifest.get("started"),
        "pull_mode": manifest.get("mode"),
    }
