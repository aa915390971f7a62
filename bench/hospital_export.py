"""The hospital benchmark export: a hospital's mix of resources, with the study's patients in it.

`bench/make_export.py` (the default `--shape hospital`) calls `write_patients`; every figure
and code list comes from `bench/shapes/hospital.toml`, with its source. Each patient gets:

- the resources of its kind: a salvage-surgery patient built exactly as the reference fixtures'
  cohort patients (`fixtures/fhir_builders.build_cohort_patient`, from key dates drawn here),
  or a trap the cohort rules must leave out (HCC never resected, resected first, TACE,
  ablation, transplant; breast cancer on doxorubicin; colorectal liver metastases on FOLFOX
  and Y-90 with a hepatectomy; cholangiocarcinoma; hepatoblastoma; a living liver donor; a
  hepatitis B carrier on interferon), built with the same `PatientBuilder`;
- then routine care up to its share of the N resources, in the shape's mix: visits
  (Encounters) with vital signs and lab panels (Observations, lab DiagnosticReports pointing
  at their results), notes (DocumentReferences and note DiagnosticReports with a base64 text),
  problems, procedures, prescriptions, ward doses, immunizations and allergies, with the
  metadata, identifiers, displays and narratives (`text.div`) a hospital's server sends.

The lines of `interleave_patients` patients are shuffled together per type before they are
written, so a file interleaves patients as a server's export does.
"""

from __future__ import annotations

import base64
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, Protocol

import orjson
from fhir_builders import (
    ACT_CODE,
    CISPLATIN,
    CLINICAL_ACTIVE,
    CONDITION_CATEGORY,
    CONFIRMED,
    CPT,
    DISCHARGE,
    DOXORUBICIN,
    FLUOROURACIL,
    HBSAG_CODE,
    ICD10,
    INTERFERON,
    LIVER,
    LOINC,
    MAJOR_RESECTIONS,
    MINOR_RESECTIONS,
    OBSERVATION_CATEGORY,
    ROUTE_IV,
    ROUTE_SC,
    RXNORM,
    SNOMED,
    SURGICAL_CATEGORY,
    UCUM,
    CohortRow,
    Drug,
    FollowUp,
    Json,
    PatientBuilder,
    Shapes,
    build_cohort_patient,
    coding,
    concept,
    cycle_offsets,
    days,
    local_time,
    ucum,
)

CVX = "http://hl7.org/fhir/sid/cvx"
LOCAL_LAB = "https://hospital.example/CodeSystem/lab-test"
SYSTEMS = {
    "sct": SNOMED,
    "loinc": LOINC,
    "icd10": ICD10,
    "rxnorm": RXNORM,
    "cvx": CVX,
    "cpt": CPT,
    "local": LOCAL_LAB,
}
US_CORE = "http://hl7.org/fhir/us/core/StructureDefinition/"
MRN = "https://hospital.example/sid/mrn"
ACCESSION = "https://hospital.example/sid/lab-accession"
VISIT_NUMBER = "https://hospital.example/sid/visit-number"
INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
CLINICAL_NOTE = "http://hl7.org/fhir/us/core/CodeSystem/us-core-documentreference-category"
DIAGNOSTIC_SERVICE = "http://terminology.hl7.org/CodeSystem/v2-0074"
ENCOUNTER_DIAGNOSIS = [
    concept(coding(CONDITION_CATEGORY, "encounter-diagnosis", "Encounter Diagnosis"))
]
PROBLEM_ITEM = [concept(coding(CONDITION_CATEGORY, "problem-list-item", "Problem List Item"))]
XHTML = '<div xmlns="http://www.w3.org/1999/xhtml">'
ROUTES = {
    "IV": ROUTE_IV,
    "SC": ROUTE_SC,
    "PO": concept(coding(SNOMED, "26643006", "Oral route"), text="PO"),
}
HOSPITAL = {"reference": "Organization/org-hospital", "display": "Queen Example Hospital"}
LABORATORY = {"reference": "Organization/org-central-lab", "display": "Central Laboratory"}
WARDS = (
    "Medical Ward 7A",
    "Oncology Clinic",
    "Hepatology Clinic",
    "Day Ward",
    "Surgical Ward 5B",
    "Accident and Emergency",
    "Diabetes Centre",
    "Family Medicine Clinic",
)
FAMILY_NAMES = ("Chan", "Wong", "Lee", "Cheung", "Lau", "Ho", "Ng", "Leung", "Tang", "Lam")
COMPLAINTS = (
    "No complaints.",
    "Cough for three days.",
    "Follow-up of chronic problems.",
    "Abdominal discomfort.",
    "Shortness of breath on exertion.",
)
GIVEN_NAMES = ("Tai Man", "Siu Ming", "Ka Yan", "Wing Sze", "Chi Keung", "Mei Ling", "Kwok Wai")


def random_id(rng: random.Random) -> str:
    """A UUID-shaped logical id, as many servers assign them."""
    value = f"{rng.getrandbits(128):032x}"
    return f"{value[:8]}-{value[8:12]}-{value[12:16]}-{value[16:20]}-{value[20:]}"


class Writer(Protocol):
    def write_line(self, resource_type: str, line: bytes) -> None: ...


class Block:
    """The lines of a few hundred patients, per type, shuffled together when written."""

    def __init__(self, out: Writer, rng: random.Random, patients: int) -> None:
        self.out, self.rng, self.patients = out, rng, patients
        self.lines: dict[str, list[bytes]] = {}
        self.members = 0
        self.written = 0  # resources, flushed or not

    def add(self, resource: Json) -> None:
        line = orjson.dumps(resource, option=orjson.OPT_APPEND_NEWLINE)
        self.lines.setdefault(resource["resourceType"], []).append(line)
        self.written += 1

    def patient_done(self) -> None:
        self.members += 1
        if self.members >= self.patients:
            self.flush()

    def flush(self) -> None:
        for resource_type, lines in sorted(self.lines.items()):
            self.rng.shuffle(lines)
            for line in lines:
                self.out.write_line(resource_type, line)
        self.lines, self.members = {}, 0


# ---------------------------------------------------------------------------------------------
# The shape's vocabulary, built once
# ---------------------------------------------------------------------------------------------


def codings_of(rows: Sequence[Sequence[str]]) -> list[Json]:
    return [coding(SYSTEMS[system], code, display) for system, code, display in rows]


class Table:
    """Weighted entries of one vocabulary list; `relevant` ones are kept from planted patients."""

    def __init__(self, entries: list[Json]) -> None:
        self.entries = entries
        self.weights = [entry.get("weight", 1) for entry in entries]
        plain = [
            (e, w) for e, w in zip(entries, self.weights, strict=True) if not e.get("relevant")
        ]
        self.plain, self.plain_weights = [e for e, _ in plain], [w for _, w in plain]

    def pick(self, rng: random.Random, plain: bool = False) -> Json:
        if plain:
            return rng.choices(self.plain, self.plain_weights)[0]
        return rng.choices(self.entries, self.weights)[0]


@dataclass(frozen=True)
class LabTest:
    key: str
    code: Json
    text: str
    unit: str
    low: float
    high: float
    normal: tuple[float, float]
    decimals: int
    vital: bool

    def draw(self, rng: random.Random) -> float:
        if not self.decimals:
            return rng.randint(int(self.low), int(self.high))
        return round(rng.uniform(self.low, self.high), self.decimals)


def lab_test(entry: Json) -> LabTest:
    codes = [coding(LOINC, entry["loinc"], entry["display"])]
    if not entry.get("vital"):
        codes.append(coding(LOCAL_LAB, entry["key"], entry["text"]))
    return LabTest(
        entry["key"],
        concept(*codes, text=entry["text"]),
        entry["text"],
        entry["unit"],
        *entry["range"],
        tuple(entry["normal"]),
        entry["decimals"],
        entry.get("vital", False),
    )


class Vocabulary:
    def __init__(self, shape: Json) -> None:
        self.tests = {entry["key"]: lab_test(entry) for entry in shape["lab_tests"]}
        self.panels = Table(shape["panels"])
        self.coded = Table(shape["coded_observations"])
        self.tables = {
            name: Table(shape[name])
            for name in (
                "conditions",
                "procedures",
                "medication_requests",
                "inpatient_drugs",
                "immunizations",
                "allergies",
                "notes",
            )
        }
        self.encounter_types = {
            klass: Table([e for e in shape["encounter_types"] if e["class"] == klass])
            for klass in shape["visits"]["class"]
        }


CATEGORIES = {
    name: [concept(coding(OBSERVATION_CATEGORY, name, display), text=display)]
    for name, display in (
        ("laboratory", "Laboratory"),
        ("vital-signs", "Vital Signs"),
        ("social-history", "Social History"),
    )
}
INTERPRETATIONS = {
    flag: [concept(coding(INTERPRETATION, flag, display), text=display)]
    for flag, display in (("L", "Low"), ("N", "Normal"), ("H", "High"))
}
BLOOD_PRESSURE = concept(
    coding(LOINC, "85354-9", "Blood pressure panel with all children optional"),
    text="Blood pressure",
)
SYSTOLIC = concept(coding(LOINC, "8480-6", "Systolic blood pressure"), text="Systolic")
DIASTOLIC = concept(coding(LOINC, "8462-4", "Diastolic blood pressure"), text="Diastolic")
HBSAG_NEGATIVE = concept(coding(LOINC, "LA6577-6", "Negative"), text="Negative")
VISIT_CLASSES = {
    "AMB": coding(ACT_CODE, "AMB", "ambulatory"),
    "EMER": coding(ACT_CODE, "EMER", "emergency"),
    "IMP": coding(ACT_CODE, "IMP", "inpatient encounter"),
}
EXPIRED = concept(coding(DISCHARGE, "exp", "Expired"))
ADMIT_SOURCE = concept(
    coding(
        "http://terminology.hl7.org/CodeSystem/admit-source", "outp", "From outpatient department"
    )
)
PRIMARY_PERFORMER = concept(
    coding(
        "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "PPRF", "primary performer"
    ),
    text="primary performer",
)
MARITAL_STATUS = "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus"
LANGUAGE = concept(coding("urn:ietf:bcp:47", "zh-HK", "Chinese (Hong Kong)"), text="Cantonese")
HOME = concept(coding(DISCHARGE, "home", "Home"))


# ---------------------------------------------------------------------------------------------
# Routine care of one patient
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Visit:
    day: date
    end: date
    klass: str
    ref: Json


class HospitalCare:
    """Routine resources of one patient in the shape's mix, as a hospital's server sends them."""

    def __init__(
        self,
        shape: Json,
        vocabulary: Vocabulary,
        rng: random.Random,
        block: Block,
        pid: str,
        death: date | None,
        planted: bool,
    ) -> None:
        self.shape, self.words, self.rng, self.block = shape, vocabulary, rng, block
        self.pid = pid
        self.planted = planted  # keep cohort-relevant routine codes away from planted patients
        self.given, self.family = rng.choice(GIVEN_NAMES), rng.choice(FAMILY_NAMES)
        self.name = f"{self.family} {self.given}"
        self.subject = {"reference": f"Patient/{pid}", "display": self.name}
        self.first: date = shape["first_day"]
        self.last: date = min(death or shape["cutoff"], shape["cutoff"])
        self.death = death

    # -- helpers ------------------------------------------------------------------------------

    def new_id(self) -> str:
        return random_id(self.rng)

    def instant(self, day: date) -> str:
        rng = self.rng
        return (
            f"{day.isoformat()}T{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:"
            f"{rng.randint(0, 59):02d}.{rng.randint(0, 999):03d}Z"
        )

    def when(self, day: date) -> str:
        return local_time(day, self.rng.randint(8, 19), self.rng.randint(0, 59))

    def meta(self, profile: str, day: date) -> Json:
        return {
            "versionId": str(self.rng.randint(1, 3)),
            "lastUpdated": self.instant(day),
            "source": f"#interface-{self.rng.randint(1, 9)}",
            "profile": [US_CORE + profile],
        }

    def emit(self, resource: Json, *summary: tuple[str, Any]) -> None:
        """Add the resource, with a generated narrative of `summary` for the shape's share."""
        share = self.shape["narrative"].get(resource["resourceType"], 0)
        if summary and self.rng.random() < share:
            cells = "".join(f"<p><b>{name}</b>: {value}</p>" for name, value in summary)
            items = list(resource.items())  # FHIR's order: text after resourceType, id, meta
            narrative = {"status": "generated", "div": f"{XHTML}{cells}</div>"}
            resource = dict([*items[:3], ("text", narrative), *items[3:]])
        self.block.add(resource)

    def day_between(self, first: date, last: date) -> date:
        return first + timedelta(self.rng.randint(0, max(0, (last - first).days)))

    # -- the patient and its visits -----------------------------------------------------------

    def patient(self, sex: str, birth: date) -> None:
        resource: Json = {
            "resourceType": "Patient",
            "id": self.pid,
            "meta": self.meta("us-core-patient", self.last),
            "identifier": [
                {
                    "use": "usual",
                    "type": concept(
                        coding(
                            "http://terminology.hl7.org/CodeSystem/v2-0203",
                            "MR",
                            "Medical Record Number",
                        ),
                        text="MRN",
                    ),
                    "system": MRN,
                    "value": f"MRN{self.rng.randint(10**7, 10**8 - 1)}",
                }
            ],
            "active": True,
            "name": [
                {
                    "use": "official",
                    "family": self.family,
                    "given": self.given.split(),
                    "text": self.name,
                }
            ],
            "telecom": [
                {
                    "system": "phone",
                    "value": f"+852 {self.rng.randint(2000, 9999)} {self.rng.randint(1000, 9999)}",
                    "use": "home",
                }
            ],
            "gender": sex,
            "birthDate": birth.isoformat(),
        }
        if self.death:
            resource["deceasedDateTime"] = self.death.isoformat()
        resource["address"] = [
            {
                "use": "home",
                "line": [
                    f"Flat {self.rng.randint(1, 40)}"
                    f"{'ABCDEFGH'[self.rng.randint(0, 7)]}, Block {self.rng.randint(1, 9)}"
                ],
                "city": "Hong Kong",
                "country": "HK",
            }
        ]
        married = self.rng.random() < 0.6
        resource["maritalStatus"] = concept(
            coding(
                MARITAL_STATUS, "M" if married else "S", "Married" if married else "Never Married"
            )
        )
        resource["communication"] = [{"language": LANGUAGE, "preferred": True}]
        resource["generalPractitioner"] = [
            {"reference": f"Practitioner/prac-{self.rng.randint(1, 120)}"}
        ]
        resource["managingOrganization"] = HOSPITAL
        self.emit(resource, ("name", self.name), ("gender", sex), ("birthDate", birth))

    def visits(self, count: int) -> list[Visit]:
        classes = self.shape["visits"]["class"]
        low, high = self.shape["visits"]["inpatient_days"]
        result = []
        for day in sorted(self.day_between(self.first, self.last) for _ in range(count)):
            klass = self.rng.choices(list(classes), list(classes.values()))[0]
            end = (
                min(day + timedelta(self.rng.randint(low, high)), self.last)
                if klass == "IMP"
                else day
            )
            result.append(self.encounter(day, end, klass))
        return result

    def encounter(self, day: date, end: date, klass: str) -> Visit:
        kind = self.words.encounter_types[klass].pick(self.rng)
        reason = self.words.tables["conditions"].pick(self.rng, plain=True)
        encounter_id = self.new_id()
        practitioner = {
            "reference": f"Practitioner/prac-{self.rng.randint(1, 120)}",
            "display": f"Dr. {self.rng.choice(FAMILY_NAMES)}",
        }
        resource: Json = {
            "resourceType": "Encounter",
            "id": encounter_id,
            "meta": self.meta("us-core-encounter", end),
            "identifier": [{"system": VISIT_NUMBER, "value": f"V{self.rng.randint(10**8, 10**9)}"}],
            "status": "finished",
            "class": VISIT_CLASSES[klass],
            "type": [concept(*codings_of(kind["codings"]), text=kind["codings"][0][2])],
            "subject": self.subject,
            "participant": [{"type": [PRIMARY_PERFORMER], "individual": practitioner}],
            "period": {"start": self.when(day), "end": self.when(end)},
            "reasonCode": [concept(*codings_of(reason["codings"]), text=reason["text"])],
            "location": [
                {
                    "location": {
                        "reference": f"Location/loc-{self.rng.randint(1, 40)}",
                        "display": self.rng.choice(WARDS),
                    }
                }
            ],
            "serviceProvider": HOSPITAL,
        }
        if klass == "IMP":
            died = end == self.death
            resource["hospitalization"] = {
                "admitSource": ADMIT_SOURCE,
                "dischargeDisposition": EXPIRED if died else HOME,
            }
        self.emit(resource, ("class", klass), ("period", f"{day} to {end}"))
        return Visit(day, end, klass, {"reference": f"Encounter/{encounter_id}"})

    # -- routine care, in the shape's mix -----------------------------------------------------

    def routine(self, budget: int) -> None:
        """`budget` routine resources: the shape's mix, each type spread over the visits."""
        if budget <= 0:
            return
        counts = {
            t: int(budget * share + self.rng.random()) for t, share in self.shape["mix"].items()
        }
        counts["Encounter"] = max(1, counts["Encounter"])
        while sum(counts.values()) > budget:  # a tiny budget: fewer of the rest
            largest = max((t for t in counts if t != "Encounter"), key=counts.__getitem__)
            counts[largest] -= 1
        visits = self.visits(counts["Encounter"])
        lab_reports = round(counts["DiagnosticReport"] * self.shape["visits"]["lab_report_share"])
        lab_reports = self.observations(visits, budget - sum(counts.values()), lab_reports)
        for _ in range(counts["DiagnosticReport"] - lab_reports):
            self.note_report(self.rng.choice(visits))
        makers = {
            "DocumentReference": self.document,
            "Condition": self.condition,
            "Procedure": self.procedure,
            "MedicationRequest": self.prescription,
            "MedicationAdministration": self.ward_dose,
            "Immunization": self.immunization,
            "AllergyIntolerance": self.allergy,
        }
        inpatient = [v for v in visits if v.klass == "IMP"] or visits
        for resource_type, make in makers.items():
            pool = inpatient if resource_type == "MedicationAdministration" else visits
            for _ in range(counts[resource_type]):
                make(self.rng.choice(pool))

    def observations(self, visits: list[Visit], count: int, reports: int) -> int:
        """`count` Observations in panels at the visits; up to `reports` lab panels get a
        DiagnosticReport (returns how many did)."""
        if not self.planted and self.rng.random() < self.shape["routine"]["hbsag_screen"] and count:
            self.hbsag_screen(self.rng.choice(visits))
            count -= 1
        made = 0
        while count > 0:
            visit = self.rng.choice(visits)
            if self.rng.random() < 0.08:
                self.coded_observation(visit)
                count -= 1
                continue
            panel = self.words.panels.pick(self.rng)
            tests = panel["tests"][:count]
            day = self.day_between(visit.day, visit.end)
            results = [self.result(test, day, visit) for test in tests]
            count -= len(results)
            if "loinc" in panel and made < reports:
                self.lab_report(panel, results, day, visit)
                made += 1
        return made

    def observation(self, day: date, visit: Visit, category: str, code: Json, value: Json) -> Json:
        lab = category == "laboratory"
        resource: Json = {
            "resourceType": "Observation",
            "id": self.new_id(),
            "meta": self.meta("us-core-observation-lab" if lab else "us-core-vital-signs", day),
            "identifier": [
                {"system": ACCESSION, "value": f"A{day.year}{self.rng.randint(10**6, 10**7)}"}
            ],
            "status": "final",
            "category": CATEGORIES[category],
            "code": code,
            "subject": self.subject,
            "encounter": visit.ref,
            "effectiveDateTime": self.when(day),
            "issued": self.instant(day),
        }
        if lab:
            resource["performer"] = [LABORATORY]
        resource.update(value)
        return resource

    def result(self, key: str, day: date, visit: Visit) -> str:
        """One result of a panel; returns its id."""
        if key == "BP":
            return self.blood_pressure(day, visit)
        test = self.words.tests[key]
        value = test.draw(self.rng)
        low, high = test.normal
        quantity = ucum(value, test.unit, test.unit)
        resource = self.observation(
            day,
            visit,
            "vital-signs" if test.vital else "laboratory",
            test.code,
            {"valueQuantity": quantity},
        )
        if not test.vital:
            flag = "L" if value < low else "H" if value > high else "N"
            resource["interpretation"] = INTERPRETATIONS[flag]
            resource["referenceRange"] = [
                {
                    "low": ucum(low, test.unit, test.unit),
                    "high": ucum(high, test.unit, test.unit),
                    "text": f"{low}-{high} {test.unit}",
                }
            ]
        self.emit(resource, ("code", test.text), ("value", f"{value} {test.unit}"))
        return resource["id"]

    def blood_pressure(self, day: date, visit: Visit) -> str:
        systolic, diastolic = self.rng.randint(95, 185), self.rng.randint(55, 110)
        components = [
            {"code": code, "valueQuantity": ucum(value, "mmHg", "mm[Hg]")}
            for code, value in ((SYSTOLIC, systolic), (DIASTOLIC, diastolic))
        ]
        resource = self.observation(
            day, visit, "vital-signs", BLOOD_PRESSURE, {"component": components}
        )
        self.emit(resource, ("code", "Blood pressure"), ("value", f"{systolic}/{diastolic} mmHg"))
        return resource["id"]

    def coded_observation(self, visit: Visit) -> None:
        entry = self.words.coded.pick(self.rng)
        answer = codings_of([self.rng.choice(entry["values"])])[0]
        code = concept(coding(LOINC, entry["loinc"], entry["display"]), text=entry["display"])
        value = {"valueCodeableConcept": concept(answer, text=answer["display"])}
        resource = self.observation(visit.day, visit, entry["category"], code, value)
        self.emit(resource, ("code", entry["display"]), ("value", answer["display"]))

    def hbsag_screen(self, visit: Visit) -> None:
        """A negative HBsAg screen (a mapped code, in a patient without hepatitis B)."""
        value = {"valueCodeableConcept": HBSAG_NEGATIVE}
        resource = self.observation(visit.day, visit, "laboratory", HBSAG_CODE, value)
        self.emit(resource, ("code", "HBsAg"), ("value", "Negative"))

    def lab_report(self, panel: Json, results: list[str], day: date, visit: Visit) -> None:
        resource: Json = {
            "resourceType": "DiagnosticReport",
            "id": self.new_id(),
            "meta": self.meta("us-core-diagnosticreport-lab", day),
            "status": "final",
            "category": [concept(coding(DIAGNOSTIC_SERVICE, "LAB", "Laboratory"))],
            "code": concept(coding(LOINC, panel["loinc"], panel["display"]), text=panel["text"]),
            "subject": self.subject,
            "encounter": visit.ref,
            "effectiveDateTime": self.when(day),
            "issued": self.instant(day),
            "performer": [LABORATORY],
            "result": [{"reference": f"Observation/{rid}"} for rid in results],
        }
        self.emit(resource, ("code", panel["text"]), ("results", len(results)))

    def note_text(self, visit: Visit, kind: str) -> str:
        """A plain-text clinical note, as Synthea writes them [S1]: about 1.3 KB."""
        rng = self.rng
        problems = ", ".join(
            self.words.tables["conditions"].pick(rng, plain=True)["text"].lower() for _ in range(3)
        )
        drugs = "; ".join(
            self.words.tables["medication_requests"].pick(rng, plain=True)["codings"][0][2]
            for _ in range(rng.randint(1, 4))
        )
        complaint = rng.choice(COMPLAINTS)
        allergy = rng.choice(("No Known Allergies.", "Penicillin (rash).", "Aspirin (wheeze)."))
        return (
            f"{visit.day.isoformat()}\n\n# {kind}\n\n# Chief Complaint\n{complaint}\n\n"
            f"# History of Present Illness\n{self.name} is a patient of this hospital with a "
            f"history of {problems}. Seen in {rng.choice(WARDS)}; observations stable, afebrile, "
            f"eating and drinking normally. Reviewed the blood results of this visit.\n\n"
            f"# Review of Systems\nNo fever, chills or night sweats. No chest pain or shortness of "
            f"breath. No nausea, vomiting or change in bowel habit. No urinary symptoms.\n\n"
            f"# Physical Examination\nAlert and oriented. BP {rng.randint(100, 170)}/"
            f"{rng.randint(60, 100)} mmHg, pulse {rng.randint(55, 110)}/min, temperature "
            f"{rng.randint(361, 378) / 10} C. Chest clear. Abdomen soft, non-tender; no "
            f"hepatosplenomegaly. No peripheral oedema.\n\n"
            f"# Social History\nNever smoked. Drinks alcohol occasionally. Lives with family.\n\n"
            f"# Allergies\n{allergy}\n\n# Medications\n{drugs}\n\n# Assessment and Plan\n"
            f"Patient is presenting with {problems.split(', ')[0]}. Continue current medication; "
            f"blood tests and review in {rng.randint(2, 26)} weeks. Advised to return earlier if "
            f"symptoms worsen.\n"
        )

    def note(self, visit: Visit) -> tuple[Json, str, str]:
        kind = self.words.tables["notes"].pick(self.rng)
        codings = codings_of(kind["codings"])
        text = self.note_text(visit, kind["codings"][0][2])
        return kind, base64.b64encode(text.encode()).decode(), codings[0]["display"]

    def note_report(self, visit: Visit) -> None:
        kind, data, title = self.note(visit)
        resource: Json = {
            "resourceType": "DiagnosticReport",
            "id": self.new_id(),
            "meta": self.meta("us-core-diagnosticreport-note", visit.day),
            "status": "final",
            "category": [concept(*codings_of(kind["codings"]))],
            "code": concept(*codings_of(kind["codings"])),
            "subject": self.subject,
            "encounter": visit.ref,
            "effectiveDateTime": self.when(visit.day),
            "issued": self.instant(visit.day),
            "presentedForm": [{"contentType": "text/plain; charset=utf-8", "data": data}],
        }
        self.emit(resource, ("code", title))

    def document(self, visit: Visit) -> None:
        kind, data, title = self.note(visit)
        resource: Json = {
            "resourceType": "DocumentReference",
            "id": self.new_id(),
            "meta": self.meta("us-core-documentreference", visit.day),
            "identifier": [{"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{self.new_id()}"}],
            "status": "current",
            "type": concept(*codings_of(kind["codings"])),
            "category": [concept(coding(CLINICAL_NOTE, "clinical-note", "Clinical Note"))],
            "subject": self.subject,
            "date": self.instant(visit.day),
            "author": [{"reference": f"Practitioner/prac-{self.rng.randint(1, 120)}"}],
            "custodian": HOSPITAL,
            "content": [
                {
                    "attachment": {"contentType": "text/plain; charset=utf-8", "data": data},
                    "format": {
                        "system": "http://ihe.net/fhir/ihe.formatcode.fhir/CodeSystem/formatcode",
                        "code": "urn:ihe:iti:xds:2017:mimeTypeSufficient",
                        "display": "mimeType Sufficient",
                    },
                }
            ],
            "context": {
                "encounter": [visit.ref],
                "period": {"start": self.when(visit.day), "end": self.when(visit.end)},
            },
        }
        self.emit(resource, ("type", title))

    def condition(self, visit: Visit) -> None:
        entry = self.words.tables["conditions"].pick(self.rng, plain=self.planted)
        recorded = visit.day.isoformat()
        onset = self.day_between(self.first, visit.day).isoformat()
        on_list = self.rng.random() < 0.5
        resource: Json = {
            "resourceType": "Condition",
            "id": self.new_id(),
            "meta": self.meta("us-core-condition", visit.day),
            "clinicalStatus": CLINICAL_ACTIVE,
            "verificationStatus": CONFIRMED,
            "category": PROBLEM_ITEM if on_list else ENCOUNTER_DIAGNOSIS,
            "code": concept(*codings_of(entry["codings"]), text=entry["text"]),
            "subject": self.subject,
            "encounter": visit.ref,
            "onsetDateTime": onset,
            "recordedDate": recorded,
            "recorder": {"reference": f"Practitioner/prac-{self.rng.randint(1, 120)}"},
        }
        self.emit(resource, ("code", entry["text"]), ("onset", onset))

    def procedure(self, visit: Visit) -> None:
        entry = self.words.tables["procedures"].pick(self.rng, plain=self.planted)
        codings = codings_of(entry["codings"])
        text = entry.get("text", codings[0]["display"])
        start = self.when(visit.day)
        resource: Json = {
            "resourceType": "Procedure",
            "id": self.new_id(),
            "meta": self.meta("us-core-procedure", visit.day),
            "status": "completed",
            "code": concept(*codings, text=text),
            "subject": self.subject,
            "encounter": visit.ref,
            "performedPeriod": {"start": start, "end": start},
            "performer": [
                {"actor": {"reference": f"Practitioner/prac-{self.rng.randint(1, 120)}"}}
            ],
            "location": {"display": self.rng.choice(WARDS)},
        }
        self.emit(resource, ("code", text), ("performed", visit.day))

    def prescription(self, visit: Visit) -> None:
        entry = self.words.tables["medication_requests"].pick(self.rng, plain=self.planted)
        codings = codings_of(entry["codings"])
        resource: Json = {
            "resourceType": "MedicationRequest",
            "id": self.new_id(),
            "meta": self.meta("us-core-medicationrequest", visit.day),
            "status": self.rng.choice(("active", "completed", "stopped")),
            "intent": "order",
            "category": [
                concept(
                    coding(
                        "http://terminology.hl7.org/CodeSystem/medicationrequest-category",
                        "community",
                        "Community",
                    ),
                    text="Community",
                )
            ],
            "medicationCodeableConcept": concept(*codings, text=codings[0]["display"]),
            "subject": self.subject,
            "encounter": visit.ref,
            "authoredOn": self.when(visit.day),
            "requester": {
                "reference": f"Practitioner/prac-{self.rng.randint(1, 120)}",
                "display": f"Dr. {self.rng.choice(FAMILY_NAMES)}",
            },
            "dosageInstruction": [{"sequence": 1, "text": entry["dosage"]}],
        }
        self.emit(resource, ("medication", codings[0]["display"]), ("dosage", entry["dosage"]))

    def ward_dose(self, visit: Visit) -> None:
        entry = self.words.tables["inpatient_drugs"].pick(self.rng)
        codings = codings_of(entry["codings"])
        amount, unit = entry["dose"]
        day = self.day_between(visit.day, visit.end)
        resource: Json = {
            "resourceType": "MedicationAdministration",
            "id": self.new_id(),
            "meta": self.meta("us-core-medicationadministration", day),
            "status": "completed",
            "medicationCodeableConcept": concept(*codings, text=codings[0]["display"]),
            "subject": self.subject,
            "context": visit.ref,
            "effectiveDateTime": self.when(day),
            "performer": [
                {"actor": {"reference": f"Practitioner/nurse-{self.rng.randint(1, 300)}"}}
            ],
            "dosage": {
                "route": ROUTES[entry["route"]],
                "dose": {"value": amount, "unit": unit, "system": UCUM, "code": unit},
            },
        }
        self.emit(resource)

    def immunization(self, visit: Visit) -> None:
        entry = self.words.tables["immunizations"].pick(self.rng)
        codings = codings_of(entry["codings"])
        resource: Json = {
            "resourceType": "Immunization",
            "id": self.new_id(),
            "meta": self.meta("us-core-immunization", visit.day),
            "status": "completed",
            "vaccineCode": concept(*codings, text=codings[0]["display"]),
            "patient": self.subject,
            "encounter": visit.ref,
            "occurrenceDateTime": self.when(visit.day),
            "primarySource": True,
            "location": {"display": self.rng.choice(WARDS)},
        }
        self.emit(resource, ("vaccine", codings[0]["display"]), ("date", visit.day))

    def allergy(self, visit: Visit) -> None:
        entry = self.words.tables["allergies"].pick(self.rng)
        codings = codings_of(entry["codings"])
        clinical = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical"
        verification = "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification"
        resource: Json = {
            "resourceType": "AllergyIntolerance",
            "id": self.new_id(),
            "meta": self.meta("us-core-allergyintolerance", visit.day),
            "clinicalStatus": concept(coding(clinical, "active", "Active")),
            "verificationStatus": concept(coding(verification, "confirmed", "Confirmed")),
            "type": "allergy",
            "category": [entry["category"]],
            "criticality": "low",
            "code": concept(*codings, text=codings[0]["display"]),
            "patient": self.subject,
            "recordedDate": self.when(visit.day),
        }
        self.emit(resource, ("substance", codings[0]["display"]))


# ---------------------------------------------------------------------------------------------
# Planted patients: salvage surgery, and the traps the cohort rules must leave out
# ---------------------------------------------------------------------------------------------

SHAPE_SHARES = {  # the reference fixtures' variant counts of 49 patients (generate_salvage2004)
    "mcode_profiles": 16 / 49,
    "histology_extension": 24 / 49,
    "onset_period": 6 / 49,
    "snomed_hbsag_answer": 12 / 49,
    "timed_visits": 16 / 49,
    "late_pathology_report": 8 / 49,
    "effective_period": 8 / 49,
}
MEDICATION_FORMS = {
    "concept": 29,
    "reference": 6,
    "contained-rxnorm": 3,
    "contained-atc": 3,
    "scd": 4,
}
GROUPS = {"COMBO": 32, "SINGLE": 8, "Y90": 4, "SEQ": 5}  # the paper's 49 patients
SURGERY_DAYS = (date(1995, 3, 1), date(2002, 6, 30))  # downstaging inside the study window


def random_shapes(rng: random.Random, group: str) -> Shapes:
    """A salvage patient's resource shapes, each variant as often as in the reference fixtures
    (never urn: references: an NDJSON export resolves none)."""
    flags = {name: rng.random() < share for name, share in SHAPE_SHARES.items()}
    forms = list(MEDICATION_FORMS)
    return Shapes(
        **flags,
        resection_time=rng.choices(("date", "datetime", "period"), (38, 6, 5))[0],
        medication_form=rng.choices(forms, list(MEDICATION_FORMS.values()))[0],
        y90_form="course-summary" if group in ("Y90", "SEQ") and rng.random() < 4 / 9 else "cpt",
        y90_first=group == "SEQ" and rng.random() < 2 / 5,
    )


def salvage_row(rng: random.Random, pid: str, cutoff: date) -> CohortRow:
    """Key facts of a salvage patient in the paper's proportions (salvage2004-paper.md)."""
    surgery = SURGERY_DAYS[0] + timedelta(rng.randint(0, (SURGERY_DAYS[1] - SURGERY_DAYS[0]).days))
    died = rng.random() < 0.45
    end = (
        surgery + timedelta(rng.randint(120, 3000))
        if died
        else cutoff - timedelta(rng.randint(0, 60))
    )
    if end >= cutoff:
        died, end = False, cutoff - timedelta(rng.randint(0, 60))
    recurrence = None
    rec_site = ""
    if rng.random() < 0.43 and (end - surgery).days > 200:
        recurrence = surgery + timedelta(rng.randint(90, (end - surgery).days - 60))
        rec_site = rng.choices(("INTRAHEPATIC", "EXTRAHEPATIC"), (2, 1))[0]
    return CohortRow(
        pid=pid,
        sex=rng.choices(("M", "F"), (4, 1))[0],
        age=rng.randint(25, 75),
        hbsag_pos=rng.random() < 0.82,
        group=rng.choices(list(GROUPS), list(GROUPS.values()))[0],
        resection="MAJOR" if rng.random() < 0.57 else "MINOR",
        complete_necrosis=rng.random() < 0.27,
        died=died,
        rec_site=rec_site,
        surgery=surgery,
        end=end,
        recurrence=recurrence,
    )


CYCLOPHOSPHAMIDE = Drug(
    "cyclophosphamide", "cyclophosphamide", "3002", "L01AA01", ROUTE_IV, "mg", "mg"
)
OXALIPLATIN = Drug("oxaliplatin", "oxaliplatin", "32592", "L01XA03", ROUTE_IV, "mg", "mg")
GEMCITABINE = Drug("gemcitabine", "gemcitabine", "12574", "L01BC05", ROUTE_IV, "mg", "mg")
BREAST_CANCER = concept(
    coding(ICD10, "C50.9", "Malignant neoplasm of breast of unspecified site"),
    coding(SNOMED, "254837009", "Malignant neoplasm of breast (disorder)"),
    text="Breast cancer",
)
COLON_CANCER = concept(
    coding(ICD10, "C18.7", "Malignant neoplasm of sigmoid colon"), text="Sigmoid colon cancer"
)
LIVER_METASTASES = concept(
    coding(ICD10, "C78.7", "Secondary malignant neoplasm of liver and intrahepatic bile duct"),
    text="Colorectal liver metastases",
)
CHOLANGIOCARCINOMA = concept(
    coding(ICD10, "C22.1", "Intrahepatic bile duct carcinoma"),
    text="Intrahepatic cholangiocarcinoma",
)
HEPATOBLASTOMA = concept(coding(ICD10, "C22.2", "Hepatoblastoma"), text="Hepatoblastoma")
BREAST = concept(coding(SNOMED, "76752008", "Breast structure"), text="Breast")
COLON = concept(coding(SNOMED, "60184004", "Sigmoid colon structure"), text="Sigmoid colon")
MASTECTOMY = concept(coding(CPT, "19303", "Mastectomy, simple, complete"), text="Simple mastectomy")
ABLATION = concept(
    coding(CPT, "47382", "Ablation, 1 or more liver tumor(s); percutaneous, radiofrequency"),
    text="Percutaneous radiofrequency ablation of liver tumour",
)
DONOR_HEPATECTOMY = concept(
    coding(
        CPT,
        "47140",
        "Donor hepatectomy (including cholecystectomy, if performed), from living "
        "donor; left lateral segment only (segments II and III)",
    ),
    text="Living donor left lateral sectionectomy",
)
CHRONIC_HBV = "chronic-hbv"


class Trap:
    """One planted non-cohort patient: its study resources, built with a PatientBuilder."""

    def __init__(self, pid: str, seed: int, rng: random.Random, cutoff: date) -> None:
        forms = list(MEDICATION_FORMS)
        shapes = Shapes(medication_form=rng.choices(forms, list(MEDICATION_FORMS.values()))[0])
        self.b = PatientBuilder(pid, shapes, seed)
        self.rng = rng
        self.cutoff = cutoff
        self.onset = date(1995, 6, 1) + timedelta(rng.randint(0, 6 * 365))
        self.death: date | None = None
        if rng.random() < 0.4:
            self.death = min(self.onset + timedelta(rng.randint(200, 2000)), cutoff - timedelta(1))

    def patient(self, sex: str = "", birth_years: tuple[int, int] = (1925, 1970)) -> None:
        sex = sex or self.rng.choice("MMF")
        birth = date(
            self.rng.randint(*birth_years), self.rng.randint(1, 12), self.rng.randint(1, 28)
        )
        self.b.add_patient(sex, birth, self.death)

    def cancer(self, code: Json, body_site: Json | None = LIVER) -> None:
        self.b.add_primary_cancer(
            code, self.onset, self.onset + days(self.rng.randint(0, 7)), body_site
        )

    def cycles(self, start: date, count: int, drugs: Sequence[tuple[Drug, float]]) -> date:
        """`count` cycles 21 days apart of the drugs (dose per m2); returns the last day."""
        day = start
        for number, offset in enumerate(cycle_offsets(self.rng, count, 21, 21), start=1):
            day = start + days(offset)
            for drug, per_m2 in drugs:
                self.b.add_dose(drug, f"c{number}d1", per_m2, self.b.effective(day))
        return day

    def follow(self, first: date, cancer: bool = True, worsened: date | None = None) -> None:
        end = self.death or self.cutoff
        if first < end:
            self.b.follow_up(
                FollowUp(first=first, end=end, death=self.death, worsened=worsened, cancer=cancer)
            )

    def admission(self, day: date) -> Json:
        return self.b.add_admission(day - days(1), day + days(self.rng.randint(5, 12)))

    def operation(self, code: Json, day: date, site: Json) -> None:
        """A surgical Procedure (not a hepatectomy of the mappings) in its own admission."""
        performed = {"performedDateTime": day.isoformat()}
        admission = self.admission(day)
        self.b.procedure(code, performed, [site], category=SURGICAL_CATEGORY, encounter=admission)

    def hcc_workup(self) -> None:
        self.patient()
        self.cancer(self.b.hcc_code())
        self.b.add_hbsag(self.onset + days(2), positive=self.rng.random() < 0.8)
        self.b.add_afp(self.onset + days(2), round(10 ** self.rng.uniform(1, 5)))


def hcc_unresected(t: Trap) -> None:
    t.hcc_workup()
    if t.rng.random() < 0.6:
        for cycle, offset in enumerate(cycle_offsets(t.rng, t.rng.randint(2, 5), 21, 28), 1):
            t.b.add_piaf_cycle(t.onset + days(14 + offset), cycle)
    else:
        t.cycles(t.onset + days(14), t.rng.randint(2, 6), [(DOXORUBICIN, 60)])
    t.follow(t.onset + days(200), worsened=t.onset + days(t.rng.randint(120, 400)))


def hcc_resected_first(t: Trap) -> None:
    t.hcc_workup()
    surgery = t.onset + days(t.rng.randint(20, 60))
    t.b.add_resection(
        surgery, t.rng.choice(MINOR_RESECTIONS + MAJOR_RESECTIONS), t.admission(surgery)
    )
    t.b.add_necrosis(surgery, t.rng.randint(5, 40))
    recurrence = surgery + days(t.rng.randint(200, 700))
    if recurrence < (t.death or t.cutoff) - timedelta(120):
        t.cycles(recurrence + days(14), 3, [(DOXORUBICIN, 60)])
        t.follow(surgery + days(30), worsened=recurrence)
    else:
        t.follow(surgery + days(30))


def hcc_tace_resected(t: Trap) -> None:
    t.hcc_workup()
    t.b.add_tace(t.onset + days(20), 1, 50)
    t.b.add_tace(t.onset + days(62), 2, 50)
    surgery = t.onset + days(t.rng.randint(120, 180))
    t.b.add_resection(surgery, t.rng.choice(MINOR_RESECTIONS), t.admission(surgery))
    t.b.add_necrosis(surgery, t.rng.randint(40, 90))
    t.follow(surgery + days(30))


def hcc_transplant(t: Trap) -> None:
    t.hcc_workup()
    last = t.cycles(t.onset + days(14), t.rng.randint(2, 4), [(DOXORUBICIN, 60)])
    surgery = last + days(t.rng.randint(60, 150))
    t.b.add_transplant(surgery, t.admission(surgery))
    t.follow(surgery + days(40))


def hcc_ablation(t: Trap) -> None:
    t.hcc_workup()
    t.b.procedure(ABLATION, {"performedDateTime": (t.onset + days(30)).isoformat()}, [LIVER])
    t.follow(t.onset + days(60))


def breast_doxorubicin(t: Trap) -> None:
    """AC chemotherapy: doxorubicin 60 + cyclophosphamide 600 mg/m2, four cycles; mastectomy."""
    t.patient("F", (1935, 1975))
    t.cancer(BREAST_CANCER, BREAST)
    last = t.cycles(t.onset + days(21), 4, [(DOXORUBICIN, 60), (CYCLOPHOSPHAMIDE, 600)])
    surgery = last + days(t.rng.randint(28, 56))
    t.operation(MASTECTOMY, surgery, BREAST)
    t.follow(surgery + days(30), cancer=False)


def colorectal_liver_metastases(t: Trap) -> None:
    """FOLFOX (fluorouracil, oxaliplatin), sometimes Y-90, then a partial hepatectomy."""
    t.patient()
    t.cancer(COLON_CANCER, COLON)
    t.b.add_condition("liver-metastases", LIVER_METASTASES, t.onset + days(10))
    last = t.cycles(
        t.onset + days(30), t.rng.randint(4, 8), [(FLUOROURACIL, 400), (OXALIPLATIN, 85)]
    )
    if t.rng.random() < 0.3:
        last += days(35)
        t.b.add_y90(last)
    surgery = last + days(t.rng.randint(30, 70))
    t.b.add_resection(surgery, t.rng.choice(MINOR_RESECTIONS), t.admission(surgery))
    t.follow(surgery + days(30), cancer=False)


def cholangiocarcinoma(t: Trap) -> None:
    t.patient()
    t.cancer(CHOLANGIOCARCINOMA)
    last = t.cycles(t.onset + days(21), t.rng.randint(3, 6), [(GEMCITABINE, 1000), (CISPLATIN, 25)])
    surgery = last + days(t.rng.randint(30, 60))
    t.b.add_resection(surgery, MAJOR_RESECTIONS[0], t.admission(surgery))
    t.follow(surgery + days(30), cancer=False)


def hepatoblastoma(t: Trap) -> None:
    t.patient(birth_years=(1990, 1999))
    t.cancer(HEPATOBLASTOMA)
    t.b.add_afp(t.onset + days(2), t.rng.randint(10_000, 60_000))
    last = t.cycles(t.onset + days(14), 4, [(CISPLATIN, 80), (DOXORUBICIN, 30)])
    surgery = last + days(t.rng.randint(30, 60))
    t.b.add_resection(surgery, t.rng.choice(MAJOR_RESECTIONS), t.admission(surgery))
    t.follow(surgery + days(30), cancer=False)


def liver_donor(t: Trap) -> None:
    t.death = None
    t.patient(birth_years=(1950, 1980))
    surgery = t.onset + days(30)
    t.operation(DONOR_HEPATECTOMY, surgery, LIVER)
    t.follow(surgery + days(30), cancer=False)


def hbv_carrier(t: Trap) -> None:
    """Chronic hepatitis B: HBsAg positive, AFP every six months; some on interferon alfa-2b
    (a PIAF agent, here for hepatitis B), daily for 16 weeks as the 1990s regimen."""
    t.death = None
    t.patient()
    t.b.add_comorbidity(CHRONIC_HBV, t.onset)
    t.b.add_hbsag(t.onset, positive=True)
    day = t.onset
    while day < t.cutoff - timedelta(30):
        t.b.add_afp(day, round(t.rng.uniform(1.5, 9), 1))
        day += days(t.rng.randint(150, 210))
    if t.rng.random() < 0.2:
        start = t.onset + days(30)
        for week in range(16):
            dosage = {
                "text": "5 million IU daily",
                "route": ROUTE_SC,
                "dose": ucum(5, "million IU", "10*6.[IU]"),
            }
            effective = {"effectiveDateTime": (start + days(7 * week)).isoformat()}
            t.b.add_administration(INTERFERON, f"w{week + 1}", dosage, effective)
    t.follow(t.onset + days(60), cancer=False)


TRAPS = {
    "hbv_carrier": hbv_carrier,
    "hcc_unresected": hcc_unresected,
    "hcc_resected_first": hcc_resected_first,
    "hcc_tace_resected": hcc_tace_resected,
    "hcc_transplant": hcc_transplant,
    "hcc_ablation": hcc_ablation,
    "breast_doxorubicin": breast_doxorubicin,
    "colorectal_liver_metastases": colorectal_liver_metastases,
    "cholangiocarcinoma": cholangiocarcinoma,
    "hepatoblastoma": hepatoblastoma,
    "liver_donor": liver_donor,
}


# ---------------------------------------------------------------------------------------------
# The whole export
# ---------------------------------------------------------------------------------------------


def write_patients(
    out: Writer, shape: Json, resources: int, kinds: list[str], seed: int
) -> dict[str, list[str]]:
    """Every patient in turn, each with an equal share of the resources still to write.
    Returns the patient ids of each kind."""
    unknown = set(kinds) - {"background", "salvage", *TRAPS}
    if unknown:
        raise ValueError(f"hospital shape: no builder for kinds {sorted(unknown)}")
    rng = random.Random(seed)
    words = Vocabulary(shape)
    block = Block(out, random.Random(f"{seed}:shuffle"), shape["interleave_patients"])
    planted: dict[str, list[str]] = {}
    for index, kind in enumerate(kinds):
        budget = (resources - block.written) // (len(kinds) - index)
        before = block.written
        pid = random_id(rng)
        death = planted_patient(block, kind, pid, seed, rng, shape)
        care = HospitalCare(shape, words, rng, block, pid, death, planted=kind != "background")
        if kind == "background":
            if rng.random() < shape["death_share"]:
                care.death = care.last = care.day_between(care.first, care.last)
            care.patient(
                rng.choice(("male", "female")),
                date(rng.randint(1925, 1985), rng.randint(1, 12), rng.randint(1, 28)),
            )
        planted.setdefault(kind, []).append(pid)
        care.routine(budget - (block.written - before))
        block.patient_done()
    block.flush()
    return planted


def planted_patient(
    block: Block, kind: str, pid: str, seed: int, rng: random.Random, shape: Json
) -> date | None:
    """The study resources of a salvage or trap patient; returns its death date."""
    if kind == "background":
        return None
    if kind == "salvage":
        row = salvage_row(rng, pid, shape["cutoff"])
        builder = build_cohort_patient(row, random_shapes(rng, row.group), seed)
        death = row.end if row.died else None
    else:
        trap = Trap(pid, seed, rng, shape["cutoff"])
        TRAPS[kind](trap)
        builder, death = trap.b, trap.death
    for entry in builder.bundle.entries:
        block.add(entry["resource"])
    return death
