"""The FHIR vocabulary: the one reference parser, NDJSON reading, and the types the cohort reads."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from fhir_hcc.fhir.ndjson import UnreadableFile, read_lines
from fhir_hcc.fhir.references import Target, parse_reference, subject_of
from fhir_hcc.fhir.types import COHORT_TYPES, FETCHED_BY_ID, PATIENT_TYPES, RESOURCE_TYPES
from fhir_hcc.mappers import MAPPERS


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Patient/p1", Target("Patient", "p1")),
        ("Patient/with_underscore", Target("Patient", "with_underscore")),
        ("Patient/" + "x" * 100, Target("Patient", "x" * 100)),  # Epic ids exceed 64
        ("Medication/m.1", Target("Medication", "m.1")),
        ("Patient/p1/_history/3", Target("Patient", "p1")),
        (
            "https://ehr.example.org/fhir/R4/Patient/p1",
            Target("Patient", "p1", "https://ehr.example.org/fhir/R4"),
        ),
        (
            "https://ehr.example.org/fhir/Patient/p1/_history/2",
            Target("Patient", "p1", "https://ehr.example.org/fhir"),
        ),
    ],
)
def test_parse_reference(text: str, expected: Target) -> None:
    assert parse_reference(text) == expected


@pytest.mark.parametrize(
    "text",
    ["", "Patient/", "Patient", "#med1", "urn:uuid:0b1c", "Foo/1", "patient/p1", "Patient/a b",
     "Patient/p1?x=1", "Patient//"],
)  # fmt: skip
def test_parse_reference_refuses(text: str) -> None:
    assert parse_reference(text) is None


def test_subject_of_reads_subject_then_patient_and_only_patients() -> None:
    assert subject_of({"subject": {"reference": "Patient/a"}}) == Target("Patient", "a")
    assert subject_of({"patient": {"reference": "Patient/b"}}) == Target("Patient", "b")
    assert subject_of({"subject": {"reference": "Group/g"}}) is None
    assert subject_of({"subject": "Patient/a"}) is None  # a string is not a Target
    assert subject_of({"subject": {"reference": 7}}) is None
    assert subject_of({}) is None


def test_read_lines_numbers_skip_blank_and_drop_bom(tmp_path: Path) -> None:
    path = tmp_path / "x.ndjson"
    path.write_bytes(b'\xef\xbb\xbf{"a":1}\r\n\n   \n{"b":2}\n{"c":3}')
    assert [(n, line.strip()) for n, line in read_lines(path)] == [
        (1, b'{"a":1}'),
        (4, b'{"b":2}'),
        (5, b'{"c":3}'),
    ]


def test_read_lines_gzip_and_truncated_gzip(tmp_path: Path) -> None:
    path = tmp_path / "x.ndjson.gz"
    data = gzip.compress(b"".join(b'{"n":%d}\n' % n for n in range(5000)))
    path.write_bytes(data)
    assert sum(1 for _ in read_lines(path)) == 5000
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(UnreadableFile, match="cannot read file"):
        for _ in read_lines(path):
            pass


def test_cohort_types_are_what_the_mappers_read() -> None:
    assert set(COHORT_TYPES) == set(MAPPERS)
    assert set(COHORT_TYPES) <= RESOURCE_TYPES
    assert set(PATIENT_TYPES) | FETCHED_BY_ID == set(COHORT_TYPES)


def test_every_struct_declares_its_choices_whole() -> None:
    """A mapper reads a choice (effective[x], ...) under every suffix of the one table, and a
    malformed dated one costs the resource: no struct may declare only some of them."""
    from typing import get_type_hints

    from fhir_hcc.fhir.datatypes import DATED_SUFFIXES, UNDATED_SUFFIXES, Period, dated
    from fhir_hcc.mappers import SCHEMAS

    suffixes = (*DATED_SUFFIXES, *UNDATED_SUFFIXES)
    for name, schema in SCHEMAS.items():
        hints = get_type_hints(schema)
        for base in schema.CHOICES:
            assert {base + s for s in suffixes} <= set(schema.__struct_fields__), name
            assert hints[base + "Period"] == Period | None
            assert dated(base) <= schema.ESSENTIAL, name
