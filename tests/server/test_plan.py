"""The pull plan under server profiles and case lists, against the in-memory server."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import httpx
import pytest

from fhir_hcc.errors import ConfigError
from fhir_hcc.server.caselist import Population, group, read_identifiers, read_patients
from fhir_hcc.server.client import FhirClient
from fhir_hcc.server.errors import IncompleteDataError, ServerUnreachableError
from fhir_hcc.server.puller import CaseListRequired, apply_profile, pull
from server.conftest import fast_options
from server.fake_fhir import BASE, FakeFhirServer
from server.test_pull import EXPECTED, LONG_ID, SEARCH_CODES, pulled_ids, registry

MRN = "urn:oid:2.16.840.1.113883.3.7418"
EPIC = {"FHIR_HCC_EPIC_CLIENT_ID": "our-client-id"}


@pytest.fixture
def server(httpx_mock) -> FakeFhirServer:
    fake = FakeFhirServer(registry())
    httpx_mock.add_callback(fake, is_reusable=True)
    return fake


def run(
    out: Path,
    population: Population | None = None,
    environ: dict[str, str] | None = None,
    since: str | None = None,
    known_patients: tuple[str, ...] = (),
    **changes: Any,
) -> dict[str, Any]:
    options = fast_options(**{"batch_size": 2, "page_size": 2, **changes})
    return asyncio.run(
        pull(
            BASE,
            SEARCH_CODES,
            options,
            out,
            population=population,
            environ=environ or {},
            since=since,
            known_patients=known_patients,
        )
    )


def listed(tmp_path: Path, *ids: str) -> Population:
    path = tmp_path / "ids.txt"
    path.write_text("\n".join(ids) + "\n")
    return read_patients(path)


def searches(server: FakeFhirServer) -> list[httpx.Request]:
    return [r for r in server.seen if not r.url.path.endswith("/metadata")]


def test_epic_sends_one_patient_per_search_and_reads_medications(server, tmp_path):
    patients = sorted(EXPECTED["Patient"])
    manifest = run(tmp_path / "out", listed(tmp_path, *patients), EPIC, profile="epic")
    assert pulled_ids(tmp_path / "out") == EXPECTED
    assert manifest["profile"] == {"name": "epic", "chosenBy": "--profile epic"}
    for request in searches(server):
        params = request.url.params
        assert request.method == "GET"
        assert "," not in params.get("patient", "") + params.get("_id", ""), request.url
        assert int(params.get("_count", "0")) <= 50
        assert request.headers["Epic-Client-ID"] == "our-client-id"
        assert not request.url.path.endswith("/Observation") or "code" in params
    paths = {r.url.path.removeprefix("/r4/") for r in searches(server)}
    assert {f"Patient/{p}" for p in patients} | {"Medication/m1", "Medication/m3"} <= paths
    per_patient = [r for r in searches(server) if r.url.params.get("patient") == "p2"]
    assert len(per_patient) == len(manifest["queries"]) // len(patients) - 1  # no Patient read


def test_without_a_list_an_ehr_profile_stops_before_any_search(server, tmp_path):
    with pytest.raises(CaseListRequired) as caught:
        run(tmp_path / "out", profile="oracle-health")
    message = str(caught.value)
    assert "server profile 'oracle-health' has no searches without a patient" in message
    assert "--patients FILE" in message and "--identifiers FILE" in message
    assert "--group ID" in message
    assert searches(server) == []
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_a_refused_population_search_asks_for_a_case_list_after_one_refusal(server, tmp_path):
    server.require_patient = True
    with pytest.raises(CaseListRequired, match="the server refused a search without a patient"):
        run(tmp_path / "out")
    refused = [r for r in searches(server) if r.url.path.endswith(("/Condition", "/Procedure"))]
    assert len({r.url.path for r in refused}) == len(refused)  # once per type at most


def test_a_refused_list_is_met_once_per_type(server, tmp_path):
    server.refuse_lists = server.refuse_post = True
    manifest = run(tmp_path / "out", concurrency=4)
    assert pulled_ids(tmp_path / "out") == EXPECTED
    refused: dict[str, int] = {}
    for request in searches(server):
        ids = request.url.params.get("patient", request.url.params.get("_id", ""))
        if "," in ids or request.method == "POST":
            key = f"{request.method} {request.url.path}"
            refused[key] = refused.get(key, 0) + 1
    assert refused and set(refused.values()) == {1}, refused
    assert set(manifest["strategies"].values()) == {"one-per-request"}


def identified(resource_id: str, *values: str, **fields: Any) -> dict[str, Any]:
    identifiers = [{"system": MRN, "value": value} for value in values]
    return {"resourceType": "Patient", "id": resource_id, "identifier": identifiers, **fields}


def test_identifiers_one_per_request_unknown_and_ambiguous_reported_by_line(
    httpx_mock, tmp_path, caplog
):
    caplog.set_level(logging.INFO)
    merged_away = {"type": "replaced-by", "other": {"reference": "Patient/p2"}}
    resources = [r for r in registry() if r["resourceType"] != "Patient"] + [
        identified("p1", "E-101"),
        identified("p2", "E-202"),
        identified("p2-old", "E-202", link=[merged_away]),  # the merged record keeps the MRN
        identified("p4", "E-404"),
        identified("p5", "E-404"),  # two patients, one MRN
    ]
    fake = FakeFhirServer(resources)
    httpx_mock.add_callback(fake, is_reusable=True)
    mrns = tmp_path / "mrns.txt"
    mrns.write_text("E-101\nE-202\nE-999\nE-404\n")
    manifest = run(tmp_path / "out", read_identifiers(mrns, MRN), profile="epic")
    found = manifest["population"]
    assert (found["patients"], found["unknownLines"], found["ambiguousLines"]) == (2, [3], [4])
    assert found["patientIds"] == ["p1", "p2", "p2-old"]  # the merged record's data comes too
    assert found["merged"] == 1
    assert any(
        w.endswith("mrns.txt:3: no patient has this identifier") for w in manifest["warnings"]
    )
    identifier_searches = [r for r in fake.seen if "identifier" in r.url.params]
    assert len(identifier_searches) == 4
    assert all("," not in r.url.params["identifier"] for r in identifier_searches)
    text = (tmp_path / "out" / "manifest.json").read_text() + caplog.text
    leaked = [line for line in text.splitlines() if "E-" in line]
    assert leaked == []
    # The identifier search brought the Patients: no read follows for them.
    assert not [r for r in fake.seen if r.url.path.endswith(("/Patient/p1", "/Patient/p2"))]


def test_a_failing_identifier_search_names_its_line_not_the_value(server, tmp_path):
    original = server._search

    def failing(resource_type, params):
        if "identifier" in params:
            raise httpx.ReadTimeout("no answer")
        return original(resource_type, params)

    server._search = failing
    mrns = tmp_path / "mrns.txt"
    mrns.write_text("E-SECRET-7\n")
    with pytest.raises(ServerUnreachableError) as caught:
        run(tmp_path / "out", read_identifiers(mrns, MRN), profile="epic", max_retries=0)
    assert "Patient?identifier=<--identifiers" in str(caught.value)
    assert "mrns.txt:1>" in str(caught.value) and "E-SECRET" not in str(caught.value)


def test_merged_records_bring_their_whole_history(httpx_mock, tmp_path):
    merged = {"type": "replaced-by", "other": {"reference": "Patient/p9"}}
    resources = [r for r in registry() if r.get("id") != "p1"] + [
        {"resourceType": "Patient", "id": "p1", "link": [merged]},
        {"resourceType": "Patient", "id": "p9"},
        {"resourceType": "Condition", "id": "c9", "subject": {"reference": "Patient/p9"}},
    ]
    httpx_mock.add_callback(FakeFhirServer(resources), is_reusable=True)
    manifest = run(tmp_path / "out", listed(tmp_path, "p1"), profile="epic")
    pulled = pulled_ids(tmp_path / "out")
    assert pulled["Patient"] == {"p1", "p9"} and "c9" in pulled["Condition"]
    assert manifest["population"]["merged"] == 1
    assert "Patient/p9 is linked by a merge; its data is pulled too" in manifest["warnings"]


def test_a_read_redirected_to_the_survivor_is_followed(server, tmp_path):
    server.redirects = {"p1-old": "p1"}  # Epic answers a merged Patient's read with a redirect
    manifest = run(tmp_path / "out", listed(tmp_path, "p1-old"), profile="epic")
    assert pulled_ids(tmp_path / "out")["Patient"] == {"p1"}
    assert manifest["missingPatients"] == [] and manifest["population"]["merged"] == 1


def test_group_members_inactive_and_other_members_skipped(httpx_mock, tmp_path):
    members = [
        {"entity": {"reference": "Patient/p1"}},
        {"entity": {"reference": "Patient/p2"}, "inactive": True},
        {"entity": {"reference": "Practitioner/dr"}},
        {"entity": {"reference": f"Patient/{LONG_ID}"}},
    ]
    cohort_group = {"resourceType": "Group", "id": "hcc", "member": members}
    empty = {"resourceType": "Group", "id": "empty", "member": []}
    httpx_mock.add_callback(FakeFhirServer([*registry(), cohort_group, empty]), is_reusable=True)
    manifest = run(tmp_path / "out", group("hcc"), profile="epic")
    assert pulled_ids(tmp_path / "out")["Patient"] == {"p1", LONG_ID}
    assert manifest["population"] | {"patientIds": None} == {
        "kind": "group", "entries": 4, "group": "hcc", "badLines": [], "repeatedLines": [],
        "patients": 2, "patientIds": None, "unknownLines": [], "ambiguousLines": [],
        "skippedMembers": 2, "merged": 0,
    }  # fmt: skip
    with pytest.raises(IncompleteDataError, match="Group/empty lists no active Patient members"):
        run(tmp_path / "empty", group("empty"), profile="epic")


def test_an_expired_next_link_restarts_the_search_once(server, tmp_path):
    server.expire_next_links = 1
    manifest = run(tmp_path / "out")
    assert pulled_ids(tmp_path / "out") == EXPECTED
    assert [q for q in manifest["queries"] if q.get("restarted")]
    server.expire_next_links = 2  # the first page again, and its next link expires again
    with pytest.raises(IncompleteDataError, match="also after starting the search again"):
        run(tmp_path / "again", batch_size=50, page_size=1)


def test_totals_are_checked_only_where_the_profile_trusts_them(server, tmp_path, monkeypatch):
    original = server._search

    def overcount(resource_type, params):
        bundle = original(resource_type, params)
        bundle["total"] += 1  # Epic's totals are not to be relied on
        return bundle

    monkeypatch.setattr(server, "_search", overcount)
    run(tmp_path / "epic", listed(tmp_path, "p1", "p2"), profile="epic")
    with pytest.raises(IncompleteDataError, match=r"reported total \d+ but"):
        run(tmp_path / "generic", listed(tmp_path, "p1", "p2"), profile="generic")


def test_types_the_capability_statement_leaves_out_are_not_requested(server, tmp_path):
    listed_types = ["Patient", "Condition", "Procedure", "Observation", "MedicationAdministration"]
    server.capability |= {
        "rest": [{"mode": "server", "resource": [{"type": name} for name in listed_types]}]
    }
    manifest = run(tmp_path / "out")
    asked = {r.url.path.split("/")[2] for r in searches(server)}
    assert asked == set(listed_types)  # no Medication either: it is not listed
    assert set(manifest["skippedTypes"]) == {
        "MedicationStatement", "MedicationRequest", "Encounter", "DiagnosticReport", "Medication"
    }  # fmt: skip
    assert "1 referenced Medications not fetched" in " ".join(manifest["warnings"])


def test_incremental_searches_follow_the_profiles_prefix(server, tmp_path):
    since = "2026-01-01T00:00:00.000Z"
    population = listed(tmp_path, "p1")
    run(tmp_path / "out", population, profile="oracle-health", since=since, known_patients=("p1",))
    stamps = {r.url.params.get("_lastUpdated") for r in searches(server) if r.url.params}
    assert stamps == {f"ge{since}"}  # every search; the Patient is read
    with pytest.raises(ConfigError, match="server profile 'epic' has no _lastUpdated"):
        run(tmp_path / "epic", population, profile="epic", since=since, known_patients=("p1",))


def test_the_profile_caps_retry_after_and_sets_headers(server):
    async def main() -> tuple[float, dict[str, str]]:
        options = fast_options(max_retry_wait=1000.0, profile="oracle-health")
        async with FhirClient(BASE, options) as client:
            await apply_profile(client, EPIC)
            return client.options.max_retry_wait, client.extra_headers

    assert asyncio.run(main()) == (300.0, {})  # Oracle: a cap; the Epic header is Epic's


def test_manifest_lists_the_population_of_a_code_search(server, tmp_path):
    manifest = run(tmp_path / "out")
    assert manifest["population"] == {"kind": "codes"}
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["profile"]["name"] == (
        "generic"
    )


def site_profile(tmp_path: Path, text: str) -> str:
    path = tmp_path / "site.toml"
    path.write_text(f'name = "site"\nextends = "generic"\n{text}')
    return str(path)


def test_without_post_a_refused_list_goes_straight_to_one_patient_per_search(server, tmp_path):
    server.refuse_lists = True
    profile = site_profile(tmp_path, '[search.post]\nvalue = false\nsource = "our server"\n')
    manifest = run(tmp_path / "out", profile=profile)
    assert pulled_ids(tmp_path / "out") == EXPECTED
    assert not [r for r in server.seen if r.method == "POST"]
    assert set(manifest["strategies"].values()) == {"one-per-request"}


def test_a_search_the_profile_would_refuse_stops_the_pull_before_it_starts(server, tmp_path):
    rule = '[types.Condition]\nrequired = [["category"]]\nsource = "licensed per category"\n'
    with pytest.raises(ConfigError, match=r"a Condition search needs category \(licensed"):
        run(tmp_path / "out", listed(tmp_path, "p1"), profile=site_profile(tmp_path, rule))
    assert searches(server) == []


def test_capture_under_epic_still_sends_observation_codes(server, tmp_path):
    from fhir_hcc.capture import capture

    key = b"a-capture-key-of-32-bytes-length"
    options = fast_options(page_size=50, profile="epic")
    asyncio.run(capture(BASE, ["p1"], options, tmp_path / "out", key, environ={}))
    observations = [r for r in searches(server) if r.url.path.endswith("/Observation")]
    assert observations and all("code" in r.url.params for r in observations)
    generic = fast_options(page_size=50)
    server.seen.clear()
    asyncio.run(capture(BASE, ["p1"], generic, tmp_path / "all", key, environ={}))
    observations = [r for r in searches(server) if r.url.path.endswith("/Observation")]
    assert [r.url.params.get("code") for r in observations] == [None]  # every Observation
