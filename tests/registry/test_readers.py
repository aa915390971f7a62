"""Readers during a sync: real SQLite files, a real writer process, the CLI as a reader.

A sync writes one large transaction; `fhir-hcc registry ...` must answer meanwhile with the last
committed run, and a reader inside a long read transaction must not hold up the sync's commit.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from fhir_hcc.cli import main
from fhir_hcc.errors import ExitCode
from fhir_hcc.registry import Registry, RegistryError
from fhir_hcc.registry.ingest import ingest
from fhir_hcc.registry.lock import sync_lock

RUN = {"started": "t", "mode": "full", "server": "s", "tool_version": "v", "mappings_version": "m"}

# A sync in its own process: the first run's data, then a second run's large write left
# uncommitted (its page cache kept small, so the write spills into the file as a large sync's
# does) until the test says "commit" on stdin.
WRITER = """
import sys
from pathlib import Path
from fhir_hcc.registry import Registry
from fhir_hcc.registry.ingest import ingest

path, folder = Path(sys.argv[1]), Path(sys.argv[2])
with Registry(path) as registry:
    registry.db.execute("PRAGMA cache_size=-512")  # 512 KB: the write outgrows it at once
    run_id = registry.start_run({"started": "t2", "mode": "full", "server": "s",
                                 "tool_version": "v", "mappings_version": "m"})
    registry.begin(run_id)
    ingest(registry, run_id, {"Observation": [folder / "Observation.ndjson"]}, complete=False)
    registry.finish_run(run_id, {"status": "ok"})
    print("written", flush=True)
    sys.stdin.readline()
    registry.commit()
    print("committed", flush=True)
"""


def observations(folder: Path, count: int) -> Path:
    """`count` Observations of about 1 KB, as an export file."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "Observation.ndjson"
    with path.open("wb") as handle:
        for n in range(count):
            resource = {
                "resourceType": "Observation",
                "id": f"o{n:06d}",
                "subject": {"reference": f"Patient/p{n % 50}"},
                "note": [{"text": "x" * 900}],
            }
            handle.write(orjson.dumps(resource) + b"\n")
    return path


def first_run(path: Path, folder: Path) -> int:
    """A committed run with two Patients and a cohort of one."""
    folder.mkdir(parents=True, exist_ok=True)
    patients = folder / "Patient.ndjson"
    patients.write_bytes(
        b"".join(orjson.dumps({"resourceType": "Patient", "id": p}) + b"\n" for p in ("a", "b"))
    )
    with Registry(path) as registry:
        run_id = registry.start_run(RUN)
        registry.begin(run_id)
        ingest(registry, run_id, {"Patient": [patients]}, complete=True)
        registry.save_cohort(run_id, {"a": {"patient_id": "a", "sex": "male"}})
        registry.finish_run(run_id, {"status": "ok"})
        registry.commit()
    return run_id


def cli_json(*args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, Any, float]:
    started = time.perf_counter()
    code = main(["registry", *args, "--json"])
    seconds = time.perf_counter() - started
    out = capsys.readouterr().out
    return code, json.loads(out) if code == 0 else None, seconds


def test_readers_get_the_last_committed_run_while_a_large_sync_writes(tmp_path, capsys):
    path = tmp_path / "registry.sqlite"
    first_run(path, tmp_path / "first")
    observations(tmp_path / "second", 4000)  # about 4 MB: eight times the writer's cache
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path), str(tmp_path / "second")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert writer.stdin is not None and writer.stdout is not None
    try:
        assert writer.stdout.readline() == "written\n"
        # The uncommitted write has outgrown its cache: with a rollback journal the writer
        # would now hold the file exclusively and every reader would wait for its commit.
        assert Path(f"{path}-wal").stat().st_size > 2_000_000
        where = ("--registry", str(path))
        code, status, seconds = cli_json("status", *where, capsys=capsys)
        assert (code, status["resources"]) == (0, {"Patient": 2})
        assert (status["lastRun"]["id"], status["lastRun"]["status"]) == (2, "running")
        assert seconds < 2
        code, history, _ = cli_json("history", *where, capsys=capsys)
        assert [(run["id"], run["status"]) for run in history] == [(2, "running"), (1, "ok")]
        code, cohort, _ = cli_json("cohort", *where, capsys=capsys)
        assert (cohort["run"], [row["patient_id"] for row in cohort["rows"]]) == (1, ["a"])
        writer.stdin.write("commit\n")
        writer.stdin.flush()
        assert writer.stdout.readline() == "committed\n"
    finally:
        writer.stdin.close()
        writer.wait(timeout=30)
    assert writer.returncode == 0
    code, status, _ = cli_json("status", "--registry", str(path), capsys=capsys)
    assert status["resources"] == {"Observation": 4000, "Patient": 2}
    assert (status["lastRun"]["id"], status["lastRun"]["status"]) == (2, "ok")


def test_a_reader_inside_a_read_transaction_does_not_hold_up_a_commit(tmp_path):
    path = tmp_path / "registry.sqlite"
    first_run(path, tmp_path / "first")
    notebook = sqlite3.connect(path, isolation_level=None)
    notebook.execute("BEGIN")  # a notebook inside a read transaction
    assert notebook.execute("SELECT COUNT(*) FROM resources").fetchone() == (2,)
    with Registry(path, timeout=0.2) as registry:  # a sync that waits for nobody
        run_id = registry.start_run(RUN)
        registry.begin(run_id)
        ingest(
            registry, run_id, {"Observation": [observations(tmp_path / "b", 100)]}, complete=False
        )
        registry.finish_run(run_id, {"status": "ok"})
        registry.commit()
    assert notebook.execute("SELECT COUNT(*) FROM resources").fetchone() == (2,)  # its snapshot
    notebook.execute("COMMIT")
    assert notebook.execute("SELECT COUNT(*) FROM resources").fetchone() == (102,)
    notebook.close()


def test_one_command_reads_one_committed_state(tmp_path):
    path = tmp_path / "registry.sqlite"
    first_run(path, tmp_path / "first")
    with Registry(path, reader=True) as reader, reader.snapshot():
        before = reader.summary()["resources"]
        with Registry(path) as writer:  # a sync commits between two queries of the command
            run_id = writer.start_run(RUN)
            writer.begin(run_id)
            ingest(
                writer, run_id, {"Observation": [observations(tmp_path / "b", 10)]}, complete=False
            )
            writer.commit()
        assert reader.summary()["resources"] == before == {"Patient": 2}
        assert [run["id"] for run in reader.runs()] == [1]


def test_a_reader_changes_nothing(tmp_path):
    path = tmp_path / "registry.sqlite"
    first_run(path, tmp_path / "first")
    with (
        Registry(path, reader=True) as reader,
        pytest.raises(sqlite3.OperationalError, match="readonly"),
    ):
        reader.start_run(RUN)
    with pytest.raises(RegistryError, match="schema version None"):
        Registry(tmp_path / "empty.sqlite", reader=True)


def test_a_first_sync_builds_the_registry_beside_its_path_and_moves_it_in_at_its_commit(
    tmp_path, capsys
):
    path = tmp_path / "registry.sqlite"
    (tmp_path / "registry.sqlite.new").write_bytes(b"left by a first sync that was killed")
    with sync_lock(path), Registry(path) as registry:
        run_id = registry.start_run(RUN)
        registry.begin(run_id)
        ingest(registry, run_id, {"Observation": [observations(tmp_path / "a", 10)]}, complete=True)
        registry.finish_run(run_id, {"status": "ok"})
        assert not path.exists()  # nothing is committed: readers are told so at once
        assert main(["registry", "status", "--registry", str(path)]) == ExitCode.REGISTRY_BUSY
        assert "the first sync is writing it (pid " in capsys.readouterr().err
        registry.commit()
        assert path.is_file() and not (tmp_path / "registry.sqlite.new").exists()
        settings = [registry.db.execute(f"PRAGMA {name}").fetchone()[0] for name in
                    ("journal_mode", "page_size", "synchronous")]  # fmt: skip
        assert settings == ["wal", 16384, 2]  # 2: FULL
        assert registry.summary()["resources"] == {"Observation": 10}  # the writer goes on
    code, status, _ = cli_json("status", "--registry", str(path), capsys=capsys)
    assert (code, status["resources"], status["lastRun"]["status"]) == (
        0,
        {"Observation": 10},
        "ok",
    )


def test_a_failed_first_sync_leaves_a_registry_with_its_failed_run(tmp_path, capsys):
    path = tmp_path / "registry.sqlite"
    with Registry(path) as registry:
        run_id = registry.start_run(RUN)
        registry.begin(run_id)
        ingest(registry, run_id, {"Observation": [observations(tmp_path / "a", 10)]}, complete=True)
        registry.rollback()  # the server failed: nothing of the run is kept
        registry.finish_run(run_id, {"status": "failed", "message": "server unreachable"})
    code, history, _ = cli_json("history", "--registry", str(path), capsys=capsys)
    assert [(run["id"], run["status"], run["message"]) for run in history] == [
        (1, "failed", "server unreachable")
    ]
    code, status, _ = cli_json("status", "--registry", str(path), capsys=capsys)
    assert (code, status["resources"]) == (0, {})


# Schema 1, as the versions before WAL wrote it: `resources` WITHOUT ROWID, rollback journal.
SCHEMA_1 = """
PRAGMA page_size=16384;
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO meta VALUES ('schema', '1');
CREATE TABLE runs (id INTEGER PRIMARY KEY, started TEXT NOT NULL, finished TEXT,
    mode TEXT NOT NULL, since TEXT, transaction_time TEXT, status TEXT NOT NULL,
    server TEXT NOT NULL, tool_version TEXT NOT NULL, mappings_version TEXT NOT NULL,
    counts TEXT, message TEXT);
CREATE TABLE resources (type TEXT NOT NULL, id TEXT NOT NULL, version_id TEXT,
    last_updated TEXT, hash BLOB NOT NULL, patient TEXT, run_id INTEGER NOT NULL,
    json BLOB NOT NULL, PRIMARY KEY (type, id)) WITHOUT ROWID;
CREATE TABLE history (type TEXT NOT NULL, id TEXT NOT NULL, version_id TEXT,
    last_updated TEXT, hash BLOB NOT NULL, patient TEXT, run_id INTEGER NOT NULL,
    json BLOB NOT NULL, replaced_by INTEGER, deleted_by INTEGER);
CREATE INDEX history_resource ON history (type, id);
CREATE TABLE cohort (run_id INTEGER NOT NULL, patient TEXT NOT NULL, row TEXT NOT NULL,
    PRIMARY KEY (run_id, patient));
CREATE TRIGGER keep_replaced BEFORE UPDATE ON resources BEGIN
    INSERT INTO history VALUES (old.type, old.id, old.version_id, old.last_updated, old.hash,
        old.patient, old.run_id, old.json, new.run_id, NULL);
END;
INSERT INTO runs VALUES (1, 't', 't', 'full', NULL, NULL, 'ok', 's', 'v', 'm', '{}', NULL);
INSERT INTO resources VALUES ('Patient', 'a', '1', NULL, x'00', 'a', 1, CAST('{"id":"a"}' AS BLOB));
INSERT INTO history VALUES ('Patient', 'a', '0', NULL, x'01', 'a', 1,
    CAST('{"id":"a","v":0}' AS BLOB), 1, NULL);
INSERT INTO cohort VALUES (1, 'a', '{"patient_id":"a"}');
"""


def schema_1_registry(path: Path) -> Path:
    old = sqlite3.connect(path, isolation_level=None)
    old.executescript(SCHEMA_1)
    old.close()
    return path


def test_a_schema_1_registry_is_read_as_it_is_and_upgraded_by_the_next_sync(tmp_path, capsys):
    path = schema_1_registry(tmp_path / "registry.sqlite")
    code, status, _ = cli_json("status", "--registry", str(path), capsys=capsys)
    assert (code, status["resources"]) == (0, {"Patient": 1})  # read as it is, not upgraded
    with Registry(path) as registry:
        assert registry.db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        columns = [row[1] for row in registry.db.execute("PRAGMA table_info(resources)")]
        assert "content" in columns and "json" not in columns
        index = "SELECT tbl_name FROM sqlite_master WHERE name = 'history_resource'"
        assert registry.db.execute(index).fetchone() == ("history",)
        assert registry.db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone() == (
            "2",
        )
        assert registry.db.execute("SELECT id, json FROM current").fetchall() == [
            ("a", b'{"id":"a"}')
        ]
        old_versions = registry.db.execute(
            "SELECT h.version_id, c.json FROM history AS h JOIN contents AS c ON c.id = h.content"
        )
        assert old_versions.fetchall() == [("0", b'{"id":"a","v":0}')]
        assert registry.cohort(1) == {"a": {"patient_id": "a"}}
        run_id = registry.start_run(RUN)  # the triggers are there again
        registry.begin(run_id)
        registry.delete("Patient", ["a"])
        registry.commit()
        assert (registry.summary()["deletions"], registry.versions()) == (1, 2)


def test_reading_a_schema_1_registry_that_a_sync_is_upgrading_says_busy(
    tmp_path, monkeypatch, capsys
):
    path = schema_1_registry(tmp_path / "registry.sqlite")
    monkeypatch.setattr("fhir_hcc.cli.registry.READ_WAIT", 0.1)
    writer = sqlite3.connect(path, isolation_level=None)
    with sync_lock(path):
        writer.execute("BEGIN EXCLUSIVE")  # the rollback journal's write lock, as at the upgrade
        code = main(["registry", "status", "--registry", str(path)])
        writer.execute("ROLLBACK")
    writer.close()
    assert code == ExitCode.REGISTRY_BUSY
    error = capsys.readouterr().err
    assert "a sync is writing it (pid " in error and "Traceback" not in error
