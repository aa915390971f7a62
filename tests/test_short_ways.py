"""The short ways give what the full way gives: a routine lab added as a contact
(`MapContext.contact_only`) on every shape it comes in, a code's classes worked out once per
spelling (`Mappings.read_code`), duplicate facts collapsed by lookup, not pairwise."""

from __future__ import annotations

import itertools
from datetime import date, timedelta
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from msgspec import structs

from fhir_hcc.cohort import collect, derive_cohort
from fhir_hcc.cohort.evidence import Evidence, _collapse
from fhir_hcc.config import CohortConfig
from fhir_hcc.dates import FhirDate
from fhir_hcc.facts import Collected, Fact, PatientFacts
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
    for number, (subject, dated, status) in enumerate(
        itertools.product(SUBJECTS, DATES, STATUSES), start=1
    ):
        resource: dict[str, Any] = {
            "resourceType": "Observation",
            "id": f"o{number}",
            "code": {"coding": [{"system": LOINC, "code": "1975-2"}]},  # bilirubin: no mapping
            **subject,
            **dated,
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


def _first_twin_collapse(kind: str, facts: list[Fact]) -> list[tuple[str, str | None]]:
    """The definition (4.7): each fact, earliest first, is the same event as the first fact kept
    before it with its business identifier, or with its code (any code, for resections) on a
    date within the tolerance from another resource. What is kept, and each twin's source."""
    tolerance = 1 if kind in {"resection", "y90", "transplant", "ablation", "embolization"} else 0
    kept: list[Fact] = []
    outcome: list[tuple[str, str | None]] = []
    for fact in sorted(facts, key=lambda f: (f.date.day if f.date else date.min, f.source)):
        twin = None
        for earlier in kept:
            identifier = earlier.get("identifier")
            if identifier and identifier == fact.get("identifier"):
                twin = earlier
                break
            code = kind == "resection" or (earlier.value, earlier.via) == (fact.value, fact.via)
            other = earlier.source != fact.source
            if code and other and _days_apart(earlier, fact) <= tolerance:
                twin = earlier
                break
        if twin is None:
            kept.append(fact)
        outcome.append((fact.source, twin.source if twin else None))
    return outcome


def _days_apart(first: Fact, second: Fact) -> float:
    if first.date is None or second.date is None:
        return float("inf")
    return abs((first.date.day - second.date.day).days)


_FACTS = st.builds(
    lambda value, via, day, source, identifier: Fact(
        "x",
        value,
        FhirDate(date(2001, 1, 1) + timedelta(days=day)) if day is not None else None,
        f"R/{source}",
        via,
        {"identifier": identifier} if identifier else None,
    ),
    st.sampled_from(["a", "b"]),
    st.sampled_from(["icd|1", "text"]),
    st.none() | st.integers(0, 4),
    st.integers(0, 3),
    st.none() | st.sampled_from(["", "id|1", "id|2"]),
)


@settings(max_examples=400, derandomize=True, deadline=None)
@given(st.sampled_from(["drug", "resection", "y90"]), st.lists(_FACTS, max_size=12))
def test_facts_collapse_to_the_first_twin_kept(kind: str, facts: list[Fact]) -> None:
    """Collapsing looks twins up by identifier and by code and day (linear in the facts, not
    quadratic), and finds the twin the definition names."""
    facts = [structs.replace(fact, kind=kind) for fact in facts]
    evidence = Evidence(PatientFacts("p"), {})
    kept = _collapse(kind, facts, evidence)
    expected = _first_twin_collapse(kind, facts)
    kept_sources = [fact.source for fact in kept]
    assert kept_sources == [source for source, twin in expected if twin is None]
    notes = [(note.source, note.detail) for note in evidence.notes]
    assert notes == [
        (source, f"same {kind} as {twin}")
        for source, twin in expected
        if twin is not None and twin != source
    ]


@pytest.mark.parametrize("day", [date.min, date.max])
def test_facts_at_the_calendars_ends_collapse(day: date) -> None:
    """9999-12-31 and 0001-01-01 ("unknown" sentinels some systems write) have no day beyond
    them: the one-day tolerance of procedures stops at the calendar's end."""
    facts = [
        Fact("transplant", "liver", FhirDate(day), f"Procedure/{n}", "cpt|47135") for n in (1, 2)
    ]
    evidence = Evidence(PatientFacts("p"), {})
    assert [fact.source for fact in _collapse("transplant", facts, evidence)] == ["Procedure/1"]
    assert [note.detail for note in evidence.notes] == ["same transplant as Procedure/1"]
