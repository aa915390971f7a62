"""The hot path's short ways give what the full way gives, on every shape a routine resource
comes in: a routine lab added as a contact (`MapContext.contact_only`), a code's classes
worked out once per spelling (`Mappings.read_code`)."""

from __future__ import annotations

import itertools
from typing import Any

import orjson
import pytest

from fhir_hcc.cohort import collect, derive_cohort
from fhir_hcc.config import CohortConfig
from fhir_hcc.facts import Collected
from fhir_hcc.fhir.datatypes import CodeableConcept, Coding
from fhir_hcc.mappers.context import MapContext
from fhir_hcc.mappings import Mappings, load_mappings
from fhir_hcc.problems import Origin
from fhir_hcc.sources import Item, ProblemSink

LOINC = "http://loinc.org"
# Where a routine lab says whose it is, and when it was made: the usual shape first, then
# every shape the short way must leave to the full way (which reports or notes it).
SUBJECTS: list[dict[str, Any]] = [
    {"subject": {"reference": "Patient/p1"}},
    {"patient": {"reference": "Patient/p1"}},  # STU3
    {"subject": {"reference": "Group/g1"}},
    {"subject": {"reference": "#contained"}},
    {"subject": {"display": "no reference"}},
    {},
]
DATES: list[dict[str, Any]] = [
    {"effectiveDateTime": "2001-02-03T10:00:00+08:00"},
    {"effectiveDateTime": "2001-02-03"},
    {"effectiveDateTime": "2001-02"},  # partial: imputed and noted
    {"effectiveDateTime": "2001"},
    {"effectiveDateTime": "03/02/2001"},  # invalid
    {"effectiveInstant": "2001-02-04T01:00:00Z"},
    {"effectivePeriod": {"start": "2001-02-05"}},
    {"effectivePeriod": {"end": "2001-02-06"}},
    {"effectiveTiming": {"event": ["2001-02-07"]}},  # undated: noted
    {},
]
STATUSES = ["final", "amended", "cancelled", "entered-in-error", None]


def _routine_labs() -> list[bytes]:
    lines = []
    for number, (subject, date, status) in enumerate(
        itertools.product(SUBJECTS, DATES, STATUSES), start=1
    ):
        resource: dict[str, Any] = {
            "resourceType": "Observation",
            "id": f"o{number}",
            "code": {"coding": [{"system": LOINC, "code": "1975-2"}]},  # bilirubin: no mapping
            **subject,
            **date,
        }
        if status is not None:
            resource["status"] = status
        lines.append(orjson.dumps(resource))
    return lines


class _Lines:
    def __init__(self, lines: list[bytes]) -> None:
        self.lines = lines

    def read(self, sink: ProblemSink) -> list[Item]:
        return [(line, Origin("labs.ndjson", n)) for n, line in enumerate(self.lines, start=1)]


def _outcome(collected: Collected, config: CohortConfig) -> tuple[Any, ...]:
    result = derive_cohort(collected, config)
    contacts = {
        patient: sorted(record.contacts.items()) for patient, record in collected.patients.items()
    }
    problems = [str(problem) for problem in collected.problems]
    return contacts, problems, result.qc.to_dict("records"), result.flow


def test_a_routine_lab_the_short_way_is_what_the_full_way_makes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    mappings, config = load_mappings(), CohortConfig()
    source = _Lines(_routine_labs())
    short = _outcome(collect(source, mappings, config), config)
    taken: list[bool] = []
    contact_only = MapContext.contact_only

    def counted(self: MapContext, resource: Any) -> bool:
        taken.append(contact_only(self, resource))
        return False  # always the full way

    monkeypatch.setattr(MapContext, "contact_only", counted)
    full = _outcome(collect(source, mappings, config), config)
    assert short == full
    assert any(taken) and not all(taken)  # the short way fits some shapes, not all
    contacts, problems, qc, _ = short
    assert [day.isoformat() for day, _ in contacts["p1"]] == [
        "2001-02-03", "2001-02-04", "2001-02-05", "2001-02-06"
    ]  # fmt: skip
    assert any("not a Patient reference" in problem for problem in problems)
    assert any("invalid date" in problem for problem in problems)
    assert {row["rule"] for row in qc} >= {"partial_date_imputed", "unmapped_choice_type"}


def test_a_code_read_once_per_spelling_is_what_each_reading_makes() -> None:
    """`read_code` keeps a reading per spelling: the same code written twice is read once, a
    code spelled differently (a display, a second coding) is read anew."""
    mappings: Mappings = load_mappings()
    calls: list[object] = []

    def reading(code: Any, given: Mappings) -> tuple[Any, ...]:
        calls.append(code)
        return given.classify("hcc", code)

    hcc = Coding("http://hl7.org/fhir/sid/icd-10-cm", "C22.0")
    first = CodeableConcept([hcc], "Liver cell carcinoma")
    same = CodeableConcept([hcc], "Liver cell carcinoma")
    other = CodeableConcept([hcc, Coding("http://snomed.info/sct", "25370001")], None)
    found = [mappings.read_code(code, reading) for code in (first, same, other, None, None)]
    assert len(calls) == 3  # first, other and None, each once
    assert found[0] == found[1] == mappings.classify("hcc", first)
    assert found[0][0].cls == "definite"
    assert found[2] == mappings.classify("hcc", other)
    assert found[3] == ()
