"""The registry file without a server: ledger, versions, deletions, lock, diff, cohort source."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from fhir_hcc.cohort import build_cohort
from fhir_hcc.registry import (
    Registry,
    RegistryBusyError,
    RegistryError,
    RegistrySource,
    diff_runs,
)
from fhir_hcc.registry.ingest import apply_deletions, ingest
from fhir_hcc.registry.lock import sync_lock
from fhir_hcc.sources import FileSource

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "salvage2004"


def patient(pid: str, **fields: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": pid, "meta": {"versionId": "1"}} | fields


def condition(cid: str, pid: str) -> dict[str, Any]:
    return {"resourceType": "Condition", "id": cid, "subject": {"reference": f"Patient/{pid}"}}


def write(folder: Path, resources: list[dict[str, Any]]) -> dict[str, list[Path]]:
    """NDJSON per type, as an export leaves it; returns the files by type."""
    folder.mkdir(parents=True, exist_ok=True)
    by_type: dict[str, list[Path]] = {}
    for resource in resources:
        path = folder / f"{resource['resourceType']}.ndjson"
        with path.open("ab") as handle:
            handle.write(orjson.dumps(resource) + b"\n")
        by_type.setdefault(resource["resourceType"], [])
        if path not in by_type[resource["resourceType"]]:
            by_type[resource["resourceType"]].append(path)
    return by_type


def run_ingest(registry: Registry, run_id: int, files, *, complete: bool = True):
    registry.begin(run_id)
    result = ingest(registry, run_id, files, complete=complete)
    registry.commit()
    return result


@pytest.fixture
def registry(tmp_path: Path):
    with Registry(tmp_path / "r.sqlite") as opened:
        yield opened


def new_run(registry: Registry) -> int:
    return registry.start_run(
        {
            "started": "t",
            "mode": "full",
            "server": "s",
            "tool_version": "v",
            "mappings_version": "m",
        }
    )


def test_first_ingest_stores_keys_hash_and_exact_json(registry, tmp_path):
    files = write(tmp_path / "a", [patient("p1", gender="male"), condition("c1", "p1")])
    result = run_ingest(registry, new_run(registry), files)
    assert result.record()["Patient"] == {
        "received": 1, "new": 1, "changed": 0, "unchanged": 0, "deleted": 0, "skipped": 0
    }  # fmt: skip
    assert result.new_patients == {"p1"}
    row = registry.db.execute(
        "SELECT version_id, patient, json FROM current WHERE type = 'Condition'"
    ).fetchone()
    assert row == (None, "p1", orjson.dumps(condition("c1", "p1")))


def test_rerun_with_nothing_changed_writes_no_version(registry, tmp_path):
    files = write(tmp_path / "a", [patient("p1"), condition("c1", "p1")])
    run_ingest(registry, new_run(registry), files)
    versions = registry.versions()
    result = run_ingest(registry, new_run(registry), files)
    assert result.writes == 0
    assert result.record()["Condition"]["unchanged"] == 1
    assert registry.versions() == versions == 2


def test_change_keeps_the_old_version_and_absence_deletes(registry, tmp_path):
    first = new_run(registry)
    run_ingest(registry, first, write(tmp_path / "a", [patient("p1"), patient("p2")]))
    second = new_run(registry)
    result = run_ingest(registry, second, write(tmp_path / "b", [patient("p1", gender="female")]))
    assert (result.of("Patient").changed, result.of("Patient").deleted) == (1, 1)
    history = registry.db.execute(
        "SELECT id, run_id, replaced_by, deleted_by FROM history ORDER BY id"
    ).fetchall()
    assert history == [("p1", first, second, None), ("p2", first, None, second)]
    current = registry.db.execute("SELECT id, run_id FROM resources").fetchall()
    assert current == [("p1", second)]


def test_incomplete_pull_infers_no_deletions(registry, tmp_path):
    run_ingest(registry, new_run(registry), write(tmp_path / "a", [patient("p1"), patient("p2")]))
    result = run_ingest(
        registry, new_run(registry), write(tmp_path / "b", [patient("p1")]), complete=False
    )
    assert result.of("Patient").deleted == 0
    assert registry.summary()["resources"] == {"Patient": 2}


def test_reported_deletions_are_applied_and_unknown_ones_ignored(registry, tmp_path):
    run_ingest(registry, new_run(registry), write(tmp_path / "a", [patient("p1"), patient("p2")]))
    run_id = new_run(registry)
    registry.begin(run_id)
    result = ingest(registry, run_id, {}, complete=False)
    apply_deletions(registry, ["Patient/p2", "Patient/nobody"], result)
    registry.commit()
    assert result.of("Patient").deleted == 1
    assert registry.summary()["deletions"] == 1


def test_rolled_back_run_leaves_the_previous_state(registry, tmp_path):
    run_ingest(registry, new_run(registry), write(tmp_path / "a", [patient("p1")]))
    run_id = new_run(registry)
    registry.begin(run_id)
    ingest(registry, run_id, write(tmp_path / "b", [patient("p9")]), complete=True)
    registry.rollback()
    assert [row[0] for row in registry.db.execute("SELECT id FROM resources")] == ["p1"]
    assert registry.versions() == 1


def test_a_bad_line_costs_only_itself_counted_and_named(registry, tmp_path):
    """A line of another type, a line that is not JSON and a repeated id are skipped and named
    by file and line; the rest of the run is stored (issue 10: one bad line, not the night)."""
    folder = tmp_path / "a"
    files = write(folder, [patient("p1"), patient("p2")])
    with files["Patient"][0].open("ab") as handle:
        handle.write(orjson.dumps(condition("c1", "p1")) + b"\n")
        handle.write(b'{"resourceType": "Patient", "id": "p3", "name": [{"family": "Sm\n')
        handle.write(orjson.dumps(patient("p1", gender="male")) + b"\n")
    result = run_ingest(registry, new_run(registry), files)
    assert result.of("Patient").new == 2 and result.of("Patient").skipped == 3
    assert result.problems == [
        "Patient.ndjson:3: Condition/c1 in the Patient file: not stored",
        "Patient.ndjson:4: not a FHIR resource: not stored",
        "Patient.ndjson:5: Patient/p1: a second copy",
    ]
    assert "Sm" not in "".join(result.problems)  # names lines, never values


def test_a_started_run_left_running_is_marked_interrupted(registry):
    first = new_run(registry)
    new_run(registry)
    assert registry.run(first)["status"] == "interrupted"


def test_second_lock_holder_is_refused_with_the_holders_pid(tmp_path):
    path = tmp_path / "r.sqlite"
    busy = pytest.raises(RegistryBusyError, match=r"another sync is running \(pid \d+")
    with sync_lock(path), busy, sync_lock(path):
        pass
    with sync_lock(path):  # released
        pass


def test_not_a_registry_is_a_clear_error(tmp_path):
    path = tmp_path / "r.sqlite"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(RegistryError, match="not a usable registry"):
        Registry(path)


def test_registry_source_gives_the_same_cohort_as_the_files(registry, tmp_path):
    problems: list[Any] = []
    resources = [
        orjson.loads(item) if isinstance(item, bytes) else item
        for item, _ in FileSource(FIXTURES).read(problems.append)
    ]
    run_ingest(registry, new_run(registry), write(tmp_path / "a", resources))
    from_registry = build_cohort(RegistrySource(registry)).table
    from_files = build_cohort(FIXTURES).table
    assert len(from_files) == 49
    assert from_registry.equals(from_files)


def test_diff_lists_entered_left_and_changed_fields(registry):
    first, second = new_run(registry), new_run(registry)
    for run_id in (first, second):
        registry.finish_run(run_id, {"status": "ok"})
    registry.save_cohort(first, {"A": {"recurrence": "no"}, "B": {"recurrence": "no"}})
    registry.save_cohort(
        second, {"A": {"recurrence": "yes", "provenance": "x"}, "C": {"recurrence": "no"}}
    )
    diff = diff_runs(registry, first, second)
    assert (diff.entered, diff.left) == (["C"], ["B"])
    assert diff.changed == {"A": {"recurrence": ("no", "yes")}}


def test_diff_of_a_run_without_snapshot_is_refused(registry):
    ok, failed = new_run(registry), new_run(registry)
    registry.finish_run(ok, {"status": "ok"})
    registry.finish_run(failed, {"status": "failed"})
    with pytest.raises(RegistryError, match="run 2 has no cohort snapshot"):
        diff_runs(registry, ok, failed)
    with pytest.raises(RegistryError, match="no run 99"):
        diff_runs(registry, ok, 99)
