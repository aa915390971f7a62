"""Resources from files: FHIR JSON (Bundles or single resources) and Bulk Data NDJSON.

A source yields one kind of item: a resource's JSON text with its origin (file and line or Bundle
entry). NDJSON lines are handed on as read; a Bundle's entries are re-encoded one by one, after
its `urn:uuid:` and absolute references to other entries are rewritten to `Type/id` (so the
mappers only ever see local references). Whoever reads an item decodes the elements it needs
(`fhir_hcc.fhir.shape`). What a source cannot read is reported to a `ProblemSink` as an
`InputProblem` instead of raised, so a run can count every skipped line.
"""

from __future__ import annotations

import codecs
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import orjson

from fhir_hcc.fhir.ndjson import SUFFIXES as NDJSON_SUFFIXES
from fhir_hcc.fhir.ndjson import Lines, UnreadableFile, is_ndjson


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
    patient: str | None = None  # whose resource it was, when that could be read (row flagged)

    def __str__(self) -> str:
        parts = [str(self.origin), self.resource, self.field, self.message]
        return ": ".join(part for part in parts if part)


ProblemSink = Callable[[InputProblem], None]
Item = tuple[bytes, Origin]  # a resource's JSON text, and where it was read


class Source(Protocol):
    def read(self, sink: ProblemSink) -> Iterator[Item]: ...


# Files written beside the data by pulls, exports and Bulk Data clients: not FHIR resources.
NOT_DATA = {
    "manifest.json": "an export or pull manifest",
    "bulk-state.json": "a bulk export's state",
    "log.ndjson": "a Bulk Data client's log",
    ".metadata": "a Bulk Data client's metadata",
}
# Names starting so are never data: macOS `._X.ndjson` copies, Spark's `_SUCCESS`, editors'
# temporary files. Spark and Hadoop read none of them either.
_HIDDEN = (".", "_")


def not_data_note(location: str) -> InputProblem | None:
    """The note (a warning) on a file beside the data that is not read; None for a data file."""
    name = location.rsplit("/", 1)[-1]
    what = NOT_DATA.get(name) or ("a hidden file" if name.startswith(_HIDDEN) else None)
    if what is None:
        return None
    return InputProblem(Origin(location), None, None, f"{what}, not FHIR: skipped", True)


class FileSource:
    """A directory (searched recursively; hidden folders skipped, hidden files noted) or a single
    file of FHIR JSON or NDJSON."""

    SUFFIXES = (".json", *NDJSON_SUFFIXES)

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"FileSource({str(self.path)!r})"

    def parts(self) -> list[Part]:
        """One reader per file, in reading order."""
        return [_part(path) for path in self._paths()]

    def files(self) -> list[Path]:
        """The files read as data."""
        return [part.path for part in self.parts() if not isinstance(part, NotData)]

    def read(self, sink: ProblemSink) -> Iterator[Item]:
        for part in self.parts():
            yield from part.read(sink)

    def _paths(self) -> list[Path]:
        if self.path.is_file():
            return [self.path]
        if not self.path.is_dir():
            from fhir_hcc.errors import InputError

            raise InputError(f"{self.path}: no such file or directory")
        return sorted(
            path
            for path in self.path.rglob("*")
            if (path.name.endswith(self.SUFFIXES) or path.name in NOT_DATA)
            and not _hidden(path.relative_to(self.path).parent)
            and path.is_file()
        )


def _hidden(folder: Path) -> bool:
    """Inside a hidden folder (a pull's `.pull-partial` staging, `.git`, ...)."""
    return any(part.startswith(".") for part in folder.parts)


def _part(path: Path) -> Part:
    if not_data_note(str(path)) is not None:
        return NotData(path)
    return NdjsonSlice(path) if is_ndjson(path) else JsonFile(path)


class NotData:
    """A file a pull, export or Bulk Data client writes beside the data: noted, not read."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self, sink: ProblemSink) -> Iterator[Item]:
        note = not_data_note(str(self.path))
        if note is not None:
            sink(note)
        yield from ()


class JsonFile:
    """A file of one JSON resource: a Bundle (its entries, nested Bundles too) or any other."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self, sink: ProblemSink) -> Iterator[Item]:
        yield from read_json(self.path, sink)


def read_ndjson(path: Path, sink: ProblemSink) -> Iterator[Item]:
    """One item per non-blank line, left undecoded: the mapping stage decodes it."""
    yield from NdjsonSlice(path).read(sink)


class NdjsonSlice:
    """Whole lines of an NDJSON file from byte `start` (a line start) up to `end` (the whole
    file by default), numbered from 1 within the slice: one worker's share of a large file."""

    def __init__(self, path: Path, start: int = 0, end: int | None = None) -> None:
        self.path, self.start, self.end = path, start, end
        self.lines = 0  # lines read, blank ones included: the next slice's numbering offset

    def read(self, sink: ProblemSink) -> Iterator[Item]:
        location = str(self.path)
        lines = Lines(self.path, self.start, self.end)
        try:
            for number, line in lines:
                yield line, Origin(location, number)
        except UnreadableFile as error:
            sink(InputProblem(Origin(location), None, None, str(error)))
        finally:
            self.lines = lines.count


Part = NotData | JsonFile | NdjsonSlice


# Called with (bytes read, bytes in all) each time a file or a slice of one has been read.
ReadProgress = Callable[[int, int], None]


class Metered:
    """The parts of a file source read in turn, reporting progress after each."""

    def __init__(self, parts: list[Part], progress: ReadProgress) -> None:
        self.parts, self.progress = parts, progress

    def read(self, sink: ProblemSink) -> Iterator[Item]:
        sizes = [part_size(part) for part in self.parts]
        done, total = 0, sum(sizes)
        for part, size in zip(self.parts, sizes, strict=True):
            yield from part.read(sink)
            done += size
            self.progress(done, total)


def part_size(part: Part) -> int:
    if isinstance(part, NdjsonSlice) and part.end is not None:
        return part.end - part.start
    return part.path.stat().st_size


def partitions(source: FileSource, chunk_bytes: int) -> list[Part]:
    """The parts of a source cut to about `chunk_bytes`, in reading order.

    Plain NDJSON files are cut at line starts; Bundles and gzip files stay whole.
    """
    parts: list[Part] = []
    for part in source.parts():
        size = part.path.stat().st_size
        if not isinstance(part, NdjsonSlice) or part.path.suffix == ".gz" or size <= chunk_bytes:
            parts.append(part)
            continue
        with open(part.path, "rb") as handle:
            starts = [0]
            while starts[-1] + chunk_bytes < size:
                handle.seek(starts[-1] + chunk_bytes)
                handle.readline()  # to the start of the next line
                if handle.tell() >= size:
                    break
                starts.append(handle.tell())
        ends = [*starts[1:], size]
        parts += [NdjsonSlice(part.path, a, b) for a, b in zip(starts, ends, strict=True)]
    return parts


def read_json(path: Path, sink: ProblemSink) -> Iterator[Item]:
    location = str(path)
    origin = Origin(location)
    try:
        resource = orjson.loads(path.read_bytes().removeprefix(codecs.BOM_UTF8))
    except OSError as error:
        sink(InputProblem(origin, None, None, f"cannot read file: {error.strerror or error}"))
        return
    except orjson.JSONDecodeError as error:
        sink(InputProblem(origin, None, None, f"malformed JSON ({error.msg})"))
        return
    if not _is_resource(resource, origin, sink):
        return
    if resource["resourceType"] == "Bundle":
        yield from _bundle_entries(resource, location, sink)
    else:
        yield from _encoded(resource, origin, sink)


def _bundle_entries(bundle: dict[str, Any], location: str, sink: ProblemSink) -> Iterator[Item]:
    bundle_id = bundle.get("id")
    bundle_ref = f"Bundle/{bundle_id}" if isinstance(bundle_id, str) and bundle_id else None
    entries = bundle.get("entry")
    if not isinstance(entries, list):
        problem = "entry is not a list" if entries else "Bundle has no entries"
        sink(InputProblem(Origin(location), bundle_ref, "entry", problem))
        return
    if not entries:
        sink(InputProblem(Origin(location), bundle_ref, "entry", "Bundle has no entries"))
        return
    aliases = _entry_aliases(entries)
    for number, entry in enumerate(entries, start=1):
        origin = Origin(location, number)
        if not isinstance(entry, dict):
            sink(InputProblem(origin, bundle_ref, "entry", "entry is not an object"))
            continue
        resource = entry.get("resource")
        if resource is None:
            sink(InputProblem(origin, bundle_ref, "entry.resource", "entry has no resource"))
            continue
        search = entry.get("search")
        if isinstance(search, dict) and search.get("mode") == "outcome":
            sink(InputProblem(origin, None, "entry.search.mode", "search outcome, not data", True))
            continue
        if not _is_resource(resource, origin, sink):
            continue
        if resource["resourceType"] == "Bundle":
            yield from _bundle_entries(resource, location, sink)
            continue
        full_url = entry.get("fullUrl")
        if "id" not in resource and isinstance(full_url, str) and full_url in aliases:
            resource["id"] = aliases[full_url].split("/", 1)[1]
        if aliases:
            _rewrite_references(resource, aliases)
        yield from _encoded(resource, origin, sink)


def _encoded(resource: dict[str, Any], origin: Origin, sink: ProblemSink) -> Iterator[Item]:
    try:
        yield orjson.dumps(resource), origin
    except orjson.JSONEncodeError:  # deeper than the encoder's limit of 255 levels
        ref = _reference(resource)
        sink(InputProblem(origin, ref, None, "nested too deeply to read"))


def _entry_aliases(entries: list[Any]) -> dict[str, str]:
    """fullUrl -> "Type/id" for every entry, so references between entries can be made local."""
    aliases: dict[str, str] = {}
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        full_url, resource = entry.get("fullUrl"), entry.get("resource")
        if not isinstance(full_url, str) or not full_url or not isinstance(resource, dict):
            continue
        resource_type, resource_id = resource.get("resourceType"), resource.get("id")
        if not isinstance(resource_type, str) or not resource_type:
            continue
        if not isinstance(resource_id, str) or not resource_id:
            resource_id = full_url.rsplit(":", 1)[-1].rsplit("/", 1)[-1]
        aliases[full_url] = f"{resource_type}/{resource_id}"
    return aliases


def _rewrite_references(node: Any, aliases: dict[str, str]) -> None:
    # A loop over a stack, not recursion: nesting thousands of levels deep must not overflow.
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, dict):
            for key, value in current.items():
                if key == "reference" and isinstance(value, str) and value in aliases:
                    current[key] = aliases[value]
                elif isinstance(value, dict | list):
                    stack.append(value)
        elif isinstance(current, list):
            stack.extend(item for item in current if isinstance(item, dict | list))


def _is_resource(value: Any, origin: Origin, sink: ProblemSink) -> bool:
    if not isinstance(value, dict):
        sink(InputProblem(origin, None, None, "not a JSON object"))
        return False
    resource_type = value.get("resourceType")
    if not isinstance(resource_type, str) or not resource_type:
        ref = f"?/{value['id']}" if isinstance(value.get("id"), str) else None
        sink(InputProblem(origin, ref, "resourceType", "missing resourceType"))
        return False
    return True


def _reference(resource: dict[str, Any]) -> str:
    resource_id = resource.get("id")
    return f"{resource['resourceType']}/{resource_id if isinstance(resource_id, str) else '?'}"
