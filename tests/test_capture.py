"""De-identification of captured fixtures (`fhir_hcc.capture`) on plain dict resources, the
pseudonym key, and the fetch plan against a mocked server."""

import asyncio
import copy
import json
import re
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fhir_hcc.capture import (
    MAX_SHIFT_DAYS,
    MIN_SHIFT_DAYS,
    Deidentifier,
    capture,
    load_key,
)
from fhir_hcc.errors import ConfigError
from fhir_hcc.fhir.types import PATIENT_TYPES
from fhir_hcc.r4b_check import validation_errors
from fhir_hcc.server.options import ClientOptions
from fhir_hcc.sources import FileSource

KEY = b"0123456789abcdef-test-key"
BASE = "https://fhir.example.org/r4"
REFERENCE_BUNDLE = Path(__file__).resolve().parent.parent / "fixtures" / "salvage2004" / "P01.json"

PATIENT = {
    "resourceType": "Patient",
    "id": "P01",
    "meta": {"versionId": "3", "lastUpdated": "2020-02-03T10:00:00Z", "source": "#ward7"},
    "text": {"status": "generated", "div": "<div>Chan Tai Man, born 1948-04-20</div>"},
    "identifier": [{"system": "https://hospital.example/mrn", "value": "MRN-4711"}],
    "name": [{"family": "Chan", "given": ["Tai Man"]}],
    "telecom": [{"system": "phone", "value": "+852 5555 0101"}],
    "address": [{"line": ["1 Harbour Road"], "city": "Hong Kong"}],
    "photo": [{"contentType": "image/png", "data": "iVBORw0K"}],
    "contact": [{"name": {"family": "Chan"}, "telecom": [{"value": "+852 5555 0102"}]}],
    "gender": "male",
    "birthDate": "1948-04-20",
    "deceasedDateTime": "2002-01-05T23:30:00+08:00",
    "extension": [
        {
            "url": "http://hl7.org/fhir/us/core/StructureDefinition/us-core-birthsex",
            "valueCode": "M",
        },
        {
            "url": "http://hl7.org/fhir/StructureDefinition/patient-mothersMaidenName",
            "valueString": "Wong",
        },
    ],
    "link": [{"other": {"reference": f"{BASE}/Patient/P01-old"}, "type": "replaces"}],
}
PROCEDURE = {
    "resourceType": "Procedure",
    "id": "P01-resection",
    "status": "completed",
    "code": {
        "coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": "47130", "display": "Hx"}],
        "text": "Right hemihepatectomy",
    },
    "subject": {"reference": "Patient/P01", "display": "Chan Tai Man"},
    "performedPeriod": {"start": "2002-01-10T08:00:00+08:00", "end": "2002-01-10T13:15:00+08:00"},
    "performer": [{"actor": {"display": "Dr Lau"}}],
    "recorder": {"reference": "https://other.example/fhir/Practitioner/9"},
    "note": [{"text": "Seen by Dr Lau on 2002-01-09"}],
    "reasonReference": [{"reference": "Condition/P01-cancer"}],
    "extension": [{"url": "http://example.org/planned", "valueDate": "2001-12"}],
    "contained": [{"resourceType": "Medication", "id": "m1", "code": {"text": "x"}}],
    "usedReference": [{"reference": "#m1"}],
}
OBSERVATION = {
    "resourceType": "Observation",
    "id": "P01-obs-7",
    "status": "final",
    "code": {"coding": [{"system": "http://loinc.org", "code": "1834-1"}]},
    "subject": {"reference": "Patient/P01"},
    "effectiveDateTime": "2001",
    "issued": "2001-06-02T09:00:00.000Z",
    "valueString": "Resected 2002-01-10, no residual tumour",
    "comment": "Phone the family",
}


@pytest.fixture
def deidentifier() -> Deidentifier:
    return Deidentifier(KEY, BASE)


def _shift(deidentifier: Deidentifier) -> int:
    return deidentifier.shift_days("P01")


def _days(text: str, shift: int) -> str:
    return date.fromordinal(date.fromisoformat(text).toordinal() + shift).isoformat()


def test_ids_and_references_become_consistent_pseudonyms(deidentifier: Deidentifier) -> None:
    shift = _shift(deidentifier)
    patient = deidentifier.resource(PATIENT, shift)
    procedure = deidentifier.resource(PROCEDURE, shift)
    assert patient["id"] == deidentifier.pseudonym("Patient", "P01") != "P01"
    assert procedure["subject"] == {"reference": f"Patient/{patient['id']}"}
    assert procedure["reasonReference"] == [
        {"reference": f"Condition/{deidentifier.pseudonym('Condition', 'P01-cancer')}"}
    ]
    # The server's own absolute references become relative; another server's are dropped.
    assert patient["link"][0]["other"]["reference"] == (
        f"Patient/{deidentifier.pseudonym('Patient', 'P01-old')}"
    )
    assert "recorder" not in procedure
    assert procedure["usedReference"] == [{"reference": "#m1"}]
    assert procedure["contained"][0]["id"] == "m1"
    other_key = Deidentifier(b"another-key-of-16-bytes-or-more", BASE)
    assert other_key.pseudonym("Patient", "P01") != patient["id"]
    assert deidentifier.pseudonym("Condition", "P01") != patient["id"]


def test_every_date_moves_by_the_patient_offset(deidentifier: Deidentifier) -> None:
    shift = _shift(deidentifier)
    patient = deidentifier.resource(PATIENT, shift)
    procedure = deidentifier.resource(PROCEDURE, shift)
    observation = deidentifier.resource(OBSERVATION, shift)
    assert patient["birthDate"] == _days("1948-04-20", shift)
    assert patient["deceasedDateTime"] == _days("2002-01-05", shift) + "T23:30:00+08:00"
    assert patient["meta"]["lastUpdated"] == _days("2020-02-03", shift) + "T10:00:00Z"
    period = procedure["performedPeriod"]
    assert period == {
        "start": _days("2002-01-10", shift) + "T08:00:00+08:00",
        "end": _days("2002-01-10", shift) + "T13:15:00+08:00",
    }
    assert observation["issued"] == _days("2001-06-02", shift) + "T09:00:00.000Z"
    assert (
        observation["valueString"] == f"Resected {_days('2002-01-10', shift)}, no residual tumour"
    )
    # Partial dates keep their precision and move from the middle of their month or year.
    moved_month = date.fromisoformat(_days("2001-12-15", shift))
    assert procedure["extension"][0]["valueDate"] == f"{moved_month:%Y-%m}"
    assert (
        observation["effectiveDateTime"] == f"{date.fromisoformat(_days('2001-07-01', shift)):%Y}"
    )


def test_identifying_elements_are_removed(deidentifier: Deidentifier) -> None:
    shift = _shift(deidentifier)
    patient = deidentifier.resource(PATIENT, shift)
    procedure = deidentifier.resource(PROCEDURE, shift)
    observation = deidentifier.resource(OBSERVATION, shift)
    assert set(patient) == {"resourceType", "id", "meta", "gender", "birthDate",
                            "deceasedDateTime", "extension", "link"}  # fmt: skip
    assert patient["meta"].keys() == {"lastUpdated"}
    assert [e["url"].rsplit("/", 1)[-1] for e in patient["extension"]] == ["us-core-birthsex"]
    assert "note" not in procedure and "performer" not in procedure
    assert "display" not in procedure["subject"]
    assert procedure["code"]["text"] == "Right hemihepatectomy"  # the mappers read it
    assert procedure["code"]["coding"][0]["display"] == "Hx"
    assert "comment" not in observation
    text = json.dumps([patient, procedure, observation])
    for secret in ("Chan", "Tai Man", "Wong", "MRN-4711", "5555", "Harbour", "Lau", "ward7",
                   "P01", "1948-04-20", "2002-01-10", "iVBOR"):  # fmt: skip
        assert secret not in text


def test_input_is_not_modified(deidentifier: Deidentifier) -> None:
    before = copy.deepcopy(PATIENT)
    deidentifier.resource(PATIENT, _shift(deidentifier))
    assert before == PATIENT


@given(st.text(min_size=1, max_size=64))
def test_offset_is_never_small_and_stays_bounded(patient_id: str) -> None:
    shift = Deidentifier(KEY).shift_days(patient_id)
    assert MIN_SHIFT_DAYS <= abs(shift) <= MAX_SHIFT_DAYS
    assert Deidentifier(KEY).shift_days(patient_id) == shift


def test_offsets_differ_between_patients() -> None:
    shifts = {Deidentifier(KEY).shift_days(f"P{n:02d}") for n in range(20)}
    assert len(shifts) > 10
    assert any(s < 0 for s in shifts) and any(s > 0 for s in shifts)


def test_reference_bundle_stays_valid_r4(deidentifier: Deidentifier) -> None:
    resources = [orjson.loads(item) for item, _ in FileSource(REFERENCE_BUNDLE).read(pytest.fail)]
    bundle = deidentifier.bundle("P01", resources)
    assert bundle["type"] == "collection"
    assert bundle["id"] == deidentifier.pseudonym("Patient", "P01")
    assert validation_errors(bundle) == []


# -- the key ---------------------------------------------------------------------------------
def test_key_from_environment_or_file(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_bytes(b"file-key-0123456789\n")
    assert load_key(None, {"FHIR_HCC_CAPTURE_KEY": " env-key-0123456789 "}) == b"env-key-0123456789"
    assert load_key(None, {"FHIR_HCC_CAPTURE_KEY_FILE": str(key_file)}) == b"file-key-0123456789"
    assert load_key(key_file, {"FHIR_HCC_CAPTURE_KEY": "ignored-0123456789"}) == (
        b"file-key-0123456789"
    )


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({}, "no capture key: set FHIR_HCC_CAPTURE_KEY or FHIR_HCC_CAPTURE_KEY_FILE"),
        ({"FHIR_HCC_CAPTURE_KEY": "short"}, "FHIR_HCC_CAPTURE_KEY: the capture key must have"),
        ({"FHIR_HCC_CAPTURE_KEY_FILE": "/nonexistent/key"}, "/nonexistent/key: cannot read"),
    ],
)
def test_missing_or_weak_key_is_one_line(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match="^" + message):
        load_key(None, environ)


# -- fetching (HTTP mocked) ------------------------------------------------------------------
def _search_bundle(resources: list[dict[str, Any]]) -> dict[str, Any]:
    entries = [{"resource": r, "search": {"mode": "match"}} for r in resources]
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(resources),
        "entry": entries,
    }


def test_capture_fetches_patient_types_and_medications(httpx_mock: Any, tmp_path: Path) -> None:
    administration = {
        "resourceType": "MedicationAdministration",
        "id": "ma1",
        "status": "completed",
        "medicationReference": {"reference": "Medication/doxo"},
        "subject": {"reference": "Patient/P01"},
        "effectiveDateTime": "2001-10-11",
    }
    medication = {"resourceType": "Medication", "id": "doxo", "code": {"text": "doxorubicin"}}
    patient = {"resourceType": "Patient", "id": "P01", "birthDate": "1948-04-20"}

    def respond(request: httpx.Request) -> httpx.Response:
        path = request.url.path.removeprefix("/r4/")
        if path == "metadata":
            return httpx.Response(200, json={"resourceType": "CapabilityStatement"})
        found = {
            "Patient": [patient],
            "MedicationAdministration": [administration],
            "Medication": [medication],
        }
        return httpx.Response(200, json=_search_bundle(found.get(path, [])))

    httpx_mock.add_callback(respond, is_reusable=True)
    written = asyncio.run(capture(BASE, ["P01"], ClientOptions(), tmp_path, KEY))
    requests = [
        (r.url.path.removeprefix("/r4/"), dict(r.url.params)) for r in httpx_mock.get_requests()
    ]
    assert requests[:2] == [("metadata", {}), ("Patient", {"_id": "P01", "_count": "500"})]
    searched = {path: params for path, params in requests[1:]}
    assert set(searched) == {"Patient", *PATIENT_TYPES, "Medication"}  # the types mappers read
    assert searched["Condition"]["patient"] == "P01"
    assert searched["Medication"]["_id"] == "doxo"
    [item] = written
    bundle = orjson.loads(item.path.read_bytes())
    types = [entry["resource"]["resourceType"] for entry in bundle["entry"]]
    assert types == ["Patient", "MedicationAdministration", "Medication"]
    deidentifier = Deidentifier(KEY, BASE)
    assert bundle["entry"][1]["resource"]["medicationReference"] == {
        "reference": f"Medication/{deidentifier.pseudonym('Medication', 'doxo')}"
    }
    assert item.pseudonym == bundle["id"] and item.path.name == f"{bundle['id']}.json"


def test_bad_patient_id_is_refused_before_any_request(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=re.escape("'../Patient' is not a FHIR resource id")):
        asyncio.run(capture(BASE, ["../Patient"], ClientOptions(), tmp_path, KEY))
