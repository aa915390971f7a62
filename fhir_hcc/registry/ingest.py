"""NDJSON into the registry: each line skimmed for its keys, hashed, and compared to the ledger.

A line's JSON is stored exactly as the server sent it; its content hash (BLAKE2b-128 of those
bytes) decides whether it is new, changed or unchanged. Unchanged resources are not written, so
a re-run with nothing changed adds no versions. With `complete=True` (a full export or search
pull) a stored resource of an exported type that the pull no longer holds is deleted: that is
how deletions are found on servers that do not report them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from hashlib import blake2b
from itertools import islice
from pathlib import Path

import msgspec

from fhir_hcc.errors import InputError
from fhir_hcc.fhir.ndjson import UnreadableFile, read_lines
from fhir_hcc.fhir.references import label, parse_reference
from fhir_hcc.registry.store import Registry, Row

BATCH = 5000


class _Meta(msgspec.Struct):
    versionId: str | None = None  # FHIR element names, as in the JSON
    lastUpdated: str | None = None


class _Reference(msgspec.Struct):
    reference: str | None = None


class _Keys(msgspec.Struct):
    resourceType: str = ""
    id: str = ""
    meta: _Meta | None = None
    subject: _Reference | None = None
    patient: _Reference | None = None


_DECODER = msgspec.json.Decoder(_Keys)
# Besides msgspec's own errors: invalid UTF-8, nesting deeper than the interpreter allows.
_UNREADABLE = (UnicodeDecodeError, RecursionError)
log = logging.getLogger(__name__)
_NO_META = _Meta()
_NO_REFERENCE = _Reference()


@dataclass
class TypeCounts:
    received: int = 0
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    deleted: int = 0
    skipped: int = 0  # lines not stored: not a resource of the file's type, or a repeated id

    def add(self, other: TypeCounts) -> None:
        for name in vars(self):
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass
class IngestResult:
    counts: dict[str, TypeCounts] = field(default_factory=dict)
    new_patients: set[str] = field(default_factory=set)  # Patient resources not known before
    problems: list[str] = field(default_factory=list)  # file:line and what; never a value

    def of(self, resource_type: str) -> TypeCounts:
        return self.counts.setdefault(resource_type, TypeCounts())

    def record(self) -> dict[str, dict[str, int]]:
        return {name: vars(counts) for name, counts in sorted(self.counts.items())}

    @property
    def writes(self) -> int:
        return sum(c.new + c.changed + c.deleted for c in self.counts.values())


def files_by_type(directory: Path, files: Mapping[str, str]) -> dict[str, list[Path]]:
    """A manifest's files grouped by resource type (its name up to the first dot)."""
    grouped: dict[str, list[Path]] = {}
    for name in files.values():
        grouped.setdefault(name.split(".")[0], []).append(directory / name)
    return grouped


def ingest(
    registry: Registry,
    run_id: int,
    files: Mapping[str, list[Path]],
    *,
    complete: bool,
    result: IngestResult | None = None,
) -> IngestResult:
    """Write what changed, one type at a time, in batches.

    A complete pull holds the whole ledger of one type in memory (what is left in it at the end
    was deleted); a delta looks up only the ids it brings.
    """
    result = result or IngestResult()
    for resource_type, paths in sorted(files.items()):
        counts = result.of(resource_type)
        ledger = registry.hashes(resource_type) if complete else None
        for batch in _batches(paths, resource_type, counts, result.problems):
            known = ledger if ledger is not None else registry.hashes(resource_type, batch)
            _write_batch(registry, run_id, batch, known, counts, result)
        if ledger:
            counts.deleted += registry.delete(resource_type, sorted(ledger))
    return result


def _write_batch(
    registry: Registry,
    run_id: int,
    batch: list[Row],
    known: dict[str, bytes],
    counts: TypeCounts,
    result: IngestResult,
) -> None:
    """Insert the new rows, replace the changed ones; `known` loses every id seen."""
    new_rows, changed_rows = [], []
    for row in batch:
        counts.received += 1
        old = known.pop(row.id, None)
        if old is None:
            new_rows.append(row)
            if row.type == "Patient":
                result.new_patients.add(row.id)
        elif old != row.hash:
            changed_rows.append(row)
        else:
            counts.unchanged += 1
    if new_rows:
        registry.insert(new_rows, run_id)
    if changed_rows:
        registry.replace(changed_rows, run_id)
    counts.new += len(new_rows)
    counts.changed += len(changed_rows)


def _batches(
    paths: list[Path], resource_type: str, counts: TypeCounts, problems: list[str]
) -> Iterator[list[Row]]:
    """Rows in batches, parsed in this process. Measured slower, both: a parsing thread beside
    SQLite's writes (each row's bind waited for the GIL the parser held) and a parsing process
    (the pickled batches through a pipe cost the writer almost what the parse did).

    A line that cannot be stored costs that line only: skipped, counted and named."""

    def skip(problem: str) -> None:
        log.warning("%s", problem)
        counts.skipped += 1
        problems.append(problem)

    rows = _rows(paths, resource_type, skip)
    while batch := list(islice(rows, BATCH)):
        yield batch


def apply_deletions(
    registry: Registry, references: Iterable[str], result: IngestResult
) -> IngestResult:
    """`Type/id` deletions a Bulk Data export reported; unknown ones change nothing."""
    by_type: dict[str, list[str]] = {}
    for reference in references:
        resource_type, _, resource_id = reference.partition("/")
        by_type.setdefault(resource_type, []).append(resource_id)
    for resource_type, ids in sorted(by_type.items()):
        result.of(resource_type).deleted += registry.delete(resource_type, ids)
    return result


def _rows(paths: list[Path], resource_type: str, skip: Callable[[str], None]) -> Iterator[Row]:
    """The rows of the files, each line skimmed for its keys and hashed (one loop: this is the
    CPU-bound half of a sync). An id is stored once: an export may repeat one, and the first
    copy is kept."""
    seen: set[str] = set()
    for path in paths:
        try:
            for number, raw in read_lines(path):
                line = raw.rstrip(b"\r\n")
                try:
                    keys = _DECODER.decode(line)
                except (msgspec.DecodeError, msgspec.ValidationError, *_UNREADABLE):
                    skip(f"{path.name}:{number}: not a FHIR resource: not stored")
                    continue
                if keys.resourceType != resource_type or not keys.id:
                    found = label(keys.resourceType, keys.id)
                    skip(f"{path.name}:{number}: {found} in the {resource_type} file: not stored")
                    continue
                if keys.id in seen:
                    skip(f"{path.name}:{number}: {label(resource_type, keys.id)}: a second copy")
                    continue
                seen.add(keys.id)
                meta = keys.meta or _NO_META
                yield Row(
                    resource_type,
                    keys.id,
                    meta.versionId,
                    meta.lastUpdated,
                    blake2b(line, digest_size=16).digest(),
                    keys.id if resource_type == "Patient" else _patient(keys),
                    line,
                )
        except UnreadableFile as error:
            raise InputError(f"{path.name}: {error}") from None


def _patient(keys: _Keys) -> str | None:
    return _patient_id((keys.subject or keys.patient or _NO_REFERENCE).reference or "")


@lru_cache(maxsize=1 << 16)  # an export names each patient hundreds of times
def _patient_id(reference: str) -> str | None:
    target = parse_reference(reference)
    return target.id if target is not None and target.type == "Patient" else None
