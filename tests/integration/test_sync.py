"""Bulk export and registry syncs against a real SEKMET server.

The bulk-versus-search comparison reads the session server. The sync scenarios change data, so
they run against a server of their own, started for this module.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from fhir_server import ROOT, SekmetServer, load_bundles, post_transaction

from fhir_hcc import build_cohort
from fhir_hcc.errors import ExitCode
from fhir_hcc.mappings import load_mappings
from fhir_hcc.registry import Registry, RegistryError, SyncSettings, sync
from fhir_hcc.registry.lock import lock_path
from fhir_hcc.registry.sync import work_folder
from fhir_hcc.server import ClientOptions, pull
from fhir_hcc.server.bulk import ExportRequest, bulk_export, type_filters
from fhir_hcc.server.caselist import read_patients
from fhir_hcc.server.output import export_staging
from integration.ehr_emulator import EhrEmulator

pytestmark = pytest.mark.integration

FIXTURES = ROOT / "fixtures" / "salvage2004"
FHIR_HCC = [str(Path(sys.executable).with_name("fhir-hcc"))]
OPTIONS = ClientOptions(page_size=200, batch_size=20)


@pytest.fixture(scope="module")
def own_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with SekmetServer(tmp_path_factory.mktemp("sekmet-sync")) as server:
        load_bundles(server.base_url, FIXTURES)
        yield server.base_url


def sync_once(base_url: str, registry: Path, mode: str = "auto") -> dict[str, Any]:
    settings = SyncSettings(base_url, registry, mode=mode, type_filter=False)
    return sync(settings, OPTIONS, environ={})


def totals(record: dict[str, Any]) -> dict[str, int]:
    summed: dict[str, int] = {}
    for counts in record["counts"].values():
        for name, value in counts.items():
            summed[name] = summed.get(name, 0) + value
    return summed


def start_sync(base_url: str, registry: Path) -> subprocess.Popen[str]:
    command = [*FHIR_HCC, "sync", base_url, "--registry", str(registry), "--no-type-filter"]
    return subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT
    )


def wait_for(condition: Callable[[], bool], process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 30
    while not condition():
        assert process.poll() is None, f"sync ended first: {process.communicate()[1][-500:]}"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def state_of(registry: Path) -> tuple[str, list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Integrity, current resources and run statuses, read with plain sqlite3."""
    with sqlite3.connect(registry) as db:
        (integrity,) = db.execute("PRAGMA integrity_check").fetchone()
        resources = db.execute("SELECT type, id, hash FROM resources ORDER BY 1, 2").fetchall()
        runs = db.execute("SELECT id, status FROM runs ORDER BY id").fetchall()
    return integrity, resources, runs


# -- bulk pull ---------------------------------------------------------------------------------
def test_bulk_pull_gives_the_same_cohort_as_a_search_pull(fhir_server, tmp_path):
    search_codes = load_mappings().search_codes()
    request = ExportRequest(type_filters=type_filters(search_codes))
    manifest = asyncio.run(
        bulk_export(fhir_server.base_url, request, OPTIONS, tmp_path / "bulk", environ={})
    )
    asyncio.run(pull(fhir_server.base_url, search_codes, OPTIONS, tmp_path / "search", environ={}))
    # The type filter kept only mapped Observations, fewer than the server holds.
    loaded_observations = sum(1 for kind, _ in fhir_server.resources if kind == "Observation")
    assert 0 < manifest["counts"]["Observation"] < loaded_observations
    assert manifest["complete"] and manifest["deleted"] == []
    assert manifest["kickOff"] == "POST"  # the mapping codes make the query too long for a URL
    from_bulk = build_cohort(tmp_path / "bulk").table
    from_search = build_cohort(tmp_path / "search").table
    assert len(from_bulk) == 49
    assert from_bulk.equals(from_search)
    assert not export_staging(tmp_path / "bulk").exists()


# -- syncs -------------------------------------------------------------------------------------
def change_the_server(base_url: str) -> dict[str, Any]:
    """A new cohort patient (a copy of P01 as X01), a recurrence for P01, one Encounter deleted."""
    with httpx.Client() as http:
        copy = (FIXTURES / "P01.json").read_text().replace("P01", "X01")
        post_transaction(base_url, json.loads(copy), http)
        recurrence = next(
            entry["resource"]
            for entry in json.loads((FIXTURES / "P02.json").read_bytes())["entry"]
            if entry["resource"]["id"] == "P02-cancer-recurrence"
        )
        recurrence = recurrence | {
            "id": "P01-cancer-recurrence",
            "subject": {"reference": "Patient/P01"},
            "onsetDateTime": "2002-03-01",
            "recordedDate": "2002-03-01",
        }
        del recurrence["encounter"]
        response = http.put(
            f"{base_url}/Condition/P01-cancer-recurrence",
            content=json.dumps(recurrence),
            headers={"Content-Type": "application/fhir+json"},
        )
        assert response.status_code == 201, response.text
        bundle = http.get(f"{base_url}/Encounter", params={"patient": "N01"}).json()
        encounter = bundle["entry"][0]["resource"]["id"]
        assert http.delete(f"{base_url}/Encounter/{encounter}").status_code in (200, 204)
    return {"copied": len(json.loads(copy)["entry"]), "deleted": encounter}


def test_next_sync_picks_up_exactly_what_changed(own_server, tmp_path):
    registry = tmp_path / "registry.sqlite"
    first = sync_once(own_server, registry)
    assert (first["status"], first["mode"]) == ("ok", "full")
    assert totals(first)["new"] > 3000

    change = change_the_server(own_server)
    second = sync_once(own_server, registry)
    changes = totals(second)
    assert (changes["new"], changes["changed"], changes["deleted"]) == (change["copied"] + 1, 0, 1)
    assert second["counts"]["Encounter"]["deleted"] == 1
    assert second["counts"]["Patient"]["new"] == 1

    with Registry(registry) as opened:
        deleted = opened.db.execute(
            "SELECT type, id, deleted_by FROM history WHERE deleted_by IS NOT NULL"
        ).fetchall()
        assert deleted == [("Encounter", change["deleted"], second["id"])]
        from fhir_hcc.registry import diff_runs

        diff = diff_runs(opened, first["id"], second["id"])
        assert (diff.entered, diff.left, list(diff.changed)) == (["X01"], [], ["P01"])
        assert diff.changed["P01"]["recurrence"] == ("no", "yes")
        assert diff.changed["P01"]["recurrence_date"] == (None, "2002-03-01")
        versions = opened.versions()

    third = sync_once(own_server, registry)
    assert totals(third)["new"] == totals(third)["changed"] == totals(third)["deleted"] == 0
    with Registry(registry) as opened:
        assert opened.versions() == versions
        assert opened.cohort(third["id"]) == opened.cohort(second["id"])

    # Incremental: only what changed since the last run's transaction time is exported.
    with httpx.Client() as http:
        patient = http.get(f"{own_server}/Patient/N02").json()
        patient["gender"] = "other" if patient.get("gender") != "other" else "unknown"
        put = http.put(
            f"{own_server}/Patient/N02",
            content=json.dumps(patient),
            headers={"Content-Type": "application/fhir+json"},
        )
        assert put.status_code == 200
    fourth = sync_once(own_server, registry, mode="incremental")
    assert fourth["mode"] == "incremental" and fourth["since"] == third["transaction_time"]
    assert fourth["counts"] == {
        "Patient": {
            "received": 1,
            "new": 0,
            "changed": 1,
            "unchanged": 0,
            "deleted": 0,
            "skipped": 0,
        }
    }


def test_incremental_sync_back_fills_a_patient_new_to_the_registry(own_server, tmp_path):
    registry = tmp_path / "registry.sqlite"
    first = sync_once(own_server, registry)
    with sqlite3.connect(registry) as db:  # as if P05 had never been exported (a new Group member)
        dropped = dict(
            db.execute("SELECT type, COUNT(*) FROM resources WHERE patient = 'P05' GROUP BY type")
        )
        db.execute("DELETE FROM resources WHERE patient = 'P05'")
    with httpx.Client() as http:
        patient = http.get(f"{own_server}/Patient/P05").json()
        patient["active"] = not patient.get("active", False)
        put = http.put(
            f"{own_server}/Patient/P05",
            content=json.dumps(patient),
            headers={"Content-Type": "application/fhir+json"},
        )
        assert put.status_code == 200
    second = sync_once(own_server, registry, mode="incremental")
    # The delta holds only the Patient (new here); the search back-fill brings it again
    # (unchanged) with the rest of P05's history.
    assert second["counts"]["Patient"] == {
        "received": 2, "new": 1, "changed": 0, "unchanged": 1, "deleted": 0, "skipped": 0
    }  # fmt: skip
    # All of a patient's resources of these types are searched (Observations: mapped codes only).
    for kind in ("Condition", "Procedure", "MedicationAdministration", "Encounter"):
        assert second["counts"][kind]["new"] == dropped[kind] > 0
    with Registry(registry) as opened:
        assert opened.cohort(second["id"])["P05"] == opened.cohort(first["id"])["P05"]


def test_search_incremental_sync_fetches_changes_and_whole_new_patients(own_server, tmp_path):
    registry = tmp_path / "registry.sqlite"
    first = sync_once(own_server, registry, mode="search")
    assert first["status"] == "ok" and totals(first)["new"] > 3000
    with httpx.Client() as http:
        copy = (FIXTURES / "P07.json").read_text().replace("P07", "Z07")  # a new cohort patient
        post_transaction(own_server, json.loads(copy), http)
        patient = http.get(f"{own_server}/Patient/P08").json()  # a change to a known patient
        patient["gender"] = "female" if patient["gender"] == "male" else "male"
        put = http.put(
            f"{own_server}/Patient/P08",
            content=json.dumps(patient),
            headers={"Content-Type": "application/fhir+json"},
        )
        assert put.status_code == 200

    settings = SyncSettings(
        own_server, registry, mode="search-incremental", type_filter=False, search_overlap=0
    )
    second = sync(settings, OPTIONS, environ={})
    assert (second["status"], second["mode"]) == ("ok", "search-incremental")
    assert second["since"] == first["transaction_time"].replace("+00:00", "Z")
    assert "searches do not see deletions" in second["message"]
    assert second["counts"]["Patient"] == {
        "received": 2, "new": 1, "changed": 1, "unchanged": 0, "deleted": 0, "skipped": 0
    }  # fmt: skip
    with Registry(registry) as opened:
        whole_history = opened.db.execute(
            "SELECT COUNT(*) FROM resources WHERE patient = 'Z07' AND run_id = ?", (second["id"],)
        ).fetchone()[0]
        of_p07 = opened.db.execute(
            "SELECT COUNT(*) FROM resources WHERE patient = 'P07'"
        ).fetchone()[0]
        assert whole_history == of_p07 > 10
        # Nothing but Z07's history, P08's Patient and the Medications they reference came.
        medications = second["counts"].get("Medication", {}).get("received", 0)
        assert totals(second)["received"] == whole_history + 1 + medications
        before, after = opened.cohort(first["id"]), opened.cohort(second["id"])
    assert set(after) - set(before) == {"Z07"}
    ignored = {"patient_id", "provenance"}
    assert {k: v for k, v in after["Z07"].items() if k not in ignored} == {
        k: v for k, v in after["P07"].items() if k not in ignored
    }
    assert before["P08"]["sex"] != after["P08"]["sex"]


def test_sync_blocked_by_another_writer_fails_clearly_and_keeps_nothing(own_server, tmp_path):
    registry = tmp_path / "registry.sqlite"
    sync_once(own_server, registry)
    before = state_of(registry)
    reader = sqlite3.connect(registry, isolation_level=None)
    reader.execute("BEGIN")  # a notebook inside a read transaction holds up nothing (WAL)
    reader.execute("SELECT COUNT(*) FROM resources").fetchone()
    settings = SyncSettings(own_server, registry, type_filter=False, busy_timeout=0.2)
    assert sync(settings, OPTIONS, environ={})["status"] == "ok"
    reader.execute("ROLLBACK")
    before = state_of(registry)
    reader.execute("BEGIN IMMEDIATE")  # an SQLite shell inside a write transaction does
    with pytest.raises(RegistryError, match="kept the registry locked too long to write"):
        sync(settings, OPTIONS, environ={})
    reader.execute("ROLLBACK")
    reader.close()
    assert state_of(registry) == before
    assert sync_once(own_server, registry)["status"] == "ok"


def test_killed_sync_leaves_the_registry_intact_and_the_next_run_completes(own_server, tmp_path):
    registry = tmp_path / "registry.sqlite"
    with Registry(registry):
        pass  # an empty registry: the killed runs must leave it empty and consistent
    before = state_of(registry)

    # Killed while polling: the saved status URL is polled again by the next run.
    process = start_sync(own_server, registry)
    state = export_staging(work_folder(registry) / "export") / "bulk-state.json"
    wait_for(state.exists, process)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    integrity, resources, runs = state_of(registry)
    assert (integrity, resources) == ("ok", before[1])
    assert runs == [(1, "running")]

    # Killed after the export was fetched, while it is written: that export is written next.
    process = start_sync(own_server, registry)
    wait_for((work_folder(registry) / "export" / "manifest.json").exists, process)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    integrity, resources, runs = state_of(registry)
    assert (integrity, resources) == ("ok", before[1])
    assert runs == [(1, "interrupted"), (2, "running")]

    finished = subprocess.run(
        [*FHIR_HCC, "sync", own_server, "--registry", str(registry), "--no-type-filter"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert finished.returncode == 0, finished.stderr[-500:]
    with Registry(registry) as opened:
        last = opened.runs(limit=1)[0]
        assert last["status"] == "ok"
        assert "wrote the export of an interrupted run" in last["message"]
        assert len(opened.cohort(last["id"])) >= 49
    assert state_of(registry)[2] == [(1, "interrupted"), (2, "interrupted"), (3, "ok")]


def test_second_concurrent_sync_refuses(own_server, tmp_path):
    registry = tmp_path / "registry.sqlite"
    first = start_sync(own_server, registry)
    wait_for(lambda: "pid" in _read(lock_path(registry)), first)
    second = subprocess.run(
        [*FHIR_HCC, "sync", own_server, "--registry", str(registry), "--no-type-filter"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert second.returncode == ExitCode.REGISTRY_BUSY
    assert f"another sync is running (pid {first.pid}" in second.stderr
    assert first.wait(timeout=60) == 0
    assert [status for _, status in state_of(registry)[2]] == ["ok"]


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""


# -- case lists ------------------------------------------------------------------------------
def put(http: httpx.Client, base_url: str, resource: dict[str, Any]) -> None:
    url = f"{base_url}/{resource['resourceType']}/{resource['id']}"
    response = http.put(
        url, content=json.dumps(resource), headers={"Content-Type": "application/fhir+json"}
    )
    assert response.status_code in (200, 201), response.text


def test_a_case_list_sync_brings_new_and_merged_patients_whole_and_drops_removed_ones(
    own_server, tmp_path
):
    registry = tmp_path / "registry.sqlite"
    ids = tmp_path / "ids.txt"
    ids.write_text("P10\nP12\nP14\n")
    settings = SyncSettings(own_server, registry, type_filter=False, search_overlap=0)
    first = sync(replace(settings, population=read_patients(ids)), OPTIONS, environ={})
    assert (first["status"], first["mode"]) == ("ok", "search")
    with httpx.Client() as http:  # P14 is merged into M14, which has a record of its own
        patient = http.get(f"{own_server}/Patient/P14").json()
        patient["link"] = [{"type": "replaced-by", "other": {"reference": "Patient/M14"}}]
        put(http, own_server, patient)
        put(http, own_server, {"resourceType": "Patient", "id": "M14", "gender": "male"})
        condition = {
            "resourceType": "Condition",
            "id": "M14-htn",
            "subject": {"reference": "Patient/M14"},
            "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "I10"}]},
        }
        put(http, own_server, condition)
    ids.write_text("P10\nP14\nP16\n")  # P12 leaves the list, P16 joins it
    second = sync(
        replace(settings, mode="incremental", population=read_patients(ids)), OPTIONS, environ={}
    )
    assert (second["status"], second["mode"]) == ("ok", "search-incremental")
    assert "1 patients left the case list" in second["message"]
    with Registry(registry) as opened:
        assert {"P10", "P14", "P16", "M14"} <= set(opened.hashes("Patient"))
        assert "P12" not in opened.hashes("Patient")
        assert opened.patient_resources(["P12"]) == []
        assert "M14-htn" in opened.hashes("Condition")
        from fhir_hcc.registry import diff_runs

        diff = diff_runs(opened, first["id"], second["id"])
        assert "P12" in diff.left and "P16" in diff.entered
    with httpx.Client() as http:  # P16's whole history came, not only recent changes
        on_server = http.get(f"{own_server}/Condition", params={"patient": "P16"}).json()
    with Registry(registry) as opened:
        stored = {
            i
            for t, i in (r.split("/") for r in opened.patient_resources(["P16"]))
            if t == "Condition"
        }
    assert stored == {entry["resource"]["id"] for entry in on_server["entry"]}


def test_on_epic_an_incremental_case_list_sync_compares_content_hashes(own_server, tmp_path):
    ids = tmp_path / "ids.txt"
    ids.write_text("P20\nP21\nN03\n")
    origin = own_server.removesuffix("/fhir")
    registry = tmp_path / "registry.sqlite"
    with EhrEmulator(origin, tmp_path, vendor="epic") as emulator:
        settings = SyncSettings(
            emulator.base_url(own_server),
            registry,
            mode="incremental",
            population=read_patients(ids),
            type_filter=False,
        )
        first = sync(settings, OPTIONS, environ={})
        second = sync(settings, OPTIONS, environ={})
    assert (first["mode"], second["mode"]) == ("search", "search")  # no _lastUpdated on Epic
    assert totals(first)["new"] > 30
    assert totals(second)["received"] == totals(first)["new"]
    assert (totals(second)["new"], totals(second)["changed"], totals(second)["deleted"]) == (
        0,
        0,
        0,
    )
    assert not [key for key in emulator.counts if key.startswith("refused")]
