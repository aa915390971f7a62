"""`fhir-hcc doctor` and `fhir-hcc pull` end to end against the in-memory server."""

from __future__ import annotations

import asyncio
import io
import re

import httpx
import pytest

from fhir_hcc.cli import main
from fhir_hcc.fhir.types import COHORT_TYPES
from fhir_hcc.server.auth import NoCredentials
from fhir_hcc.server.client import RequestStats
from fhir_hcc.server.doctor import diagnose, render
from fhir_hcc.server.progress import LineProgress, RichProgress
from server.conftest import fast_options
from server.fake_fhir import BASE, FakeFhirServer
from server.test_pull import SEARCH_CODES, registry

SEARCH_PARAMS = {
    "Patient": ["_id"],
    "Condition": ["code", "patient"],
    "Procedure": ["code", "patient"],
    "MedicationAdministration": ["patient"],
    "MedicationStatement": ["patient"],
    "MedicationRequest": ["patient"],
    "Observation": ["code"],  # no patient: the pull could not filter by patient
    "Encounter": ["patient"],
    "DiagnosticReport": ["patient"],
    "Medication": [],
}


@pytest.fixture
def server(httpx_mock) -> FakeFhirServer:
    fake = FakeFhirServer(registry())
    fake.capability |= {
        "software": {"name": "FakeFHIR", "version": "1.0"},
        "format": ["json"],
        "rest": [
            {
                "mode": "server",
                "resource": [
                    {"type": name, "searchParam": [{"name": p} for p in params]}
                    for name, params in SEARCH_PARAMS.items()
                ],
                "operation": [{"name": "export"}],
            }
        ],
    }
    httpx_mock.add_callback(fake, is_reusable=True)
    return fake


def test_doctor_report(server):
    report = asyncio.run(diagnose(BASE, SEARCH_CODES, fast_options(), NoCredentials()))
    text = render(report)
    assert "software      FakeFHIR 1.0" in text
    assert "bulk $export  yes (system level)" in text
    assert "SMART config  not advertised (HTTP 404)" in text
    assert "credentials   ok (none)" in text
    assert "paging        ok (next links)" in text
    assert "Observation               missing search parameters: patient" in text
    assert report.estimates["Condition with mapping codes"] == 4
    assert report.estimates["Procedure with mapping codes"] == 1
    assert report.estimates["Observation on the server"] == 4
    assert "candidate patients: at most 5" in text
    assert report.exit_code == 5
    assert [support.name for support in report.types] == list(COHORT_TYPES)


def test_doctor_exit_code_for_rejected_credentials(httpx_mock, capsys, monkeypatch):
    monkeypatch.setenv("FHIR_HCC_TOKEN", "wrong-token-value")
    httpx_mock.add_response(
        url=f"{BASE}/metadata", json={"resourceType": "CapabilityStatement", "fhirVersion": "4.0.1"}
    )
    httpx_mock.add_response(status_code=404, url=f"{BASE}/.well-known/smart-configuration")
    httpx_mock.add_response(status_code=401, url=f"{BASE}/Patient?_count=1")
    assert main(["doctor", BASE, "--auth", "bearer"]) == 4
    out = capsys.readouterr()
    assert "credentials   FAILED: GET Patient?_count=1: HTTP 401" in out.out
    assert "wrong-token-value" not in out.out + out.err


def test_cli_pull_writes_ndjson_and_a_manifest(server, tmp_path, capsys):
    out = tmp_path / "pulled"
    assert main(["pull", BASE, "--out", str(out), "--page-size", "2", "--batch-size", "2"]) == 0
    err = capsys.readouterr().err
    assert "pulled 21 resources for 5 candidate patients" in err
    assert "fhir-hcc: pull: patient data: 5 patients\n" in err
    assert re.search(
        r"^fhir-hcc: pull: patient data: 5/5 patients, \d+ requests, 24 resources$", err, re.M
    )
    assert (out / "manifest.json").is_file()
    assert sorted(p.stem for p in out.glob("*.ndjson")) == sorted(COHORT_TYPES)


def test_cli_pull_exit_codes(httpx_mock, tmp_path, capsys):
    httpx_mock.add_exception(httpx.ConnectError("refused"), is_reusable=True)
    assert main(["pull", BASE, "--out", str(tmp_path), "--retries", "0"]) == 3
    assert capsys.readouterr().err == (
        "fhir-hcc: error: GET metadata: connection failed (ConnectError) "
        "(gave up after 1 attempts)\n"
    )


def test_cli_pull_allowed_gap_still_exits_5(server, tmp_path, monkeypatch):
    original = server._search

    def undercount(resource_type, params):
        bundle = original(resource_type, params)
        if resource_type == "Encounter":
            bundle["total"] += 1  # one resource more than will ever arrive
        return bundle

    monkeypatch.setattr(server, "_search", undercount)
    assert main(["pull", BASE, "--out", str(tmp_path), "--allow-gaps"]) == 5
    manifest = (tmp_path / "manifest.json").read_text()
    assert '"complete": false' in manifest
    assert "reported total 2 but 1 resources arrived" in manifest


def test_line_progress_is_quiet_and_plain():
    stream = io.StringIO()
    progress = LineProgress(stream, interval=3600)
    progress.phase("patient data", 3, 10)
    stats = RequestStats(requests=5)
    for _ in range(3):
        progress.advance(4, stats)
    progress.phase("export in progress (40%)", 0)
    progress.phase("download", 1, unit="files")
    progress.advance(12, stats)
    assert stream.getvalue().splitlines() == [
        "fhir-hcc: pull: patient data: 3 searches for 10 patients",
        "fhir-hcc: pull: patient data: 3/3 searches, 5 requests, 12 resources",
        "fhir-hcc: pull: export in progress (40%)",
        "fhir-hcc: pull: download: 1 files",
        "fhir-hcc: pull: download: 1/1 files, 5 requests, 24 resources",
    ]


def test_rich_progress_draws_a_bar_per_phase():
    stream = io.StringIO()
    progress = RichProgress(stream)
    progress.phase("patient data", 2, 10)
    progress.advance(7, RequestStats(requests=3))
    progress.advance(5, RequestStats(requests=4))
    progress.close()
    final = stream.getvalue().splitlines()[-1]
    assert "patient data (10 patients)" in final
    assert "2/2" in final
    assert "4 requests, 12 resources" in final
