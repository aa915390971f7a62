"""NDJSON output, one file per resource type, each resource written once."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

import orjson


class NdjsonWriter:
    """Appends resources to `<Type>.ndjson`; a (type, id) already written is skipped.

    Skipping repeats makes a re-sent request (a fallback after a refused list, a Medication
    referenced by many administrations) harmless.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.counts: Counter[str] = Counter()
        self._files: dict[str, IO[bytes]] = {}
        self._seen: dict[str, set[str]] = {}

    def write(self, resource: dict[str, Any]) -> bool:
        resource_type, resource_id = resource["resourceType"], resource["id"]
        seen = self._seen.setdefault(resource_type, set())
        if resource_id in seen:
            return False
        seen.add(resource_id)
        if resource_type not in self._files:
            self._files[resource_type] = (self.directory / f"{resource_type}.ndjson").open("wb")
        self._files[resource_type].write(orjson.dumps(resource) + b"\n")
        self.counts[resource_type] += 1
        return True

    def written_elsewhere(self, resource_type: str, ids: Iterable[str]) -> None:
        """Count `ids` as written (another file holds them), so they are never written here."""
        self._seen.setdefault(resource_type, set()).update(ids)

    def has(self, resource_type: str, resource_id: str) -> bool:
        return resource_id in self._seen.get(resource_type, ())

    def close(self) -> None:
        for handle in self._files.values():
            handle.close()

    def file_names(self) -> dict[str, str]:
        return {resource_type: f"{resource_type}.ndjson" for resource_type in sorted(self._files)}
