"""The reference fixtures with deliberate faults: each is flagged, the 49-patient table unchanged.

(salvage2004-cohort.md, "Fault fixtures".) The faults are injected into a copy of the bundles.
"""

import copy
from pathlib import Path

import orjson
import pandas as pd
import pytest

import fhir_hcc

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "salvage2004"
SNOMED = "http://snomed.info/sct"


def _bundle(patient: str) -> dict:
    return orjson.loads((FIXTURES / f"{patient}.json").read_bytes())


def _resource(bundle: dict, resource_id: str) -> dict:
    return next(e["resource"] for e in bundle["entry"] if e["resource"].get("id") == resource_id)


def _add(bundle: dict, resource: dict) -> None:
    url = f"{resource['resourceType']}/{resource['id']}"
    bundle["entry"].append({"fullUrl": f"https://fhir-hcc.example/fhir/{url}", "resource": resource,
                            "request": {"method": "PUT", "url": url}})  # fmt: skip


def _inject_faults() -> dict[str, dict]:
    p02, p03, p04 = _bundle("P02"), _bundle("P03"), _bundle("P04")
    duplicate = copy.deepcopy(_resource(p02, "P02-resection"))
    duplicate["id"] = "P02-resection-billing-copy"
    _add(p02, duplicate)
    patient = _resource(p02, "P02")
    death_date = patient.pop("deceasedDateTime")
    patient["deceasedBoolean"] = True
    _add(p02, {
        "resourceType": "Observation", "id": "P02-dead", "status": "final",
        "code": {"coding": [{"system": SNOMED, "code": "419099009"}]},
        "subject": {"reference": "Patient/P02"}, "effectiveDateTime": death_date,
    })  # fmt: skip
    _add(p02, {
        "resourceType": "Observation", "id": "P02-status-after-death", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "97509-4"}]},
        "subject": {"reference": "Patient/P02"}, "effectiveDateTime": "2000-12-01",
        "valueCodeableConcept": {"coding": [{"system": SNOMED, "code": "271299001"}]},
    })  # fmt: skip
    _resource(p02, "P02-obs-012")["code"]["coding"][0]["code"] = "88040-1"
    hbsag = _resource(p03, "P03-obs-001")
    hbsag["effectiveDateTime"] = hbsag["effectiveDateTime"][:7]
    hbsag["code"]["coding"][0]["code"] = "5197-9"
    hbsag.pop("valueCodeableConcept")
    hbsag["valueString"] = "REACTIVE"
    cancer = _resource(p04, "P04-cancer")
    cancer["code"]["coding"] = [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "C220"}]
    return {"P02": p02, "P03": p03, "P04": p04}


@pytest.fixture(scope="module")
def results(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[fhir_hcc.CohortResult, fhir_hcc.CohortResult]:
    faulty = tmp_path_factory.mktemp("faults")
    replaced = _inject_faults()
    for path in FIXTURES.glob("*.json"):
        data = replaced.get(path.stem)
        (faulty / path.name).write_bytes(orjson.dumps(data) if data else path.read_bytes())
    return fhir_hcc.build_cohort(FIXTURES), fhir_hcc.build_cohort(faulty)


def test_the_table_is_unchanged(
    results: tuple[fhir_hcc.CohortResult, fhir_hcc.CohortResult],
) -> None:
    clean, faulty = results
    pd.testing.assert_frame_equal(
        clean.table[list(fhir_hcc.COLUMNS)], faulty.table[list(fhir_hcc.COLUMNS)]
    )


@pytest.mark.parametrize(
    ("patient", "rule", "source"),
    [
        ("P02", "duplicate_collapsed", "Procedure/P02-resection-billing-copy"),
        ("P02", "death_date_from_observation", None),  # the expired discharge or the Observation
        ("P02", "recurrence_after_end", "Observation/P02-status-after-death"),
        ("P02", "resource_after_death", "Observation/P02-status-after-death"),
        ("P02", "mcode_stu1_normalised", "Observation/P02-obs-012"),
        ("P03", "partial_date_imputed", "Observation/P03-obs-001"),
    ],
)
def test_each_fault_is_flagged(
    results: tuple[fhir_hcc.CohortResult, fhir_hcc.CohortResult],
    patient: str,
    rule: str,
    source: str,
) -> None:
    clean, faulty = results

    def flagged(qc: pd.DataFrame) -> bool:
        same_source = qc.source == source if source else True
        return bool(((qc.patient_id == patient) & (qc.rule == rule) & same_source).any())

    assert flagged(faulty.qc) and not flagged(clean.qc)


def test_dotless_icd_and_string_hbsag_still_read(
    results: tuple[fhir_hcc.CohortResult, fhir_hcc.CohortResult],
) -> None:
    _, faulty = results
    provenance = faulty.patients
    assert provenance["P04"].provenance["dx_date"] == ["Condition/P04-cancer"]
    assert "Observation/P03-obs-001" in provenance["P03"].provenance["hbv_status"]
