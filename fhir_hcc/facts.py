"""Patient facts: what the mappers extract from resources, kept per patient.

A fact is one classified piece of evidence (an HCC diagnosis, an HBsAg result, a drug dose, a
resection, ...) with its date and the resource it came from. Contact dates are folded into one
date -> source map per patient, so memory grows with a patient's days of care, not with the
number of resources read.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import date
from typing import Any, NamedTuple

from msgspec import Struct
from msgspec import field as struct_field

from fhir_hcc.dates import FhirDate

# The per-patient records are structs: made and pickled in C, for every fact and contact a
# worker process collects and sends back.


class Fact(Struct):
    kind: str  # hcc, hbv, drug, procedure, necrosis, disease_status, secondary, death, afp, ...
    value: str  # the class within the kind, e.g. "definite", "positive", "doxorubicin"
    date: FhirDate | None
    source: str  # "Type/id" of the resource
    via: str = ""  # how it matched: "icd-10|C22.0", "text", ...
    data: dict[str, Any] | None = None

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default) if self.data else default


class Demographics(Struct):
    source: str
    gender: str | None = None
    birth_date: FhirDate | None = None
    birth_sex: str | None = None
    deceased: bool = False
    deceased_date: FhirDate | None = None
    replaced_by: str | None = None  # Patient.link type replaced-by


class Drugs(NamedTuple):
    """What a Medication resource says, for the administrations that reference it."""

    classes: list[str]
    malformed: bool = False  # it had malformed elements: its users' rows are flagged


class Note(Struct, frozen=True):
    """A data-quality decision, written to qc.csv."""

    patient: str
    rule: str
    source: str
    detail: str


class PatientFacts(Struct):
    patient_id: str
    demographics: Demographics | None = None
    facts: list[Fact] = struct_field(default_factory=list)
    contacts: dict[date, str] = struct_field(default_factory=dict)
    flags: set[str] = struct_field(default_factory=set)  # QC rules for the row no fact carries

    def of(self, kind: str) -> list[Fact]:
        return [fact for fact in self.facts if fact.kind == kind]

    def add(self, later: PatientFacts) -> None:
        """Take in the facts, flags and contacts of a record read after this one (the same
        patient's, from a later part of the input, or a patient it replaces)."""
        self.facts += later.facts
        self.flags |= later.flags
        self.contacts = later.contacts | self.contacts  # a day's first source stays


@dataclass(slots=True)
class Collected:
    """Everything the mapping stage produced for one run."""

    patients: dict[str, PatientFacts] = field(default_factory=dict)
    # Medication id -> drug classes, for administrations that reference a Medication resource.
    medications: dict[str, Drugs] = field(default_factory=dict)
    notes: list[Note] = field(default_factory=list)
    resources_read: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    problems: list[Any] = field(default_factory=list)  # InputProblems reported while reading

    def merge(self, later: Collected) -> None:
        """Add what a worker collected from a later part of the input, as if read after ours."""
        for patient_id, record in later.patients.items():
            mine = self.patients.get(patient_id)
            if mine is None:
                self.patients[patient_id] = record
                continue
            mine.add(record)
            if mine.demographics is None:
                mine.demographics = record.demographics
            elif record.demographics is not None:
                source = record.demographics.source
                self.skip(
                    patient_id,
                    "duplicate_resource",
                    source,
                    "a second copy of the Patient was ignored",
                )
        self.medications.update(later.medications)
        self.notes += later.notes
        self.resources_read.update(later.resources_read)
        self.skipped.update(later.skipped)
        self.problems += later.problems

    def patient(self, patient_id: str) -> PatientFacts:
        found = self.patients.get(patient_id)
        if found is None:
            found = self.patients[patient_id] = PatientFacts(patient_id)
        return found

    def note(self, patient: str, rule: str, source: str, detail: str) -> None:
        self.notes.append(Note(patient, rule, source, detail))

    def skip(self, patient: str, reason: str, source: str, detail: str = "") -> None:
        """Count (and note) a resource that is read but deliberately not used."""
        self.skipped[reason] += 1
        self.note(patient, reason, source, detail)
