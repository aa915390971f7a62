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
from collections.abc import Callable, Iterator, Sequence
from itertools import accumulate
from pathlib import Path, PurePath
from typing import Any, Protocol

import msgspec

from fhir_hcc.fhir.ndjson import SUFFIXES as NDJSON_SUFFIXES
from fhir_hcc.fhir.ndjson import Lines, UnreadableFile, is_ndjson
from fhir_hcc.fhir.references import label
from fhir_hcc.fhir.shape import malformed_json
from fhir_hcc.problems import InputProblem, Origin, ProblemSink

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
    name = PurePath(location).name  # a local path or a URI Spark lists, either separator
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
            if is_listed(path.relative_to(self.path).parts) and path.is_file()
        )


def is_listed(parts: Sequence[str]) -> bool:
    """Whether a file at this path below a source's folder is read or noted: a data or metadata
    name, not inside a hidden folder (a pull's `.pull-partial` staging, `.git`, ...)."""
    *folders, name = parts
    wanted = name.endswith(FileSource.SUFFIXES) or name in NOT_DATA
    return wanted and not any(folder.startswith(".") for folder in folders)


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
    file by default), numbered on from `lines_before` (the lines of the file before the slice,
    where known): one worker's share of a large file."""

    def __init__(
        self, path: Path, start: int = 0, end: int | None = None, lines_before: int = 0
    ) -> None:
        self.path, self.start, self.end = path, start, end
        self.lines_before = lines_before
        self.lines = 0  # lines read, blank ones included: the next slice's numbering offset

    def read(self, sink: ProblemSink) -> Iterator[Item]:
        location, before = str(self.path), self.lines_before
        lines = Lines(self.path, self.start, self.end)
        try:
            for number, line in lines:
                yield line, Origin(location, before + number)
        except UnreadableFile as error:
            sink(InputProblem(Origin(location), None, None, str(error)))
        finally:
            self.lines = lines.count


Part = NotData | JsonFile | NdjsonSlice


# Called with (bytes read, bytes in all) each time a file or a slice of one has been read.
ReadProgress = Callable[[int, int], None]


class InTurn:
    """Parts read in turn as one source: a file source's parts, or one worker's share of them.
    A file's lines are numbered on across its slices here, and `lines` counts each file's lines
    read (a later share of the file numbers on from them); `progress` is told after each part.
    """

    def __init__(self, parts: list[Part], progress: ReadProgress | None = None) -> None:
        self.parts, self.progress = parts, progress
        self.lines: dict[str, int] = {}

    @property
    def size(self) -> int:
        return sum(part_size(part) for part in self.parts)

    def read(self, sink: ProblemSink) -> Iterator[Item]:
        # For progress, the sizes as listed: a file that goes while it is read is a problem
        # reported by its reader, not an error here.
        reached = list(accumulate(map(part_size, self.parts))) if self.progress else []
        for index, part in enumerate(self.parts):
            if isinstance(part, NdjsonSlice):
                location = str(part.path)
                part = NdjsonSlice(part.path, part.start, part.end, self.lines.get(location, 0))
                yield from part.read(sink)
                self.lines[location] = part.lines_before + part.lines
            else:
                yield from part.read(sink)
            if self.progress is not None:
                self.progress(reached[index], reached[-1])


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


def shares_of(parts: list[Part], share_bytes: int) -> list[InTurn]:
    """Consecutive parts grouped into shares of at least `share_bytes` (the last one may be
    smaller), in reading order: what one worker reads at a time."""
    found: list[InTurn] = []
    current: list[Part] = []
    size = 0
    for part in parts:
        current.append(part)
        size += part_size(part)
        if size >= share_bytes:
            found.append(InTurn(current))
            current, size = [], 0
    if current:
        found.append(InTurn(current))
    return found


def read_json(path: Path, sink: ProblemSink) -> Iterator[Item]:
    location = str(path)
    try:
        data = path.read_bytes().removeprefix(codecs.BOM_UTF8)
    except OSError as error:
        sink(InputProblem(Origin(location), None, None, f"cannot read file: {error.strerror}"))
        return
    yield from _document(data, location, None, sink)


class _Shell(msgspec.Struct):
    """What is read of a JSON file or Bundle entry before its parts: the rest stays text."""

    resourceType: Any = None
    id: Any = None
    entry: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET  # a Bundle's, each read on its own
    fullUrl: Any = None  # of an entry
    search: Any = None  # of an entry
    resource: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET  # of an entry

    @property
    def resource_text(self) -> bytes | None:
        """An entry's resource as written; None when it has none (absent or null)."""
        text = bytes(self.resource) if self.resource is not msgspec.UNSET else b"null"
        return None if text == b"null" else text


_shell = msgspec.json.Decoder(_Shell).decode
_raw_list = msgspec.json.Decoder(list[msgspec.Raw]).decode
# What reading a part of a JSON file may raise: bad syntax, invalid UTF-8, too deep a nesting.
_UNREADABLE = (msgspec.DecodeError, UnicodeDecodeError, RecursionError)


def _document(text: bytes, location: str, number: int | None, sink: ProblemSink) -> Iterator[Item]:
    """A resource read whole from a file or an entry: a Bundle's entries, or the resource."""
    origin = Origin(location, number)
    try:
        shell = _shell(text)
    except msgspec.ValidationError:
        sink(InputProblem(origin, None, None, "not a JSON object"))
        return
    except _UNREADABLE as error:
        sink(InputProblem(origin, None, None, malformed_json(text, error)))
        return
    if not isinstance(shell.resourceType, str) or not shell.resourceType:
        ref = label(None, shell.id) if isinstance(shell.id, str) else None
        sink(InputProblem(origin, ref, "resourceType", "missing resourceType"))
    elif shell.resourceType == "Bundle":
        yield from _bundle_entries(shell, location, sink)
    else:
        yield text, origin


def _bundle_entries(bundle: _Shell, location: str, sink: ProblemSink) -> Iterator[Item]:
    """Each entry read on its own: a malformed one costs only itself."""
    bundle_ref = label("Bundle", bundle.id) if bundle.id else None
    try:
        entries = _raw_list(bundle.entry) if bundle.entry is not msgspec.UNSET else []
    except msgspec.ValidationError:
        sink(InputProblem(Origin(location), bundle_ref, "entry", "entry is not a list"))
        return
    if not entries:
        sink(InputProblem(Origin(location), bundle_ref, "entry", "Bundle has no entries"))
        return
    shells = [_entry(raw) for raw in entries]
    aliases = _entry_aliases(shells)
    for number, entry in enumerate(shells, start=1):
        origin = Origin(location, number)
        if entry is None:
            sink(InputProblem(origin, bundle_ref, "entry", "entry is not an object"))
        elif entry.resource_text is None:
            sink(InputProblem(origin, bundle_ref, "entry.resource", "entry has no resource"))
        elif isinstance(entry.search, dict) and entry.search.get("mode") == "outcome":
            sink(InputProblem(origin, None, "entry.search.mode", "search outcome, not data", True))
        elif not aliases:  # nothing to rewrite: the entry's text as it is
            yield from _document(entry.resource_text or b"", location, number, sink)
        else:
            yield from _with_local_references(entry, aliases, origin, sink)


def _entry(raw: msgspec.Raw) -> _Shell | None:
    try:
        return _shell(raw)
    except (msgspec.ValidationError, *_UNREADABLE):
        return None


def _with_local_references(
    entry: _Shell, aliases: dict[str, str], origin: Origin, sink: ProblemSink
) -> Iterator[Item]:
    """The entry's resource with `urn:uuid:` and absolute references to other entries made
    `Type/id` (and an id from its fullUrl when it has none)."""
    text = entry.resource_text or b""
    try:
        resource = msgspec.json.decode(text)
    except msgspec.ValidationError:  # a number out of range
        sink(InputProblem(origin, None, None, "malformed JSON (number out of range)"))
        return
    except _UNREADABLE as error:
        sink(InputProblem(origin, None, None, malformed_json(text, error)))
        return
    if not isinstance(resource, dict):
        sink(InputProblem(origin, None, None, "not a JSON object"))
        return
    if "id" not in resource and isinstance(entry.fullUrl, str) and entry.fullUrl in aliases:
        resource["id"] = aliases[entry.fullUrl].split("/", 1)[1]
    _rewrite_references(resource, aliases)
    yield from _document(msgspec.json.encode(resource), origin.location, origin.line, sink)


def _entry_aliases(entries: list[_Shell | None]) -> dict[str, str]:
    """fullUrl -> "Type/id" for every entry, so references between entries can be made local."""
    aliases: dict[str, str] = {}
    for entry in entries:
        text = entry.resource_text if entry is not None else None
        if entry is None or text is None:
            continue
        full_url = entry.fullUrl
        if not isinstance(full_url, str) or not full_url:
            continue
        try:
            head = _shell(text)
        except (msgspec.ValidationError, *_UNREADABLE):
            continue
        resource_type, resource_id = head.resourceType, head.id
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
