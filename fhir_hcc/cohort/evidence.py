"""A patient's facts made ready for derivation: merged, de-duplicated and medication-resolved."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from msgspec import structs

from fhir_hcc.facts import Collected, Drugs, Fact, Note, PatientFacts

# Facts of these kinds on dates one day apart from different resources are one event recorded
# twice (time zones, late entry); drug doses are not, since PIAF gives the same drug daily.
_ONE_DAY_TOLERANCE = {"resection", "y90", "transplant", "ablation", "embolization"}


@dataclass(slots=True)
class Evidence:
    """The facts of one patient, by kind, with the data-quality notes made while preparing them."""

    patient: PatientFacts
    by_kind: dict[str, list[Fact]]
    notes: list[Note] = field(default_factory=list)

    def of(self, kind: str, *values: str) -> list[Fact]:
        facts = self.by_kind.get(kind, [])
        return [fact for fact in facts if not values or fact.value in values]

    def dated(self, kind: str, *values: str) -> list[Fact]:
        """Facts with a usable (at least month-precision) date, earliest first."""
        found = [f for f in self.of(kind, *values) if f.date and f.date.precision != "year"]
        return sorted(found, key=lambda fact: fact.date.day)  # type: ignore[union-attr]

    def note(self, rule: str, source: str, detail: str) -> None:
        self.notes.append(Note(self.patient.patient_id, rule, source, detail))


def merge_replaced_patients(collected: Collected) -> None:
    """Fold patients marked `replaced-by` into the record that replaces them."""
    for patient_id, record in list(collected.patients.items()):
        demographics = record.demographics
        target_id = demographics.replaced_by if demographics else None
        if not target_id or target_id == patient_id:
            continue
        collected.patient(target_id).add(record)
        collected.note(target_id, "patient_merged", f"Patient/{patient_id}", "link replaced-by")
        del collected.patients[patient_id]


def prepare(record: PatientFacts, medications: dict[str, Drugs]) -> Evidence:
    evidence = Evidence(record, {})
    facts = _resolve_medications(record.facts, medications, evidence)
    facts = _drop_repeated_sources(facts)
    by_kind: dict[str, list[Fact]] = defaultdict(list)
    for fact in facts:
        by_kind[fact.kind].append(fact)
    evidence.by_kind = {kind: _collapse(kind, group, evidence) for kind, group in by_kind.items()}
    return evidence


def _resolve_medications(
    facts: list[Fact], medications: dict[str, Drugs], evidence: Evidence
) -> list[Fact]:
    resolved: list[Fact] = []
    for fact in facts:
        pending = fact.get("medication") if fact.kind == "drug" else None
        if pending is None:
            resolved.append(fact)
            continue
        drugs = medications.get(pending)
        if drugs is None:
            evidence.note(
                "reference_to_nothing", fact.source, f"Medication/{pending} not in the data"
            )
            continue
        if drugs.malformed:
            evidence.note("input_problem", fact.source, f"Medication/{pending} was malformed")
        resolved.extend(
            structs.replace(fact, value=cls, via=f"Medication/{pending}") for cls in drugs.classes
        )
    return resolved


def _drop_repeated_sources(facts: list[Fact]) -> list[Fact]:
    """The same resource read twice (in two files, or twice in one) gives identical facts."""
    seen: set[tuple[str, str, date | None, str]] = set()
    unique = []
    for fact in facts:
        key = (fact.kind, fact.value, fact.date.day if fact.date else None, fact.source)
        if key not in seen:
            seen.add(key)
            unique.append(fact)
    return unique


def _collapse(kind: str, facts: list[Fact], evidence: Evidence) -> list[Fact]:
    """One fact per event: same kind and class on the same date (±1 day for procedures)."""
    events = _Events(kind)
    for fact in sorted(facts, key=_sort_key):
        twin = events.twin(fact)
        if twin is None:
            events.add(fact)
            continue
        if twin.source != fact.source:
            evidence.note("duplicate_collapsed", fact.source, f"same {kind} as {twin.source}")
        if kind == "resection":  # one operation: the union of the segments documented
            segments = twin.get("segments", frozenset()) | fact.get("segments", frozenset())
            twin.data = {**(twin.data or {}), "segments": segments}
    return events.kept


def _sort_key(fact: Fact) -> tuple[date, str]:
    return (fact.date.day if fact.date else date.min, fact.source)


class _Events:
    """The facts of one kind kept as events so far, looked up by what makes a later fact the
    same event: its business identifier, or its code (two codes for one operation may
    disagree: the segments decide) on a date within the tolerance, from another resource."""

    def __init__(self, kind: str) -> None:
        self.kept: list[Fact] = []
        self._resection = kind == "resection"
        self._tolerance = 1 if kind in _ONE_DAY_TOLERANCE else 0
        self._by_identifier: dict[Any, int] = {}
        self._by_day: defaultdict[tuple[Any, ...], list[int]] = defaultdict(list)

    def twin(self, fact: Fact) -> Fact | None:
        """The first fact kept that `fact` is the same event as."""
        found = []
        identifier = fact.get("identifier")
        if identifier and identifier in self._by_identifier:
            found.append(self._by_identifier[identifier])
        if fact.date is not None:
            for day in _days_around(fact.date.day, self._tolerance):
                found += [
                    i
                    for i in self._by_day.get(self._key(fact, day), ())
                    if self.kept[i].source != fact.source
                ]
        return self.kept[min(found)] if found else None

    def add(self, fact: Fact) -> None:
        index = len(self.kept)
        self.kept.append(fact)
        identifier = fact.get("identifier")
        if identifier:
            self._by_identifier.setdefault(identifier, index)
        if fact.date is not None:
            self._by_day[self._key(fact, fact.date.day)].append(index)

    def _key(self, fact: Fact, day: date) -> tuple[Any, ...]:
        return (day,) if self._resection else (fact.value, fact.via, day)


def _days_around(day: date, tolerance: int) -> list[date]:
    """The days within `tolerance` of `day` that a calendar has (9999-12-31, an "unknown"
    sentinel some systems write, has no day after it)."""
    low = max(day.toordinal() - tolerance, date.min.toordinal())
    high = min(day.toordinal() + tolerance, date.max.toordinal())
    return [date.fromordinal(ordinal) for ordinal in range(low, high + 1)]
