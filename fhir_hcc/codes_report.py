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
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from fhir_hcc.errors import InputError
from fhir_hcc.inputs import is_server_url
from fhir_hcc.mappings import Mappings
from fhir_hcc.sources import FileSource, ProblemSink, decode

GROUPS = ("unmapped-local", "unmapped-standard", "text-only", "other-field", "mapped")
CSV_COLUMNS = (
    "group", "count", "resource_type", "field", "system", "code", "display", "mapped_to",
    "mapped_by",
)  # fmt: skip

Extract = Callable[[dict[str, Any], Mappings], Iterable[Any]]  # resource -> CodeableConcepts


@dataclass(frozen=True, slots=True)
class _Field:
    name: str
    extract: Extract
    concepts: tuple[str, ...]
    relevant: bool


def _element(*path: str) -> Extract:
    """The CodeableConcept(s) at a path of single or repeating elements."""

    def extract(resource: dict[str, Any], _: Mappings) -> Iterable[Any]:
        nodes: list[Any] = [resource]
        for key in path:
            found = []
            for node in nodes:
                value = node.get(key) if isinstance(node, dict) else None
                found += value if isinstance(value, list) else [value]
            nodes = [node for node in found if node is not None]
        return nodes

    return extract


def _extension_values(key: str) -> Extract:
    def extract(resource: dict[str, Any], mappings: Mappings) -> Iterable[Any]:
        urls = mappings.extension_urls(key)
        for extension in resource.get("extension") or []:
            if isinstance(extension, dict) and extension.get("url", "").split("|")[0] in urls:
                yield extension.get("valueCodeableConcept")

    return extract


_CONDITION = ("hcc", "hepatitis_b", "hepatitis_c", "recurrence", "transplant")
_PROCEDURE = ("resection", "y90", "transplant")
_OBSERVATION = ("hepatitis_b", "afp", "pathology", "recurrence", "death")
_VALUE = ("results", "hepatitis_b", "death", "recurrence", "pathology", "hcc")
_DRUG = ("chemotherapy", "y90")
_MEDICATION_USE = [
    _Field("medicationCodeableConcept", _element("medicationCodeableConcept"), _DRUG, True),
    _Field("medication.concept", _element("medication", "concept"), _DRUG, True),
    _Field("dosage.route", _element("dosage", "route"), ("routes",), False),
]
FIELDS: dict[str, list[_Field]] = {
    "Condition": [
        _Field("code", _element("code"), _CONDITION, True),
        _Field(
            "extension[histologyMorphologyBehavior]",
            _extension_values("histology_morphology_behavior"),
            ("hcc",),
            True,
        ),
        _Field("bodySite", _element("bodySite"), ("liver_segments",), False),
    ],
    "Procedure": [
        _Field("code", _element("code"), _PROCEDURE, True),
        _Field("bodySite", _element("bodySite"), ("liver_segments",), False),
    ],
    "MedicationAdministration": _MEDICATION_USE,
    "MedicationStatement": _MEDICATION_USE,
    "MedicationRequest": [
        *_MEDICATION_USE[:2],
        _Field(
            "dosageInstruction.route", _element("dosageInstruction", "route"), ("routes",), False
        ),
    ],
    "Medication": [
        _Field("code", _element("code"), ("chemotherapy",), True),
        _Field(
            "ingredient.itemCodeableConcept",
            _element("ingredient", "itemCodeableConcept"),
            ("chemotherapy",),
            True,
        ),
    ],
    "Observation": [
        _Field("code", _element("code"), _OBSERVATION, True),
        _Field("valueCodeableConcept", _element("valueCodeableConcept"), _VALUE, False),
        _Field("interpretation", _element("interpretation"), ("results",), False),
    ],
    "Encounter": [
        _Field(
            "hospitalization.dischargeDisposition",
            _element("hospitalization", "dischargeDisposition"),
            ("death",),
            False,
        ),
    ],
    "DiagnosticReport": [_Field("code", _element("code"), ("pathology",), True)],
}
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


def collect_codes(source: str | Path, mappings: Mappings, report: ProblemSink) -> list[CodeRow]:
    """Count and classify the codes of a file or directory source, in report order.

    Unreadable input goes to `report` (an `InputProblem` each) and is skipped."""
    if is_server_url(source):
        raise InputError(
            f"{source}: `codes` reads files; pull the server first (fhir-hcc pull, or "
            "fhir-hcc fixtures capture) and pass the folder"
        )
    counts = count_codes(_resources(FileSource(source), report), mappings)
    rows = [_classify(key, count, mappings) for key, count in counts.items()]
    return sorted(rows, key=_order)


def count_codes(resources: Iterable[dict[str, Any]], mappings: Mappings) -> Counter[_Key]:
    """Occurrences of each (type, field, system, code, display), contained resources included."""
    counts: Counter[_Key] = Counter()
    for resource in resources:
        for inner in (resource, *_contained(resource)):
            resource_type = inner.get("resourceType", "")
            for field in FIELDS.get(resource_type, ()):
                for concept in field.extract(inner, mappings):
                    counts.update(_keys(resource_type, field.name, concept))
    return counts


def _contained(resource: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for r in resource.get("contained") or [] if isinstance(r, dict)]


def _keys(resource_type: str, field: str, concept: Any) -> Iterator[_Key]:
    if not isinstance(concept, dict):
        return
    codings = [c for c in concept.get("coding") or [] if isinstance(c, dict)]
    for coding in codings:
        yield (
            resource_type,
            field,
            str(coding.get("system") or ""),
            str(coding.get("code") or ""),
            str(coding.get("display") or ""),
        )
    if not codings and concept.get("text"):
        yield resource_type, field, "", "", str(concept["text"])


def _resources(source: FileSource, report: ProblemSink) -> Iterator[dict[str, Any]]:
    for item, origin in source.read(report):
        resource = decode(item, origin, report) if isinstance(item, bytes) else item
        if resource is not None:
            yield resource


def _classify(key: _Key, count: int, mappings: Mappings) -> CodeRow:
    resource_type, field_name, system, code, display = key
    field = _FIELD_INDEX[resource_type, field_name]
    coding = {"system": system, "code": code}
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
