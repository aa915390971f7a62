"""Resources from files: FHIR JSON (Bundles or single resources) and Bulk Data NDJSON.

A source yields `(resource, origin)` pairs one at a time, the resource as a dict or (from
NDJSON) as the undecoded line, and reports what it cannot read as an `InputProblem` instead of
raising, so a run can count every skipped line. Inside a Bundle,
`urn:uuid:` and absolute references to other entries are rewritten to `Type/id`, so the mappers
only ever see local references.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import orjson

from fhir_hcc.fhir.ndjson import SUFFIXES as NDJSON_SUFFIXES
from fhir_hcc.fhir.ndjson import UnreadableFile, is_ndjson, read_lines


class Origin(NamedTuple):  # a tuple: one is made per NDJSON line
    location: str
    line: int | None = None  # NDJSON line or Bundle entry, 1-based

    def __str__(self) -> str:
        return self.location if self.line is None else f"{self.location}:{self.line}"


@dataclass(frozen=True, slots=True)
class InputProblem:
    origin: Origin
    resource: str | None  # "Type/id" when known
    field: str | None
    message: str
    warning: bool = False  # surfaced and counted, but no reason to stop a --strict run

    def __str__(self) -> str:
        parts = [str(self.origin), self.resource, self.field, self.message]
        return ": ".join(part for part in parts if part)


ProblemSink = Callable[[InputProblem], None]
# A decoded resource, or an NDJSON line still to decode (see `decode`).
Item = tuple[dict[str, Any] | bytes, Origin]


class Source(Protocol):
    def read(self, report: ProblemSink) -> Iterator[Item]: ...


class FileSource:
    """A directory (searched recursively) or a single file of FHIR JSON or NDJSON."""

    SUFFIXES = (".json", *NDJSON_SUFFIXES)
    NOT_DATA = frozenset({"manifest.json"})  # written beside the data by pulls and exports

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"FileSource({str(self.path)!r})"

    def files(self) -> list[Path]:
        if self.path.is_file():
            return [self.path]
        if not self.path.is_dir():
            from fhir_hcc.errors import InputError

            raise InputError(f"{self.path}: no such file or directory")
        return sorted(
            path
            for path in self.path.rglob("*")
            if path.is_file()
            and path.name.endswith(self.SUFFIXES)
            and path.name not in self.NOT_DATA
        )

    def read(self, report: ProblemSink) -> Iterator[Item]:
        for path in self.files():
            if is_ndjson(path):
                yield from read_ndjson(path, report)
            else:
                yield from read_json(path, report)


def read_ndjson(path: Path, report: ProblemSink) -> Iterator[Item]:
    """One item per non-blank line, left undecoded: the mapping stage decodes (or skims) it."""
    location = str(path)
    try:
        for number, line in read_lines(path):
            yield line, Origin(location, number)
    except UnreadableFile as error:
        report(InputProblem(Origin(location), None, None, str(error)))


def decode(line: bytes, origin: Origin, report: ProblemSink) -> dict[str, Any] | None:
    """A resource from one NDJSON line; malformed JSON or a non-resource is reported."""
    try:
        resource = orjson.loads(line)
    except orjson.JSONDecodeError as error:
        report(InputProblem(origin, None, None, f"malformed JSON ({error.msg})"))
        return None
    return resource if _is_resource(resource, origin, report) else None


class NdjsonSlice:
    """Whole lines of an NDJSON file from byte `start` (a line start) up to `end`, numbered
    from 1 within the slice: one worker's share of a large file."""

    def __init__(self, path: Path, start: int, end: int) -> None:
        self.path, self.start, self.end = path, start, end
        self.lines = 0  # lines read, blank ones included: the next slice's numbering offset

    def read(self, report: ProblemSink) -> Iterator[Item]:
        location = str(self.path)
        position = self.start
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self.start)
                for line in handle:
                    if position >= self.end:
                        break
                    position += len(line)
                    self.lines += 1
                    if line[:1] == b"{" or line.strip():
                        yield line, Origin(location, self.lines)
        except OSError as error:
            report(InputProblem(Origin(location), None, None, f"cannot read file: {error}"))


def partitions(source: FileSource, chunk_bytes: int) -> list[FileSource | NdjsonSlice]:
    """The files of a source as independent parts of about `chunk_bytes`, in reading order.

    Plain NDJSON files are cut at line starts; Bundles and gzip files stay whole.
    """
    parts: list[FileSource | NdjsonSlice] = []
    for path in source.files():
        size = path.stat().st_size
        if not path.name.endswith(".ndjson") or size <= chunk_bytes:
            parts.append(FileSource(path))
            continue
        with open(path, "rb") as handle:
            starts = [0]
            while starts[-1] + chunk_bytes < size:
                handle.seek(starts[-1] + chunk_bytes)
                handle.readline()  # to the start of the next line
                if handle.tell() >= size:
                    break
                starts.append(handle.tell())
        ends = [*starts[1:], size]
        parts += [NdjsonSlice(path, start, end) for start, end in zip(starts, ends, strict=True)]
    return parts


def read_json(path: Path, report: ProblemSink) -> Iterator[Item]:
    location = str(path)
    try:
        resource = orjson.loads(path.read_bytes())
    except OSError as error:
        report(InputProblem(Origin(location), None, None, f"cannot read file: {error}"))
        return
    except orjson.JSONDecodeError as error:
        report(InputProblem(Origin(location), None, None, f"malformed JSON ({error.msg})"))
        return
    origin = Origin(location)
    if not _is_resource(resource, origin, report):
        return
    if resource["resourceType"] == "Bundle":
        yield from _bundle_entries(resource, location, report)
    else:
        yield resource, origin


def _bundle_entries(bundle: dict[str, Any], location: str, report: ProblemSink) -> Iterator[Item]:
    entries = bundle.get("entry")
    bundle_ref = f"Bundle/{bundle['id']}" if bundle.get("id") else None
    if not entries:
        report(InputProblem(Origin(location), bundle_ref, "entry", "Bundle has no entries"))
        return
    aliases = _entry_aliases(entries)
    for number, entry in enumerate(entries, start=1):
        origin = Origin(location, number)
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if resource is None:
            report(InputProblem(origin, bundle_ref, "entry.resource", "entry has no resource"))
            continue
        if entry.get("search", {}).get("mode") == "outcome":
            report(
                InputProblem(origin, None, "entry.search.mode", "search outcome, not data", True)
            )
            continue
        if not _is_resource(resource, origin, report):
            continue
        if resource["resourceType"] == "Bundle":
            yield from _bundle_entries(resource, location, report)
            continue
        if "id" not in resource and entry.get("fullUrl") in aliases:
            resource["id"] = aliases[entry["fullUrl"]].split("/", 1)[1]
        if aliases:
            _rewrite_references(resource, aliases)
        yield resource, origin


def _entry_aliases(entries: list[Any]) -> dict[str, str]:
    """fullUrl -> "Type/id" for every entry, so references between entries can be made local."""
    aliases: dict[str, str] = {}
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        full_url, resource = entry.get("fullUrl"), entry.get("resource")
        if not full_url or not isinstance(resource, dict) or "resourceType" not in resource:
            continue
        resource_id = resource.get("id") or full_url.rsplit(":", 1)[-1].rsplit("/", 1)[-1]
        aliases[full_url] = f"{resource['resourceType']}/{resource_id}"
    return aliases


def _rewrite_references(node: Any, aliases: dict[str, str]) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "reference" and isinstance(value, str) and value in aliases:
                node[key] = aliases[value]
            else:
                _rewrite_references(value, aliases)
    elif isinstance(node, list):
        for item in node:
            _rewrite_references(item, aliases)


def _is_resource(value: Any, origin: Origin, report: ProblemSink) -> bool:
    if not isinstance(value, dict):
        report(InputProblem(origin, None, None, "not a JSON object"))
        return False
    resource_type = value.get("resourceType")
    if not isinstance(resource_type, str) or not resource_type:
        ref = f"?/{value['id']}" if isinstance(value.get("id"), str) else None
        report(InputProblem(origin, ref, "resourceType", "missing resourceType"))
        return False
    return True
