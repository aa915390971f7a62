"""The pull plan against an in-memory server: candidates, batches, fallbacks, output, manifest."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import orjson
import pytest

from fhir_hcc.errors import ConfigError
from fhir_hcc.server import ServerSource
from fhir_hcc.server.client import FhirClient
from fhir_hcc.server.errors import IncompleteDataError
from fhir_hcc.server.options import AuthOptions
from fhir_hcc.server.output import iso_timestamp
from fhir_hcc.server.puller import pull, run_pull
from server.conftest import fast_options
from server.fake_fhir import BASE, FakeFhirServer

ICD10 = "http://hl7.org/fhir/sid/icd-10"
LOINC = "http://loinc.org"
CPT = "http://www.ama-assn.org/go/cpt"
SEARCH_CODES = {
    "Condition": [(ICD10, "C22.0")],
    "Procedure": [(CPT, "79445")],
    "Observation": [(LOINC, "5196-1"), (LOINC, "1834-1")],
    "MedicationAdministration": [],
}


def coded(resource_type: str, rid: str, patient: str, system: str, code: str, **extra) -> dict:
    return {
        "resourceType": resource_type,
        "id": rid,
        "subject": {"reference": f"Patient/{patient}"},
        "code": {"coding": [{"system": system, "code": code}]},
        **extra,
    }


LONG_ID = "e" + "x" * 80  # Epic ids exceed the 64 characters R4 allows


def registry() -> list[dict]:
    """p1, p2 have HCC; p3 only a Y-90 procedure; p4, p5 are not candidates; p_6 and a
    long-id patient have HCC under ids the old reference pattern did not take."""
    resources: list[dict] = [{"resourceType": "Patient", "id": f"p{i}"} for i in range(1, 6)]
    resources += [
        {"resourceType": "Patient", "id": "p_6"},
        {"resourceType": "Patient", "id": LONG_ID},
    ]
    resources += [
        coded("Condition", "c6", "p_6", ICD10, "C22.0"),
        coded("Condition", "c7", LONG_ID, ICD10, "C22.0"),
        coded("Condition", "c1", "p1", ICD10, "C22.0"),
        coded("Condition", "c2", "p2", ICD10, "C22.0"),
        coded("Condition", "c3", "p2", ICD10, "I10"),
        coded("Condition", "c4", "p4", ICD10, "I10"),
        coded("Procedure", "y1", "p3", CPT, "79445"),
        coded("Procedure", "x5", "p5", CPT, "45378"),
        coded("Observation", "o1", "p1", LOINC, "5196-1"),
        coded("Observation", "o2", "p2", LOINC, "1834-1"),
        coded("Observation", "lab1", "p1", LOINC, "2345-7"),  # unmapped: not pulled
        coded("Observation", "o4", "p4", LOINC, "5196-1"),  # not a candidate
        {
            "resourceType": "MedicationAdministration",
            "id": "ma1",
            "subject": {"reference": "Patient/p1"},
            "medicationReference": {"reference": "Medication/m1"},
        },
        {
            "resourceType": "MedicationAdministration",
            "id": "ma2",
            "subject": {"reference": "Patient/p3"},
            "medicationReference": {"reference": "#contained"},
        },
        {"resourceType": "Medication", "id": "m1"},
        {"resourceType": "Medication", "id": "m2"},  # referenced by nobody
        {"resourceType": "Medication", "id": "m3"},
        {"resourceType": "Encounter", "id": "e1", "subject": {"reference": "Patient/p2"}},
        {"resourceType": "Encounter", "id": "e4", "subject": {"reference": "Patient/p4"}},
        # The mappers read these too (fallbacks, contact dates, pathology conclusions).
        {
            "resourceType": "MedicationRequest",
            "id": "mr1",
            "subject": {"reference": "Patient/p2"},
            "medicationReference": {"reference": "Medication/m3"},
        },
        {
            "resourceType": "MedicationStatement",
            "id": "ms1",
            "subject": {"reference": "Patient/p_6"},
        },
        {
            "resourceType": "MedicationStatement",
            "id": "ms4",
            "subject": {"reference": "Patient/p4"},
        },
        {"resourceType": "DiagnosticReport", "id": "dr1", "subject": {"reference": "Patient/p1"}},
    ]
    return resources


EXPECTED = {
    "Patient": {"p1", "p2", "p3", "p_6", LONG_ID},
    "Condition": {"c1", "c2", "c3", "c6", "c7"},
    "Procedure": {"y1"},
    "Observation": {"o1", "o2"},
    "MedicationAdministration": {"ma1", "ma2"},
    "MedicationRequest": {"mr1"},
    "MedicationStatement": {"ms1"},
    "Medication": {"m1", "m3"},
    "Encounter": {"e1"},
    "DiagnosticReport": {"dr1"},
}


@pytest.fixture
def server(httpx_mock) -> FakeFhirServer:
    fake = FakeFhirServer(registry())
    httpx_mock.add_callback(fake, is_reusable=True)
    return fake


def pull_into(out: Path, **option_changes) -> dict:
    options = fast_options(**{"batch_size": 2, "page_size": 2, **option_changes})
    return asyncio.run(pull(BASE, SEARCH_CODES, options, out, environ={}))


def pulled_ids(out: Path) -> dict[str, set[str]]:
    return {
        path.stem: {json.loads(line)["id"] for line in path.read_text().splitlines()}
        for path in out.glob("*.ndjson")
    }


def test_pull_fetches_exactly_the_candidates_data(server, tmp_path):
    manifest = pull_into(tmp_path)
    assert pulled_ids(tmp_path) == EXPECTED
    assert manifest["counts"] == {name: len(ids) for name, ids in sorted(EXPECTED.items())}
    assert manifest["candidates"] == 5
    assert manifest["complete"] is True
    assert manifest["server"] == {"baseUrl": BASE, "fhirVersion": "4.0.1", "software": None}
    assert manifest["strategies"] == {}
    assert json.loads((tmp_path / "manifest.json").read_text()) == manifest
    # Batches of two patients, in id order, as lists in one parameter.
    patient_queries = [q["query"] for q in manifest["queries"] if q["query"].startswith("GET Pat")]
    assert patient_queries == [
        f"GET Patient?_id={LONG_ID},p1&_count=2",
        "GET Patient?_id=p2,p3&_count=2",
        "GET Patient?_id=p_6&_count=2",
    ]
    observation_queries = [q for q in manifest["queries"] if "Observation" in q["query"]]
    assert all("code=http://loinc.org|5196-1,http://loinc.org|1834-1" in q["query"]
               for q in observation_queries)  # fmt: skip


def test_list_refusal_falls_back_to_post(server, tmp_path):
    server.refuse_lists = True
    manifest = pull_into(tmp_path)
    assert pulled_ids(tmp_path) == EXPECTED
    assert manifest["strategies"]["Condition"] == "post-list"
    assert any("lists are not supported" in w for w in manifest["warnings"])
    posts = [r for r in server.seen if r.method == "POST"]
    assert posts and all(r.url.path.endswith("/_search") for r in posts)


def test_list_and_post_refusal_fall_back_to_one_patient_per_request(server, tmp_path):
    server.refuse_lists = True
    server.refuse_post = True
    manifest = pull_into(tmp_path)
    assert pulled_ids(tmp_path) == EXPECTED
    assert set(manifest["strategies"].values()) == {"one-per-request"}
    condition_gets = [
        r for r in server.seen if r.method == "GET" and r.url.path.endswith("/Condition")
    ]
    assert {r.url.params.get("patient") for r in condition_gets} >= {"p1", "p2", "p3", "p_6"}


def test_urls_stay_under_the_limit(server, tmp_path):
    pull_into(tmp_path, batch_size=50, max_url_length=200)
    assert pulled_ids(tmp_path) == EXPECTED
    searches = [r for r in server.seen if r.method == "GET" and "_count" in r.url.params]
    # A single token can exceed half the budget; otherwise every request fits.
    assert all(len(str(r.url)) <= 200 for r in searches if r.url.params.get("code") is None)


@pytest.mark.parametrize(
    ("ignored", "message"),
    [
        ("patient", "belongs to a patient that was not asked for"),
        ("_id", r"Patient/p\d was not asked for: the server may ignore the _id parameter"),
    ],
)
def test_server_ignoring_the_id_filter_fails(httpx_mock, tmp_path, ignored, message):
    fake = FakeFhirServer(registry())
    original = fake._search

    def ignore(resource_type, params):
        return original(resource_type, {k: v for k, v in params.items() if k != ignored})

    fake._search = ignore
    httpx_mock.add_callback(fake, is_reusable=True)
    with pytest.raises(IncompleteDataError, match=message):
        pull_into(tmp_path / "out")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_missing_patient_is_asked_again_then_reported(httpx_mock, tmp_path):
    resources = [r for r in registry() if r["id"] != "p3"]  # referenced, but absent
    httpx_mock.add_callback(FakeFhirServer(resources), is_reusable=True)
    manifest = pull_into(tmp_path)
    assert "Patient/p3 is not on the server; no data of it is pulled" in manifest["warnings"]
    assert manifest["missingPatients"] == ["p3"]
    assert "Procedure" not in manifest["counts"]  # p3's Y-90 procedure: not asked for


def test_failed_pull_leaves_no_partial_output(httpx_mock, tmp_path):
    fake = FakeFhirServer(registry())

    def fail_encounters(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/Encounter"):
            return httpx.Response(503)
        return fake(request)

    httpx_mock.add_callback(fail_encounters, is_reusable=True)
    with pytest.raises(Exception, match="HTTP 503"):
        pull_into(tmp_path, max_retries=1)
    assert list(tmp_path.iterdir()) == []


def test_a_folder_of_foreign_ndjson_is_refused(tmp_path):
    (tmp_path / "Patient.ndjson").write_text("{}\n")
    with pytest.raises(ConfigError, match="not a pull; use an empty folder"):
        pull_into(tmp_path)


def test_a_previous_pull_is_replaced(server, tmp_path):
    pull_into(tmp_path)
    (tmp_path / "Encounter.ndjson").write_text('{"resourceType": "Encounter", "id": "stale"}\n')
    pull_into(tmp_path)
    assert pulled_ids(tmp_path) == EXPECTED


def test_secrets_stay_out_of_the_manifest(server, tmp_path):
    secret = "bearer-s3cr3t-value"
    options = fast_options(auth=AuthOptions(mode="bearer"))
    env = {"FHIR_HCC_TOKEN": secret}
    asyncio.run(pull(BASE, SEARCH_CODES, options, tmp_path, environ=env))
    assert all(r.headers["Authorization"] == f"Bearer {secret}" for r in server.seen)
    manifest_text = (tmp_path / "manifest.json").read_text()
    assert secret not in manifest_text
    assert '"auth": "bearer"' in manifest_text


def test_server_source_streams_what_was_pulled(server, tmp_path):
    source = ServerSource(BASE, SEARCH_CODES, fast_options(batch_size=2), workdir=tmp_path)
    problems = []
    items = list(source.read(problems.append))
    assert problems == []
    by_type: dict[str, set[str]] = {}
    for item, origin in items:
        resource = orjson.loads(item)
        by_type.setdefault(resource["resourceType"], set()).add(resource["id"])
        assert origin.location == str(tmp_path / f"{resource['resourceType']}.ndjson")
        assert origin.line is not None
    assert by_type == EXPECTED
    assert problems == []
    assert source.manifest["candidates"] == 5


def test_server_source_uses_a_temporary_folder(server):
    source = ServerSource(BASE, SEARCH_CODES, fast_options())
    locations = {origin.location for _, origin in source.read(lambda problem: None)}
    assert locations and not any(Path(location).exists() for location in locations)


def test_pull_times_keep_milliseconds_for_the_next_lastupdated_bound():
    assert iso_timestamp(1.2345) == "1970-01-01T00:00:01.234+00:00"


def test_run_pull_takes_an_open_client_and_reads_metadata_once(server, tmp_path):
    async def main() -> dict:
        async with FhirClient(BASE, fast_options(batch_size=2, page_size=2)) as client:
            assert (await client.capability())["fhirVersion"] == "4.0.1"
            return await run_pull(client, SEARCH_CODES, tmp_path)

    manifest = asyncio.run(main())
    assert pulled_ids(tmp_path) == EXPECTED
    assert [r.url.path for r in server.seen].count("/r4/metadata") == 1
    assert manifest["requests"]["requests"] == len(server.seen)
