"""A deterministic synthetic registry: many patients, a few with HCC, for the pull benchmark.

Cohort patients carry an HCC Condition, a resection, chemotherapy (one drug by Medication
reference), mapped Observations (HBsAg, necrosis) besides unmapped labs, and Encounters. The
others carry unrelated Conditions, Procedures, drugs, labs and Encounters, which a pull must
not fetch. Loaded with client-assigned ids (PUT), so reloading is idempotent.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

ICD10 = "http://hl7.org/fhir/sid/icd-10"
SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
CPT = "http://www.ama-assn.org/go/cpt"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"

HCC_CODES = [(ICD10, "C22.0"), (SNOMED, "109841003")]
OTHER_CONDITIONS = [(ICD10, "I10"), (ICD10, "E11.9"), (ICD10, "J45.9"), (ICD10, "K21.9")]
RESECTION = (CPT, "47122")
OTHER_PROCEDURES = [(CPT, "45378"), (CPT, "43239"), (CPT, "71046")]
CHEMO = [(RXNORM, "2555"), (RXNORM, "4492"), (RXNORM, "5880")]
DOXORUBICIN_MEDICATION = "med-doxorubicin"
OTHER_DRUGS = [(RXNORM, "161"), (RXNORM, "1191"), (RXNORM, "6809")]
MAPPED_OBSERVATIONS = [(LOINC, "5196-1"), (SNOMED, "405921002")]
UNMAPPED_LABS = [(LOINC, "2345-7"), (LOINC, "718-7"), (LOINC, "2160-0"), (LOINC, "1742-6")]


def synthetic_registry(
    patients: int, cohort: int, seed: int = 2004, labs: int = 25, encounters: int = 8
) -> list[dict[str, Any]]:
    """All resources of the registry; patients `R00000`… with `cohort` of them in the cohort."""
    rng = random.Random(seed)
    in_cohort = set(rng.sample(range(patients), cohort))
    resources: list[dict[str, Any]] = [_medication()]
    for number in range(patients):
        maker = _PatientMaker(f"R{number:05d}", rng)
        resources += maker.cohort_patient(labs) if number in in_cohort else maker.other(labs)
        resources += maker.encounters(encounters)
    return resources


def transaction_bundles(resources: list[dict[str, Any]], size: int = 500) -> Iterator[dict]:
    for start in range(0, len(resources), size):
        yield {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {
                    "fullUrl": f"{r['resourceType']}/{r['id']}",
                    "resource": r,
                    "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"},
                }
                for r in resources[start : start + size]
            ],
        }


def _concept(*codings: tuple[str, str]) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code} for system, code in codings]}


def _medication() -> dict[str, Any]:
    return {
        "resourceType": "Medication",
        "id": DOXORUBICIN_MEDICATION,
        "code": _concept((RXNORM, "3639")),
    }


class _PatientMaker:
    def __init__(self, patient_id: str, rng: random.Random) -> None:
        self.patient_id = patient_id
        self.rng = rng
        self.counter = 0
        self.start = date(1994, 1, 1) + timedelta(days=rng.randrange(3000))

    def cohort_patient(self, labs: int) -> list[dict[str, Any]]:
        surgery = self.start + timedelta(days=200)
        chemo = [
            self._administration(code, self.start + timedelta(days=30 * cycle))
            for cycle in range(2)
            for code in CHEMO
        ]
        doxorubicin = self._administration(None, self.start + timedelta(days=1))
        return [
            self._patient(),
            self._resource("Condition", "code", _concept(*HCC_CODES), onsetDateTime=self._day(0)),
            self._resource("Condition", "code", _concept(OTHER_CONDITIONS[0])),
            self._resource("Procedure", "code", _concept(RESECTION), status="completed",
                           performedDateTime=surgery.isoformat()),
            doxorubicin,
            *chemo,
            *(self._observation(code, surgery) for code in MAPPED_OBSERVATIONS),
            *self._labs(labs - len(MAPPED_OBSERVATIONS)),
        ]  # fmt: skip

    def other(self, labs: int) -> list[dict[str, Any]]:
        return [
            self._patient(),
            *(self._resource("Condition", "code", _concept(c))
              for c in self.rng.sample(OTHER_CONDITIONS, 2)),
            self._resource("Procedure", "code", _concept(self.rng.choice(OTHER_PROCEDURES)),
                           status="completed", performedDateTime=self._day(50)),
            *(self._administration(code, self.start) for code in self.rng.sample(OTHER_DRUGS, 2)),
            *self._labs(labs),
        ]  # fmt: skip

    def encounters(self, count: int) -> list[dict[str, Any]]:
        return [
            self._resource(
                "Encounter",
                "class",
                {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                status="finished",
                period={"start": self._day(90 * visit), "end": self._day(90 * visit)},
            )
            for visit in range(count)
        ]

    def _patient(self) -> dict[str, Any]:
        return {
            "resourceType": "Patient",
            "id": self.patient_id,
            "gender": self.rng.choice(["male", "female"]),
            "birthDate": f"{self.rng.randrange(1930, 1985)}-06-15",
        }

    def _labs(self, count: int) -> list[dict[str, Any]]:
        return [
            self._observation(self.rng.choice(UNMAPPED_LABS), self.start + timedelta(days=7 * i))
            for i in range(count)
        ]

    def _observation(self, code: tuple[str, str], day: date) -> dict[str, Any]:
        return self._resource(
            "Observation", "code", _concept(code), status="final",
            effectiveDateTime=day.isoformat(),
            valueQuantity={"value": self.rng.randrange(1, 100), "unit": "%"},
        )  # fmt: skip

    def _administration(self, code: tuple[str, str] | None, day: date) -> dict[str, Any]:
        medication = (
            {"medicationCodeableConcept": _concept(code)}
            if code
            else {"medicationReference": {"reference": f"Medication/{DOXORUBICIN_MEDICATION}"}}
        )
        return self._resource(
            "MedicationAdministration", None, None, status="completed",
            effectiveDateTime=day.isoformat(), **medication,
        )  # fmt: skip

    def _resource(
        self, resource_type: str, key: str | None, value: Any, **fields: Any
    ) -> dict[str, Any]:
        self.counter += 1
        resource: dict[str, Any] = {
            "resourceType": resource_type,
            "id": f"{self.patient_id}-{self.counter}",
            "subject": {"reference": f"Patient/{self.patient_id}"},
        }
        if key is not None:
            resource[key] = value
        return resource | fields

    def _day(self, offset: int) -> str:
        return (self.start + timedelta(days=offset)).isoformat()
