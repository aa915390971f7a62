"""Bulk Data `$export` protocol edges, with HTTP mocked by pytest-httpx."""

from __future__ import annotations

import asyncio
import gzip
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from fhir_hcc.cli import main
from fhir_hcc.errors import ConfigError
from fhir_hcc.server.bulk import (
    STATE,
    ExportRequest,
    run_export,
    type_filters,
)
from fhir_hcc.server.client import FhirClient
from fhir_hcc.server.errors import IncompleteDataError, ServerRefusedError
from fhir_hcc.server.options import AuthOptions
from fhir_hcc.server.output import export_staging
from fhir_hcc.server.profile import load_profile
from fhir_hcc.sources import FileSource
from server.conftest import SleepRecorder, fast_options
from server.fake_fhir import BASE, outcome

KICK_OFF = f"{BASE}/$export?_type=Patient%2CCondition"
STATUS = f"{BASE}/bulk-status/job1"
PATIENTS = [{"resourceType": "Patient", "id": f"p{n}"} for n in range(3)]
CONDITIONS = [
    {"resourceType": "Condition", "id": "c1", "subject": {"reference": "Patient/p1"}},
]
REQUEST = ExportRequest(types=("Patient", "Condition"))


def ndjson(resources: list[dict[str, Any]]) -> bytes:
    return b"".join(orjson.dumps(r) + b"\n" for r in resources)


def file_url(name: str) -> str:
    return f"{BASE}/bulk-files/job1/{name}"


def export_manifest(**extra: Any) -> dict[str, Any]:
    return {
        "transactionTime": "2026-01-02T03:04:05Z",
        "request": KICK_OFF,
        "requiresAccessToken": False,
        "output": [
            {"type": "Patient", "url": file_url("Patient.ndjson"), "count": 3},
            {"type": "Condition", "url": file_url("Condition.ndjson"), "count": 1},
        ],
        "error": [],
    } | extra


def add_kick_off(httpx_mock, status_url: str = STATUS) -> None:
    httpx_mock.add_response(
        method="GET", url=KICK_OFF, status_code=202, headers={"Content-Location": status_url}
    )


def add_files(httpx_mock) -> None:
    httpx_mock.add_response(url=file_url("Patient.ndjson"), content=ndjson(PATIENTS))
    httpx_mock.add_response(url=file_url("Condition.ndjson"), content=ndjson(CONDITIONS))


def add_done(httpx_mock, manifest: dict[str, Any] | None = None, *, deleted: bool = True) -> None:
    """The finished status; `deleted`: the export gets far enough to DELETE the job."""
    httpx_mock.add_response(method="GET", url=STATUS, json=manifest or export_manifest())
    if deleted:
        httpx_mock.add_response(method="DELETE", url=STATUS, status_code=202)


def export(
    out: Path, sleeps: SleepRecorder, request: ExportRequest = REQUEST, **options: Any
) -> dict[str, Any]:
    async def main() -> dict[str, Any]:
        async with FhirClient(BASE, fast_options(**options), sleep=sleeps) as client:
            return await run_export(client, request, out, sleep=sleeps)

    return asyncio.run(main())


def read_back(out: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """What the cohort stage would read from the folder."""
    problems: list[Any] = []
    resources = {}
    for item, _origin in FileSource(out).read(problems.append):
        resource = orjson.loads(item)
        resources[resource["resourceType"], resource["id"]] = resource
    assert [p for p in problems if not p.warning] == []  # the manifest is only noted
    return resources


def test_202_loop_honours_retry_after_and_ends_with_delete(httpx_mock, tmp_path):
    add_kick_off(httpx_mock)
    for progress in ("10%", "60%"):
        httpx_mock.add_response(
            method="GET",
            url=STATUS,
            status_code=202,
            headers={"X-Progress": progress, "Retry-After": "7"},
        )
    add_done(httpx_mock)
    add_files(httpx_mock)
    sleeps = SleepRecorder()
    manifest = export(tmp_path / "out", sleeps)
    assert sleeps.delays == [7.0, 7.0]
    assert manifest["counts"] == {"Condition": 1, "Patient": 3}
    assert manifest["transactionTime"] == "2026-01-02T03:04:05Z"
    assert manifest["complete"] and not manifest["resumed"]
    assert set(read_back(tmp_path / "out")) == {("Patient", f"p{n}") for n in range(3)} | {
        ("Condition", "c1")
    }
    kick_off = httpx_mock.get_requests(url=KICK_OFF)[0]
    assert "respond-async" in kick_off.headers["Prefer"]
    assert httpx_mock.get_requests(method="DELETE", url=STATUS)
    assert not export_staging(tmp_path / "out").exists()


def test_retry_after_is_capped_and_missing_retry_after_backs_off(httpx_mock, tmp_path):
    add_kick_off(httpx_mock)
    httpx_mock.add_response(url=STATUS, status_code=202, headers={"Retry-After": "3600"})
    httpx_mock.add_response(url=STATUS, status_code=202)
    httpx_mock.add_response(url=STATUS, status_code=202)
    add_done(httpx_mock)
    add_files(httpx_mock)
    sleeps = SleepRecorder()
    export(tmp_path / "out", sleeps, max_retry_wait=30.0)
    assert sleeps.delays == [30.0, 30.0, 30.0]  # the cap; then doubling, held at the cap


def test_export_timeout_stops_polling_and_the_next_run_polls_the_same_job(httpx_mock, tmp_path):
    add_kick_off(httpx_mock)
    for _ in range(3):
        httpx_mock.add_response(url=STATUS, status_code=202, headers={"Retry-After": "40"})
    sleeps = SleepRecorder()
    with pytest.raises(IncompleteDataError, match=r"not ready after 80 s .*polls the same job"):
        export(tmp_path / "out", sleeps, export_timeout=100.0)
    assert sleeps.delays == [40.0, 40.0]  # a third wait would pass the timeout
    assert orjson.loads((export_staging(tmp_path / "out") / STATE).read_bytes())["status_url"] == (
        STATUS
    )

    add_done(httpx_mock)
    add_files(httpx_mock)
    manifest = export(tmp_path / "out", SleepRecorder(), export_timeout=100.0)
    assert manifest["resumed"] and manifest["counts"] == {"Condition": 1, "Patient": 3}
    assert len(httpx_mock.get_requests(url=KICK_OFF)) == 1


def test_429_while_polling_is_retried_after_the_servers_wait(httpx_mock, tmp_path):
    add_kick_off(httpx_mock)
    httpx_mock.add_response(url=STATUS, status_code=429, headers={"Retry-After": "4"})
    add_done(httpx_mock)
    add_files(httpx_mock)
    sleeps = SleepRecorder()
    manifest = export(tmp_path / "out", sleeps)
    assert sleeps.delays == [4.0]
    assert manifest["requests"]["throttled"] == 1


def test_kick_off_refused_names_the_request(httpx_mock, tmp_path):
    httpx_mock.add_response(
        url=KICK_OFF, status_code=400, json=outcome("not-supported", "_typeFilter unsupported")
    )
    with pytest.raises(ServerRefusedError, match=r"\$export.*HTTP 400.*_typeFilter unsupported"):
        export(tmp_path / "out", SleepRecorder())


def test_kick_off_without_status_url_is_incomplete(httpx_mock, tmp_path):
    httpx_mock.add_response(url=KICK_OFF, status_code=202)
    with pytest.raises(IncompleteDataError, match="without a Content-Location"):
        export(tmp_path / "out", SleepRecorder())


def test_interrupted_export_resumes_its_status_url(httpx_mock, tmp_path):
    out = tmp_path / "out"
    add_kick_off(httpx_mock)
    httpx_mock.add_response(url=STATUS, status_code=500)
    httpx_mock.add_response(url=STATUS, status_code=500)
    with pytest.raises(Exception, match="HTTP 500"):
        export(out, SleepRecorder(), max_retries=1)
    state = orjson.loads((export_staging(out) / STATE).read_bytes())
    assert state["status_url"] == STATUS
    add_done(httpx_mock)  # the second run polls the saved job: no second kick-off
    add_files(httpx_mock)
    manifest = export(out, SleepRecorder())
    assert manifest["resumed"]
    assert len(httpx_mock.get_requests(url=KICK_OFF)) == 1


def test_expired_status_url_starts_a_new_export(httpx_mock, tmp_path):
    out = tmp_path / "out"
    add_kick_off(httpx_mock, f"{BASE}/bulk-status/old")
    httpx_mock.add_response(url=f"{BASE}/bulk-status/old", status_code=503)
    with pytest.raises(Exception, match="HTTP 503"):
        export(out, SleepRecorder(), max_retries=0)
    httpx_mock.add_response(url=f"{BASE}/bulk-status/old", status_code=410)
    add_kick_off(httpx_mock)
    add_done(httpx_mock)
    add_files(httpx_mock)
    manifest = export(out, SleepRecorder())
    assert not manifest["resumed"]
    assert manifest["counts"] == {"Condition": 1, "Patient": 3}


def test_unknown_status_url_on_a_fresh_export_is_an_error(httpx_mock, tmp_path):
    add_kick_off(httpx_mock)
    httpx_mock.add_response(url=STATUS, status_code=404, json=outcome("not-found", "no job"))
    with pytest.raises(ServerRefusedError, match=r"export status .*HTTP 404"):
        export(tmp_path / "out", SleepRecorder())


def test_finished_downloads_are_kept_when_resuming(httpx_mock, tmp_path):
    out = tmp_path / "out"
    add_kick_off(httpx_mock)
    add_done(httpx_mock)
    httpx_mock.add_response(url=file_url("Patient.ndjson"), content=ndjson(PATIENTS))
    httpx_mock.add_response(url=file_url("Condition.ndjson"), status_code=503)
    with pytest.raises(Exception, match="HTTP 503"):
        export(out, SleepRecorder(), max_retries=0)
    # Only the missing file is fetched again; the status URL is not even polled.
    httpx_mock.add_response(url=file_url("Condition.ndjson"), content=ndjson(CONDITIONS))
    manifest = export(out, SleepRecorder())
    assert manifest["resumed"]
    assert manifest["counts"] == {"Condition": 1, "Patient": 3}
    assert len(httpx_mock.get_requests(url=file_url("Patient.ndjson"))) == 1


class _CutStream(httpx.AsyncByteStream):
    """Some bytes, then the connection drops."""

    def __init__(self, head: bytes) -> None:
        self.head = head

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self.head
        raise httpx.ReadError("connection reset")


def test_download_cut_short_is_retried_from_the_start(httpx_mock, tmp_path):
    add_kick_off(httpx_mock)
    add_done(httpx_mock)
    body = ndjson(PATIENTS)
    httpx_mock.add_callback(
        lambda request: httpx.Response(200, stream=_CutStream(body[:20])),
        url=file_url("Patient.ndjson"),
    )
    httpx_mock.add_response(url=file_url("Patient.ndjson"), content=body)
    httpx_mock.add_response(url=file_url("Condition.ndjson"), content=ndjson(CONDITIONS))
    sleeps = SleepRecorder()
    manifest = export(tmp_path / "out", sleeps)
    assert len(sleeps.delays) == 1
    assert manifest["counts"]["Patient"] == 3
    assert (tmp_path / "out" / "Patient.1.ndjson").read_bytes() == body


def test_line_count_short_of_the_manifest_fails(httpx_mock, tmp_path):
    add_kick_off(httpx_mock)
    add_done(httpx_mock, deleted=False)
    httpx_mock.add_response(url=file_url("Patient.ndjson"), content=ndjson(PATIENTS[:2]))
    httpx_mock.add_response(url=file_url("Condition.ndjson"), content=ndjson(CONDITIONS))
    with pytest.raises(
        IncompleteDataError, match=r"Patient\.ndjson: 2 lines, but the manifest says 3"
    ):
        export(tmp_path / "out", SleepRecorder())
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_gzip_files_are_stored_compressed_and_read_back(httpx_mock, tmp_path):
    add_kick_off(httpx_mock)
    add_done(httpx_mock)
    httpx_mock.add_response(
        url=file_url("Patient.ndjson"),
        content=gzip.compress(ndjson(PATIENTS)),
        headers={"Content-Encoding": "gzip"},
    )
    httpx_mock.add_response(url=file_url("Condition.ndjson"), content=ndjson(CONDITIONS))
    manifest = export(tmp_path / "out", SleepRecorder())
    assert manifest["files"]["Patient.1"] == "Patient.1.ndjson.gz"
    assert ("Patient", "p2") in read_back(tmp_path / "out")
    request = httpx_mock.get_requests(url=file_url("Patient.ndjson"))[0]
    assert request.headers["Accept-Encoding"] == "gzip"


def test_truncated_gzip_file_is_incomplete(httpx_mock, tmp_path):
    add_kick_off(httpx_mock)
    add_done(httpx_mock, deleted=False)
    packed = gzip.compress(ndjson(PATIENTS))
    httpx_mock.add_response(
        url=file_url("Patient.ndjson"),
        content=packed[: len(packed) // 2],
        headers={"Content-Encoding": "gzip"},
    )
    httpx_mock.add_response(url=file_url("Condition.ndjson"), content=ndjson(CONDITIONS))
    with pytest.raises(IncompleteDataError, match="gzip stream ends early"):
        export(tmp_path / "out", SleepRecorder())


def test_error_and_deleted_files_are_reported(httpx_mock, tmp_path):
    add_kick_off(httpx_mock)
    deleted = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"request": {"method": "DELETE", "url": "Condition/c9"}}],
    }
    manifest = export_manifest(
        error=[{"type": "OperationOutcome", "url": file_url("err.ndjson")}],
        deleted=[{"type": "Bundle", "url": file_url("del.ndjson")}],
    )
    add_done(httpx_mock, manifest)
    add_files(httpx_mock)
    httpx_mock.add_response(
        url=file_url("err.ndjson"), content=ndjson([outcome("processing", "Observation/o7")])
    )
    httpx_mock.add_response(url=file_url("del.ndjson"), content=ndjson([deleted]))
    written = export(tmp_path / "out", SleepRecorder())
    assert written["deleted"] == ["Condition/c9"]
    assert written["errors"] == ["error processing: Observation/o7"]
    assert not written["complete"]
    # Neither file is left where the cohort stage would read it as data.
    assert set(read_back(tmp_path / "out")) == {("Patient", f"p{n}") for n in range(3)} | {
        ("Condition", "c1")
    }


def test_group_level_request_and_type_filter():
    request = ExportRequest(
        type_filters=type_filters({"Observation": [("http://loinc.org", "1834-1")]}),
        since="2026-01-01T00:00:00Z",
        group="g1",
    )
    url = httpx.URL(f"{BASE}/{request.path}", params=request.params())
    assert request.path == "Group/g1/$export"
    # The comma list inside _typeFilter is encoded once more, as the Bulk Data spec asks.
    assert ("_typeFilter", "Observation?code=http%3A%2F%2Floinc.org%7C1834-1") in request.params()
    assert url.params["_since"] == "2026-01-01T00:00:00Z"
    assert ExportRequest(patient_level=True).path == "Patient/$export"


def test_cli_since_without_bulk_is_a_clear_error(capsys):
    assert main(["pull", BASE, "--out", "x", "--since", "2026-01-01"]) == 2
    assert "--since and --patient-level need --bulk" in capsys.readouterr().err


def test_cli_bulk_pull_exports_the_group(httpx_mock, tmp_path, capsys):
    group_kick_off = f"{BASE}/Group/g1/$export"  # POSTed: the mapping codes make a long query
    httpx_mock.add_response(url=f"{BASE}/metadata", json={"resourceType": "CapabilityStatement"})
    httpx_mock.add_response(
        method="POST", url=group_kick_off, status_code=202, headers={"Content-Location": STATUS}
    )
    add_done(httpx_mock)
    add_files(httpx_mock)
    out = tmp_path / "out"
    assert main(["pull", BASE, "--bulk", "--group", "g1", "--out", str(out)]) == 0
    assert "exported 4 resources" in capsys.readouterr().err
    assert orjson.loads((out / "manifest.json").read_bytes())["request"]["group"] == "g1"
    body = orjson.loads(httpx_mock.get_requests(method="POST")[0].content)
    (type_filter,) = [p["valueString"] for p in body["parameter"] if p["name"] == "_typeFilter"]
    assert type_filter.startswith("Observation?code=") and "loinc.org%7C1834-1" in type_filter


LONG_REQUEST = ExportRequest(
    types=("Patient", "Condition"),
    type_filters=(
        "Observation?code=" + "%2C".join(f"http%3A%2F%2Floinc.org%7C{n}" for n in range(90)),
    ),
    since="2026-01-01T00:00:00Z",
)


def test_long_kick_off_is_posted_as_parameters(httpx_mock, tmp_path):
    httpx_mock.add_response(
        method="POST", url=f"{BASE}/$export", status_code=202, headers={"Content-Location": STATUS}
    )
    add_done(httpx_mock)
    add_files(httpx_mock)
    manifest = export(tmp_path / "out", SleepRecorder(), LONG_REQUEST)
    assert manifest["counts"] == {"Condition": 1, "Patient": 3}
    assert manifest["kickOff"] == "POST"
    (post,) = httpx_mock.get_requests(method="POST")
    assert post.headers["Content-Type"] == "application/fhir+json"
    assert "respond-async" in post.headers["Prefer"]
    assert orjson.loads(post.content) == {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "_type", "valueString": "Patient,Condition"},
            {"name": "_typeFilter", "valueString": LONG_REQUEST.type_filters[0]},
            {"name": "_since", "valueInstant": "2026-01-01T00:00:00Z"},
        ],
    }


@pytest.mark.parametrize("refusal", [400, 405, 415, 501])
def test_server_without_post_kick_off_gets_the_long_get(httpx_mock, tmp_path, refusal):
    httpx_mock.add_response(method="POST", url=f"{BASE}/$export", status_code=refusal)
    httpx_mock.add_response(
        method="GET",
        url=re.compile(re.escape(f"{BASE}/$export?_type=") + ".*_since=.*"),
        status_code=202,
        headers={"Content-Location": STATUS},
    )
    add_done(httpx_mock)
    add_files(httpx_mock)
    manifest = export(tmp_path / "out", SleepRecorder(), LONG_REQUEST)
    assert manifest["counts"] == {"Condition": 1, "Patient": 3}
    assert manifest["kickOff"] == "GET"
    assert [r.method for r in httpx_mock.get_requests(url=re.compile(r".*/\$export.*"))] == [
        "POST",
        "GET",
    ]


def test_since_must_be_an_instant(capsys):
    with pytest.raises(ConfigError, match="not a FHIR instant with a time zone"):
        ExportRequest(since="2026-01-01")
    assert ExportRequest(since="2026-01-01T00:00:00.123+08:00").since
    assert main(["pull", BASE, "--bulk", "--out", "x", "--since", "2026-01-01T00:00"]) == 2
    assert "not a FHIR instant" in capsys.readouterr().err


def test_kick_off_too_long_for_both_post_and_get_drops_the_type_filter(httpx_mock, tmp_path):
    httpx_mock.add_response(method="POST", url=f"{BASE}/$export", status_code=405)
    httpx_mock.add_response(
        method="GET", url=re.compile(r".*/\$export\?.*_typeFilter=.*"), status_code=414
    )
    httpx_mock.add_response(
        method="GET",
        url=re.compile(r".*/\$export\?_type=[^&]*&_since=[^&]*$"),
        status_code=202,
        headers={"Content-Location": STATUS},
    )
    add_done(httpx_mock)
    add_files(httpx_mock)
    manifest = export(tmp_path / "out", SleepRecorder(), LONG_REQUEST)
    assert manifest["kickOff"] == "GET without _typeFilter (HTTP 414 with it)"
    assert manifest["counts"] == {"Condition": 1, "Patient": 3}


# -- server profiles' bulk rules -----------------------------------------------------------
def export_under(out: Path, profile: str, request: ExportRequest = REQUEST, **options: Any):
    async def main() -> dict[str, Any]:
        sleeps = SleepRecorder()
        async with FhirClient(BASE, fast_options(**options), sleep=sleeps) as client:
            return await run_export(
                client, request, out, profile=load_profile(profile), sleep=sleeps
            )

    return asyncio.run(main())


def test_a_redirected_download_goes_on_without_authorization(httpx_mock, tmp_path):
    add_kick_off(httpx_mock)
    add_done(httpx_mock)
    signed = "https://bucket.example.net/export/Patient.ndjson?X-Amz-Signature=abc"
    httpx_mock.add_response(
        url=file_url("Patient.ndjson"), status_code=307, headers={"Location": signed}
    )
    httpx_mock.add_response(url=signed, content=ndjson(PATIENTS))
    httpx_mock.add_response(url=file_url("Condition.ndjson"), content=ndjson(CONDITIONS))
    environ = {"FHIR_HCC_TOKEN": "secret-token"}
    options = fast_options(auth=AuthOptions(mode="bearer"))

    async def main() -> dict[str, Any]:
        async with FhirClient(BASE, options, environ=environ, sleep=SleepRecorder()) as client:
            return await run_export(client, REQUEST, tmp_path / "out")

    assert asyncio.run(main())["counts"] == {"Condition": 1, "Patient": 3}
    first = httpx_mock.get_requests(url=file_url("Patient.ndjson"))[0]
    assert first.headers["Authorization"] == "Bearer secret-token"
    assert "Authorization" not in httpx_mock.get_requests(url=signed)[0].headers


def test_epic_exports_only_groups(tmp_path):
    with pytest.raises(ConfigError, match=r"'epic' exports only at Group level .*give --group"):
        export_under(tmp_path / "out", "epic")


def test_oracle_leaves_administrations_out_and_they_are_searched_per_patient(httpx_mock, tmp_path):
    request = ExportRequest(types=("Patient", "Condition", "MedicationAdministration"), group="g1")
    httpx_mock.add_response(  # no MedicationAdministration in `_type`
        method="GET",
        url=f"{BASE}/Group/g1/$export?_type=Patient%2CCondition",
        status_code=202,
        headers={"Content-Location": STATUS},
    )
    add_done(httpx_mock)
    add_files(httpx_mock)
    given = {
        "resourceType": "MedicationAdministration",
        "id": "ma1",
        "status": "completed",
        "subject": {"reference": "Patient/p1"},
        "contained": [{"resourceType": "Medication", "id": "med"}],
        "medicationReference": {"reference": "#med"},  # Oracle: contained, never fetched
    }

    def administrations(request: httpx.Request) -> httpx.Response:
        found = [given] if request.url.params["patient"] == "p1" else []
        entries = [{"resource": r, "search": {"mode": "match"}} for r in found]
        return httpx.Response(200, json={"resourceType": "Bundle", "entry": entries})

    searched = re.compile(rf"{re.escape(BASE)}/MedicationAdministration\?.*")
    httpx_mock.add_callback(administrations, url=searched, is_reusable=True)
    manifest = export_under(tmp_path / "out", "oracle-health", request)
    assert manifest["request"]["types"] == ["Patient", "Condition"]
    assert manifest["searched"] == ["MedicationAdministration"]
    assert manifest["counts"] == {"Condition": 1, "MedicationAdministration": 1, "Patient": 3}
    asked = [r.url.params for r in httpx_mock.get_requests(url=searched)]
    assert sorted(params["patient"] for params in asked) == ["p0", "p1", "p2"]
    assert {params["_count"] for params in asked} == {"200"}
    assert ("MedicationAdministration", "ma1") in read_back(tmp_path / "out")
