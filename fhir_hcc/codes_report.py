"""The codes report behind `fhir-hcc codes`: which codes the data holds, and what they map to.

Every (system, code, display) found in the fields the mappers read is counted per resource type
and field, and classified against the mappings in use: `concept.class` by code, by a text pattern
on the display only (`mapped_by = text`), or unmapped. A CodeableConcept with text but no coding
is listed with an empty system and code and its text as display. The source is streamed; memory
grows with the number of distinct codes, not resources.

Order (the `group` column), so that what a site must add comes first:

1. `unmapped-local`: unmapped in a field the cohort uses (Condition.code, Procedure.code,
   medication codes, Observation.code, ...) and from a code system the mappings do not know
   (a local code system, or none): almost always a local code to map;
2. `unmapped-standard`: unmapped in such a field, from a known system (LOINC, SNOMED CT, ...):
   most are routine labs, vitals and comorbidities the cohort does not need (haemoglobin, blood
   pressure, hypertension), so they come after the local codes however frequent they are;
3. `text-only`: no code matches, but a text pattern matches the display: it works, but adding
   the code is safer;
4. `other-field`: unmapped in a field read only for detail (body sites, routes, result values,
   interpretations, discharge dispositions);
5. `mapped`: the code maps.

Within a group, the most frequent come first.
"""

from __future__ import annotations

import csv
import typing
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import msgspec

from fhir_hcc.errors import InputError
from fhir_hcc.fhir.datatypes import (
    CodeableConcept,
    CodeableReference,
    Coding,
    Extension,
    Resource,
)
from fhir_hcc.inputs import is_server_url
from fhir_hcc.mappers import SCHEMAS
from fhir_hcc.mappers.context import extension_values
from fhir_hcc.mappers.reading import Reader
from fhir_hcc.mappings import Mappings
from fhir_hcc.problems import ProblemSink
from fhir_hcc.sources import FileSource, InTurn, ReadProgress, Source

GROUPS = ("unmapped-local", "unmapped-standard", "text-only", "other-field", "mapped")
CSV_COLUMNS = (
    "group", "count", "resource_type", "field", "system", "code", "display", "mapped_to",
    "mapped_by",
)  # fmt: skip

# A typed resource -> the CodeableConcepts at one field.
Extract = Callable[[Any, Mappings], Iterable[CodeableConcept]]


@dataclass(frozen=True, slots=True)
class _Field:
    name: str
    extract: Extract
    concepts: tuple[str, ...]
    relevant: bool


def _fields(schema: type[msgspec.Struct], prefix: tuple[str, ...] = ()) -> Iterator[_Field]:
    """The coded fields a mapper's struct declares (`reads(...)` metadata), nested ones too."""
    hints = typing.get_type_hints(schema, include_extras=True)
    for name in schema.__struct_fields__:
        hint = hints[name]
        path = (*prefix, name)
        meta = _reads(hint)
        inner = _struct_of(hint)
        if meta is not None and meta["extensions"]:
            for key, concepts in meta["extensions"].items():
                yield _Field(_extension_label(key), _extension_values(key), concepts, True)
        elif meta is not None:
            if inner is CodeableReference:
                path = (*path, "concept")
            yield _Field(".".join(path), _element(*path), meta["concepts"], not meta["detail"])
        elif inner is not None and inner not in _DATATYPES and not issubclass(inner, Resource):
            yield from _fields(inner, path)


_DATATYPES = (CodeableConcept, CodeableReference, Extension)


def _reads(hint: Any) -> dict[str, Any] | None:
    if typing.get_origin(hint) is typing.Annotated:
        for meta in hint.__metadata__:
            if isinstance(meta, msgspec.Meta) and meta.extra and "concepts" in meta.extra:
                return meta.extra
    return None


def _struct_of(hint: Any) -> type[msgspec.Struct] | None:
    """The struct type of an element (`X`, `X | None`, `list[X]`, annotated or not)."""
    if typing.get_origin(hint) is typing.Annotated:
        hint = typing.get_args(hint)[0]
    for candidate in (hint, *typing.get_args(hint)):
        for kind in (candidate, *typing.get_args(candidate)):
            if isinstance(kind, type) and issubclass(kind, msgspec.Struct):
                return kind
    return None


def _element(*path: str) -> Extract:
    """The CodeableConcept(s) at a path of single or repeating elements."""

    def extract(resource: Any, _: Mappings) -> Iterable[Any]:
        nodes: list[Any] = [resource]
        for key in path:
            found: list[Any] = []
            for node in nodes:
                value = getattr(node, key, None)
                found += value if isinstance(value, list) else [value]
            nodes = [node for node in found if node is not None]
        return nodes

    return extract


def _extension_values(key: str) -> Extract:
    def extract(resource: Any, mappings: Mappings) -> Iterable[Any]:
        for extension in extension_values(resource.extension, mappings.extension_urls(key)):
            if extension.valueCodeableConcept:  # another value[x] has no code to list
                yield extension.valueCodeableConcept

    return extract


def _extension_label(key: str) -> str:
    head, *rest = key.split("_")
    return f"extension[{head}{''.join(word.title() for word in rest)}]"


FIELDS: dict[str, list[_Field]] = {name: list(_fields(schema)) for name, schema in SCHEMAS.items()}
_FIELD_INDEX = {(rtype, f.name): f for rtype, fields in FIELDS.items() for f in fields}

_Key = tuple[str, str, str, str, str]  # resource type, field, system, code, display


@dataclass(frozen=True, slots=True)
class CodeRow:
    """One (system, code, display) in one field of one resource type, and what it maps to."""

    resource_type: str
    field: str
    system: str
    code: str
    display: str
    count: int
    mapped_to: tuple[str, ...]  # "concept.class", in the field's concept order
    mapped_by: str  # "code", "text" or ""
    relevant: bool  # a field the cohort uses, not one read for detail only
    known_system: bool  # the system is declared in a systems.toml

    @property
    def group(self) -> str:
        if self.mapped_by == "code":
            return "mapped"
        if not self.relevant:
            return "other-field"
        if self.mapped_by == "text":
            return "text-only"
        return "unmapped-standard" if self.known_system else "unmapped-local"

    def csv_row(self) -> list[Any]:
        mapped = ";".join(self.mapped_to) or "unmapped"
        return [
            self.group, self.count, self.resource_type, self.field, self.system, self.code,
            self.display, mapped, self.mapped_by,
        ]  # fmt: skip


def collect_codes(
    source: str | Path,
    mappings: Mappings,
    sink: ProblemSink,
    progress: ReadProgress | None = None,
) -> list[CodeRow]:
    """Count and classify the codes of a file or directory source, in report order.

    Unreadable input goes to `sink` (an `InputProblem` each) and is skipped; `progress` is
    called with (bytes read, bytes in all) as the files are read."""
    if is_server_url(source):
        raise InputError(
            f"{source}: `codes` reads files; pull the server first (fhir-hcc pull, or "
            "fhir-hcc fixtures capture) and pass the folder"
        )
    files = FileSource(source)
    reading = InTurn(files.parts(), progress) if progress is not None else files
    return code_rows(source_codes(reading, mappings, sink), mappings)


def source_codes(source: Source, mappings: Mappings, sink: ProblemSink) -> Counter[_Key]:
    """The codes of every resource a source reads, counted (see `count_codes`)."""
    return count_codes(_resources(source, sink), mappings)


def code_rows(counts: Counter[_Key], mappings: Mappings) -> list[CodeRow]:
    """Counted codes, classified, in report order (the Spark engine counts them in parts)."""
    rows = [_classify(key, count, mappings) for key, count in counts.items()]
    return sorted(rows, key=_order)


def count_codes(resources: Iterable[Resource], mappings: Mappings) -> Counter[_Key]:
    """Occurrences of each (type, field, system, code, display), contained resources included."""
    counts: Counter[_Key] = Counter()
    for resource in resources:
        for inner in (resource, *getattr(resource, "contained", ())):
            resource_type = inner.resourceType
            for field in FIELDS.get(resource_type, ()):
                for concept in field.extract(inner, mappings):
                    counts.update(_keys(resource_type, field.name, concept))
    return counts


def _keys(resource_type: str, field: str, concept: CodeableConcept) -> Iterator[_Key]:
    for coding in concept.coding:
        yield (
            resource_type,
            field,
            coding.system or "",
            coding.code or "",
            coding.display or "",
        )
    if not concept.coding and concept.text:
        yield resource_type, field, "", "", concept.text


def _resources(source: Source, sink: ProblemSink) -> Iterator[Resource]:
    reader = Reader(SCHEMAS, sink)
    for line, origin in source.read(sink):
        resource = reader.read(line, origin)
        if resource is not None:
            yield resource


def _classify(key: _Key, count: int, mappings: Mappings) -> CodeRow:
    resource_type, field_name, system, code, display = key
    field = _FIELD_INDEX[resource_type, field_name]
    coding = Coding(system, code)
    matches = [m for c in field.concepts if (m := mappings.match_coding(c, coding)) is not None]
    mapped_by = "code" if matches else ""
    if not matches and display:
        matches = [m for c in field.concepts if (m := mappings.match_text(c, display)) is not None]
        mapped_by = "text" if matches else ""
    canonical, _ = mappings.normalise(system, code)
    return CodeRow(
        resource_type,
        field_name,
        system,
        code,
        display,
        count,
        tuple(f"{m.concept}.{m.cls}" for m in matches),
        mapped_by,
        field.relevant,
        _known_system(mappings, canonical),
    )


def _known_system(mappings: Mappings, canonical: str) -> bool:
    # Mappings offers no public test for "declared in a systems.toml"; its index is the truth.
    return bool(canonical) and mappings.knows_system(canonical)


def _order(row: CodeRow) -> tuple[Any, ...]:
    return (GROUPS.index(row.group), -row.count, row.resource_type, row.field, row.system, row.code)


def write_codes_csv(rows: Iterable[CodeRow], out: TextIO) -> None:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    writer.writerows(row.csv_row() for row in rows)


def summary(rows: list[CodeRow], shown: int = 10) -> str:
    """Counts per group, then the first unmapped codes to look at."""
    by_group = Counter(row.group for row in rows)
    lines = ["codes by group: " + ", ".join(f"{g} {by_group[g]}" for g in GROUPS)]
    first = [row for row in rows if row.group in GROUPS[:2]][:shown]
    if first:
        lines.append("first unmapped codes:")
    for row in first:
        label = f"{row.system}|{row.code}" if row.code else "(text only)"
        lines.append(f"  {row.count:>7}  {row.resource_type}.{row.field}  {label}  {row.display!r}")
    return "\n".join(lines)
