"""Pulling from a real FHIR server (SEKMET on 127.0.0.1), directly and through a fault proxy."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import orjson
import pandas as pd
import pytest

from fhir_hcc.errors import ExitCode, FhirHccError
from fhir_hcc.fhir.types import PATIENT_TYPES
from fhir_hcc.mappings import load_mappings
from fhir_hcc.server import ClientOptions, IncompleteDataError, ServerSource, pull
from fhir_hcc.server.auth import NoCredentials
from fhir_hcc.server.doctor import diagnose, render
from fhir_hcc.server.errors import ServerUnreachableError
from integration.fault_proxy import FaultProxy

pytestmark = pytest.mark.integration

SEARCH_CODES = load_mappings().search_codes()
SERVER_META = ("versionId", "lastUpdated", "source")
PATIENT_REFERENCE = re.compile(r"^Patient/(.+)$")


def options(**changes: Any) -> ClientOptions:
    return ClientOptions(**{"page_size": 100, "batch_size": 20, **changes})


def run_pull(base_url: str, out: Path, **changes: Any) -> dict[str, Any]:
    return asyncio.run(pull(base_url, SEARCH_CODES, options(**changes), out, environ={}))


def read_pulled(out: Path) -> dict[tuple[str, str], dict[str, Any]]:
    pulled = {}
    for path in out.glob("*.ndjson"):
        for line in path.read_bytes().splitlines():
            resource = orjson.loads(line)
            key = (resource["resourceType"], resource["id"])
            assert key not in pulled, f"{key} written twice"
            pulled[key] = resource
    return pulled


def without_server_meta(resource: dict[str, Any]) -> dict[str, Any]:
    meta = {k: v for k, v in resource.get("meta", {}).items() if k not in SERVER_META}
    return {k: v for k, v in resource.items() if k != "meta"} | ({"meta": meta} if meta else {})


def expected_pull(loaded: dict[tuple[str, str], dict[str, Any]]) -> set[tuple[str, str]]:
    """What the pull plan must return, worked out directly from the loaded resources."""
    codes = {kind: set(pairs) for kind, pairs in SEARCH_CODES.items()}

    def coded(resource: dict[str, Any], kind: str) -> bool:
        codings = (resource.get("code") or {}).get("coding", [])
        return any((c.get("system"), c.get("code")) in codes.get(kind, ()) for c in codings)

    def patient(resource: dict[str, Any]) -> str | None:
        match = PATIENT_REFERENCE.match((resource.get("subject") or {}).get("reference", ""))
        return match.group(1) if match else None

    candidates = {
        patient(r)
        for (kind, _), r in loaded.items()
        if kind in ("Condition", "Procedure") and coded(r, kind)
    }
    keys = {key for key in loaded if key[0] == "Patient" and key[1] in candidates}
    all_of_a_patient = set(PATIENT_TYPES) - {"Observation"}
    for key, resource in loaded.items():
        wanted = key[0] in all_of_a_patient or (
            key[0] == "Observation" and coded(resource, "Observation")
        )
        if wanted and patient(resource) in candidates:
            keys.add(key)
    for key in list(keys):
        if key[0] in ("MedicationAdministration", "MedicationStatement", "MedicationRequest"):
            reference = (loaded[key].get("medicationReference") or {}).get("reference", "")
            if reference.startswith("Medication/"):
                keys.add(("Medication", reference.split("/", 1)[1]))
    return keys


def test_pull_returns_exactly_what_the_plan_selects(fhir_server, tmp_path):
    manifest = run_pull(fhir_server.base_url, tmp_path)
    pulled = read_pulled(tmp_path)
    expected = expected_pull(fhir_server.resources)
    assert set(pulled) == expected
    for key in expected:
        assert without_server_meta(pulled[key]) == fhir_server.resources[key], key
    assert manifest["complete"] and manifest["gaps"] == []
    assert manifest["server"]["fhirVersion"] == "4.0.1"
    assert sum(manifest["counts"].values()) == len(expected)
    assert manifest["strategies"] == {}  # SEKMET takes id lists


def test_cohort_from_server_equals_cohort_from_files(fhir_server):
    build_cohort = pytest.importorskip("fhir_hcc").build_cohort
    from_files = build_cohort(fhir_server.data_dir).table
    source = ServerSource(fhir_server.base_url, SEARCH_CODES, options())
    from_server = build_cohort(source).table
    assert len(from_files) > 0
    pd.testing.assert_frame_equal(
        from_server.sort_values("patient_id").reset_index(drop=True),
        from_files.sort_values("patient_id").reset_index(drop=True),
    )


@pytest.mark.parametrize("seed", [1, 2])
def test_faults_give_the_identical_pull_or_a_loud_failure(fhir_server, tmp_path, seed):
    run_pull(fhir_server.base_url, tmp_path / "direct")
    direct = read_pulled(tmp_path / "direct")
    proxy = FaultProxy(fhir_server.origin, tmp_path, seed=seed, fault_rate=0.3, max_faults=60)
    with proxy:
        proxied_base = fhir_server.base_url.replace(fhir_server.origin, proxy.origin)
        try:
            manifest = run_pull(
                proxied_base,
                tmp_path / "proxied",
                max_retries=8,
                backoff_base=0.02,
                max_retry_wait=0.05,
                read_timeout=0.3,
            )
        except FhirHccError as failure:  # loud is acceptable; smaller is not
            assert not list((tmp_path / "proxied").glob("*.ndjson")), failure
            return
    assert sum(proxy.injected.values()) >= 10, proxy.injected
    assert read_pulled(tmp_path / "proxied") == direct
    assert manifest["requests"]["retries"] >= sum(proxy.injected.values()) - proxy.injected["slow"]


def test_a_silently_truncated_search_fails_loudly(fhir_server, tmp_path):
    out = tmp_path / "out"
    with FaultProxy(
        fhir_server.origin, tmp_path, drop_next_link="MedicationAdministration"
    ) as proxy:
        proxied_base = fhir_server.base_url.replace(fhir_server.origin, proxy.origin)
        with pytest.raises(IncompleteDataError, match=r"reported total \d+ but \d+ resources"):
            run_pull(proxied_base, out, page_size=10)
    assert list(out.iterdir()) == []


def test_a_server_that_keeps_failing_gives_exit_code_3(fhir_server, tmp_path):
    with FaultProxy(fhir_server.origin, tmp_path, fault_rate=1.0, max_faults=1000) as proxy:
        proxied_base = fhir_server.base_url.replace(fhir_server.origin, proxy.origin)
        with pytest.raises(ServerUnreachableError) as caught:
            run_pull(proxied_base, tmp_path, max_retries=2, backoff_base=0.01, max_retry_wait=0.01)
    assert caught.value.exit_code == ExitCode.SERVER_UNREACHABLE


def test_doctor_reports_a_usable_server(fhir_server):
    report = asyncio.run(diagnose(fhir_server.base_url, SEARCH_CODES, options(), NoCredentials()))
    text = render(report)
    assert report.exit_code == 0, text
    assert "FHIR version  4.0.1" in text
    assert "bulk $export  yes" in text
    condition_count = report.estimates["Condition with mapping codes"]
    loaded_patients = sum(1 for kind, _ in fhir_server.resources if kind == "Patient")
    assert report.estimates["Patient on the server"] == loaded_patients
    assert condition_count is not None and condition_count > 0


def test_cli_cohort_from_a_url_equals_the_cohort_from_files(fhir_server, tmp_path):
    from fhir_hcc.cli import main

    assert main(["cohort", fhir_server.base_url, "--out", str(tmp_path / "server.csv")]) == 0
    assert main(["cohort", str(fhir_server.data_dir), "--out", str(tmp_path / "files.csv")]) == 0
    from_server = pd.read_csv(tmp_path / "server.csv")
    assert len(from_server) > 0
    pd.testing.assert_frame_equal(from_server, pd.read_csv(tmp_path / "files.csv"))
