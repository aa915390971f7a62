"""The registry file: SQLite holding resources, their old versions, runs and cohorts.

Write-ahead log (WAL): a sync writes one large transaction while readers (`fhir-hcc registry
...`, notebooks) go on reading the last committed run, neither waiting for the other. The
rollback journal it replaces locked readers out for most of a large sync, and a reader inside
a long read transaction stopped the sync's commit. WAL writes the data twice (to the log, then
into the file at the checkpoint after the commit): with resource ids in random order, as most
servers assign them, the two tables below more than pay for that; with ids in order a large
sync costs about a tenth more CPU than before (docs/registry.md, "Performance").

Tables:
- `resources`: the current version of every resource, keyed by type and id: versionId,
  lastUpdated, content hash, patient id, the run that wrote it and its `content` (below). A
  small row: the ledger of a sync reads it in key order without touching any JSON, and new
  resources with ids in random order (as servers assign them) are cheap to insert;
- `contents`: the JSON of every version, exactly as the server sent it, appended and never
  changed (`resources.content` and `history.content` point at it);
- `history`: every replaced or deleted version, moved there by triggers (`deleted_by` set for a
  deletion, `replaced_by` for a change);
- `runs`: one row per sync (start, end, mode, since, transaction time, per-type counts, status,
  tool and mapping versions, message);
- `cohort`: the cohort table of each successful run, one JSON row per patient;
- the view `current`: `resources` with the JSON of each (for queries by hand).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from operator import add, itemgetter
from pathlib import Path
from typing import Any, NamedTuple

import orjson

from fhir_hcc.registry.errors import RegistryError

SCHEMA_VERSION = 2  # 2: keys and JSON in two tables, WAL (1: one WITHOUT ROWID table)
READABLE_SCHEMAS = frozenset({1, 2})  # the queries of readers work on both
DEFAULT_FILE = "registry.sqlite"
REGISTRY_ENV = "FHIR_HCC_REGISTRY"

_TABLES = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    started TEXT NOT NULL,
    finished TEXT,
    mode TEXT NOT NULL,
    since TEXT,
    transaction_time TEXT,
    status TEXT NOT NULL,
    server TEXT NOT NULL,
    tool_version TEXT NOT NULL,
    mappings_version TEXT NOT NULL,
    counts TEXT,
    message TEXT
);
CREATE TABLE IF NOT EXISTS contents (id INTEGER PRIMARY KEY, json BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS resources (
    type TEXT NOT NULL,
    id TEXT NOT NULL,
    version_id TEXT,
    last_updated TEXT,
    hash BLOB NOT NULL,
    patient TEXT,
    run_id INTEGER NOT NULL,
    content INTEGER NOT NULL,
    PRIMARY KEY (type, id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS history (
    type TEXT NOT NULL,
    id TEXT NOT NULL,
    version_id TEXT,
    last_updated TEXT,
    hash BLOB NOT NULL,
    patient TEXT,
    run_id INTEGER NOT NULL,
    content INTEGER NOT NULL,
    replaced_by INTEGER,
    deleted_by INTEGER
);
CREATE INDEX IF NOT EXISTS history_resource ON history (type, id);
CREATE TABLE IF NOT EXISTS cohort (
    run_id INTEGER NOT NULL,
    patient TEXT NOT NULL,
    row TEXT NOT NULL,
    PRIMARY KEY (run_id, patient)
);
"""
_TRIGGERS = """
CREATE TRIGGER IF NOT EXISTS keep_replaced BEFORE UPDATE ON resources BEGIN
    INSERT INTO history VALUES (old.type, old.id, old.version_id, old.last_updated, old.hash,
        old.patient, old.run_id, old.content, new.run_id, NULL);
END;
CREATE TRIGGER IF NOT EXISTS keep_deleted BEFORE DELETE ON resources BEGIN
    INSERT INTO history VALUES (old.type, old.id, old.version_id, old.last_updated, old.hash,
        old.patient, old.run_id, old.content, NULL, (SELECT value FROM meta WHERE key = 'run'));
END;
CREATE VIEW IF NOT EXISTS current AS
    SELECT r.type, r.id, r.version_id, r.last_updated, r.hash, r.patient, r.run_id, c.json
    FROM resources AS r JOIN contents AS c ON c.id = r.content;
"""
# Schema 1 kept each version's JSON in its `resources` or `history` row: move it to `contents`.
_UPGRADE_FROM_1 = f"""
ALTER TABLE resources RENAME TO resources_1;
ALTER TABLE history RENAME TO history_1;
DROP TRIGGER IF EXISTS keep_replaced;
DROP TRIGGER IF EXISTS keep_deleted;
DROP INDEX IF EXISTS history_resource;
{_TABLES}
INSERT INTO contents (id, json) SELECT row_number() OVER (ORDER BY type, id), json
    FROM resources_1;
INSERT INTO resources SELECT type, id, version_id, last_updated, hash, patient, run_id,
    row_number() OVER (ORDER BY type, id) FROM resources_1 ORDER BY type, id;
INSERT INTO contents (id, json) SELECT (SELECT COUNT(*) FROM resources_1) + rowid, json
    FROM history_1;
INSERT INTO history SELECT type, id, version_id, last_updated, hash, patient, run_id,
    (SELECT COUNT(*) FROM resources_1) + rowid, replaced_by, deleted_by FROM history_1;
DROP TABLE resources_1;
DROP TABLE history_1;
UPDATE meta SET value = '2' WHERE key = 'schema';
"""


def default_path() -> Path:
    """$FHIR_HCC_REGISTRY, else $XDG_DATA_HOME/fhir-hcc/registry.sqlite (~/.local/share/...)."""
    if os.environ.get(REGISTRY_ENV):
        return Path(os.environ[REGISTRY_ENV])
    data_home = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(data_home) / "fhir-hcc" / DEFAULT_FILE


class Row(NamedTuple):
    """One resource version as read from an export (a tuple: one is made per resource)."""

    type: str
    id: str
    version_id: str | None
    last_updated: str | None
    hash: bytes
    patient: str | None
    json: bytes


_KEYS = itemgetter(slice(0, 6))  # a Row's columns of `resources`, up to its content id
_JSON = itemgetter(6)


class Registry:
    """An open registry file; a run's writes happen between `begin()` and `commit()`.

    `reader=True` opens an existing registry for reading only (no schema changes, no writes);
    `snapshot()` then answers several queries from one committed state.
    """

    def __init__(self, path: Path, timeout: float = 30, *, reader: bool = False) -> None:
        self.path = path
        self.timeout = timeout
        # A registry that does not exist yet is built beside its path and moved into place at
        # its first commit (`_publish`): no reader can hold a file that did not exist, so it
        # needs no log, and its first (largest) write is written once, not twice as in WAL.
        self._building: Path | None = None
        if not reader:
            path.parent.mkdir(parents=True, exist_ok=True)
            if not path.exists():
                self._building = building_path(path)
                for stale in (self._building, journal_of(self._building)):
                    stale.unlink(missing_ok=True)  # a first sync that was killed
        self.db = self._connect(reader)

    def _connect(self, reader: bool) -> sqlite3.Connection:
        file = self._building or self.path
        try:
            db = sqlite3.connect(file, isolation_level=None, timeout=self.timeout)
        except sqlite3.Error as error:
            raise RegistryError(f"{self.path}: cannot open the registry ({error})") from None
        self.db = db
        try:
            if reader:
                db.execute("PRAGMA query_only=ON")
                self._check_schema(READABLE_SCHEMAS)
            else:
                self._prepare()
        except sqlite3.DatabaseError as error:
            db.close()
            if is_locked(error):
                raise  # the caller knows whether a sync holds it
            raise RegistryError(f"{self.path}: not a usable registry ({error})") from None
        except RegistryError:
            db.close()
            raise
        return db

    def _prepare(self) -> None:
        """Settings, tables and the upgrade of an older file, for a connection that writes."""
        self.db.execute("PRAGMA page_size=16384")  # a new file only: 1-2 KB rows pack better
        # WAL is persistent: readers open the file in WAL too. A file being built has no
        # readers: a rollback journal (nothing to journal in a new file) until `_publish`.
        self.db.execute(f"PRAGMA journal_mode={'DELETE' if self._building else 'WAL'}")
        self.db.execute("PRAGMA synchronous=FULL")  # a commit survives a power cut
        self.db.execute("PRAGMA journal_size_limit=67108864")  # a checkpointed log: 64 MB kept
        self.db.execute("PRAGMA cache_size=-262144")  # 256 MB: the keys of ~1.5 M resources
        found = self._schema_version()
        if found == 1:
            self._upgrade_from_1()
        self.db.executescript(_TABLES + _TRIGGERS)
        if found is None:
            self.db.execute("INSERT INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
        self._check_schema({SCHEMA_VERSION})

    def _publish(self) -> None:
        """Move a registry built beside its path into place, in WAL mode from then on."""
        assert self._building is not None
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.close()
        os.replace(self._building, self.path)
        self._building = None
        self.db = self._connect(reader=False)

    def _schema_version(self) -> int | None:
        exists = self.db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'"
        ).fetchone()
        found = exists and self.db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        return int(found[0]) if found else None

    def _check_schema(self, accepted: frozenset[int] | set[int]) -> None:
        found = self._schema_version()
        if found not in accepted:
            raise RegistryError(
                f"{self.path}: schema version {found}, expected {SCHEMA_VERSION}"
                + (" (an empty or unfinished registry file?)" if found is None else "")
            )

    def _upgrade_from_1(self) -> None:
        """In one transaction: a crash leaves schema 1 as it was."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            for statement in _UPGRADE_FROM_1.split(";\n"):
                if statement.strip():
                    self.db.execute(statement)
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    def close(self) -> None:
        if self._building is not None and not self.db.in_transaction:
            self._publish()  # what it holds is committed: runs, failed ones included
        self.db.close()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """One read transaction: every query inside it sees the same committed run, however
        many commits land meanwhile."""
        self.db.execute("BEGIN")
        try:
            yield
        finally:
            self.db.execute("COMMIT")

    # -- writing -----------------------------------------------------------------------------
    def begin(self, run_id: int) -> None:
        """Start the run's one transaction; deletions are attributed to `run_id`."""
        self.db.execute("BEGIN IMMEDIATE")
        self.db.execute("INSERT OR REPLACE INTO meta VALUES ('run', ?)", (run_id,))

    def commit(self) -> None:
        self.db.execute("COMMIT")
        if self._building is not None:
            self._publish()

    def rollback(self) -> None:
        if self.db.in_transaction:
            self.db.execute("ROLLBACK")

    def insert(self, rows: Sequence[Row], run_id: int) -> None:
        contents = self._store_contents(rows)
        self.db.executemany(
            "INSERT INTO resources (type, id, version_id, last_updated, hash, patient, content, "
            f"run_id) VALUES (?, ?, ?, ?, ?, ?, ?, {int(run_id)})",
            map(add, map(_KEYS, rows), zip(contents)),  # C loops: a row costs no Python call
        )

    def replace(self, rows: Sequence[Row], run_id: int) -> None:
        """New versions of known resources; the trigger keeps the old ones in `history`."""
        contents = self._store_contents(rows)
        self.db.executemany(
            "UPDATE resources SET version_id = ?, last_updated = ?, hash = ?, patient = ?, "
            "run_id = ?, content = ? WHERE type = ? AND id = ?",
            (
                (r.version_id, r.last_updated, r.hash, r.patient, run_id, content, r.type, r.id)
                for r, content in zip(rows, contents, strict=True)
            ),
        )

    def _store_contents(self, rows: Sequence[Row]) -> range:
        """Append the rows' JSON to `contents`; returns their ids there, in the rows' order."""
        (last,) = self.db.execute("SELECT coalesce(max(id), 0) FROM contents").fetchone()
        contents = range(last + 1, last + 1 + len(rows))
        self.db.executemany(
            "INSERT INTO contents (id, json) VALUES (?, ?)",
            zip(contents, map(_JSON, rows), strict=True),
        )
        return contents

    def delete(self, resource_type: str, ids: Iterable[str]) -> int:
        cursor = self.db.executemany(
            "DELETE FROM resources WHERE type = ? AND id = ?", ((resource_type, i) for i in ids)
        )
        return cursor.rowcount

    def hashes(self, resource_type: str, rows: Sequence[Row] | None = None) -> dict[str, bytes]:
        """id -> content hash of the current resources of one type (the ledger), or of `rows`."""
        if rows is None:
            query, params = "SELECT id, hash FROM resources WHERE type = ?", [resource_type]
        else:
            marks = ", ".join("?" for _ in rows)
            query = f"SELECT id, hash FROM resources WHERE type = ? AND id IN ({marks})"
            params = [resource_type, *(row.id for row in rows)]
        return dict(self.db.execute(query, params))

    def patient_resources(self, patients: Sequence[str]) -> list[str]:
        """`Type/id` of the current resources of `patients`, their Patients included (one scan
        per 500 patients: `patient` has no index)."""
        found: list[str] = []
        for start in range(0, len(patients), 500):
            chunk = patients[start : start + 500]
            marks = ", ".join("?" for _ in chunk)
            rows = self.db.execute(
                f"SELECT type, id FROM resources WHERE patient IN ({marks})", chunk
            )
            found.extend(f"{resource_type}/{resource_id}" for resource_type, resource_id in rows)
        return found

    # -- runs --------------------------------------------------------------------------------
    def start_run(self, values: dict[str, Any]) -> int:
        """A `running` row, committed at once so that a killed run stays visible."""
        self.db.execute(
            "UPDATE runs SET status = 'interrupted', message = 'the process stopped before "
            "committing; nothing of it was kept' WHERE status = 'running'"
        )
        columns = ", ".join(values)
        marks = ", ".join("?" for _ in values)
        cursor = self.db.execute(
            f"INSERT INTO runs ({columns}, status) VALUES ({marks}, 'running')",
            tuple(values.values()),
        )
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def finish_run(self, run_id: int, values: dict[str, Any]) -> None:
        assignments = ", ".join(f"{name} = ?" for name in values)
        self.db.execute(
            f"UPDATE runs SET {assignments} WHERE id = ?", (*_encoded(values.values()), run_id)
        )

    def runs(self, limit: int | None = None) -> list[dict[str, Any]]:
        query = "SELECT * FROM runs ORDER BY id DESC" + (f" LIMIT {int(limit)}" if limit else "")
        return [self._run(row) for row in self._dicts(query)]

    def run(self, run_id: int) -> dict[str, Any]:
        rows = self._dicts("SELECT * FROM runs WHERE id = ?", (run_id,))
        if not rows:
            raise RegistryError(f"{self.path}: no run {run_id}")
        return self._run(rows[0])

    def last_run(self, *statuses: str) -> dict[str, Any] | None:
        marks = ", ".join("?" for _ in statuses)
        rows = self._dicts(
            f"SELECT * FROM runs WHERE status IN ({marks}) ORDER BY id DESC LIMIT 1", statuses
        )
        return self._run(rows[0]) if rows else None

    # -- cohort snapshots --------------------------------------------------------------------
    def save_cohort(self, run_id: int, rows: dict[str, dict[str, Any]]) -> None:
        self.db.executemany(
            "INSERT INTO cohort VALUES (?, ?, ?)",
            ((run_id, patient, orjson.dumps(row).decode()) for patient, row in rows.items()),
        )

    def cohort(self, run_id: int) -> dict[str, dict[str, Any]]:
        return {
            patient: orjson.loads(row)
            for patient, row in self.db.execute(
                "SELECT patient, row FROM cohort WHERE run_id = ? ORDER BY patient", (run_id,)
            )
        }

    # -- reading -----------------------------------------------------------------------------
    def resource_lines(self) -> Iterator[tuple[str, str, bytes]]:
        """(type, id, JSON) of every current resource, streamed."""
        yield from self.db.execute(
            "SELECT r.type, r.id, c.json FROM resources AS r JOIN contents AS c "
            "ON c.id = r.content ORDER BY r.type, r.id"
        )

    def summary(self) -> dict[str, Any]:
        def count(query: str) -> int:
            return self.db.execute(query).fetchone()[0]

        return {
            "resources": dict(
                self.db.execute("SELECT type, COUNT(*) FROM resources GROUP BY type ORDER BY 1")
            ),
            "oldVersions": count("SELECT COUNT(*) FROM history WHERE deleted_by IS NULL"),
            "deletions": count("SELECT COUNT(*) FROM history WHERE deleted_by IS NOT NULL"),
            "bytes": (self._building or self.path).stat().st_size,
        }

    def versions(self) -> int:
        """Stored resource versions: current ones plus those in `history`."""
        (current,) = self.db.execute("SELECT COUNT(*) FROM resources").fetchone()
        (old,) = self.db.execute("SELECT COUNT(*) FROM history").fetchone()
        return current + old

    def _dicts(self, query: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        cursor = self.db.execute(query, params)
        names = [column[0] for column in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor]

    @staticmethod
    def _run(row: dict[str, Any]) -> dict[str, Any]:
        return row | {"counts": orjson.loads(row["counts"]) if row["counts"] else {}}


def building_path(registry: Path) -> Path:
    """Where a registry that does not exist yet is built until its first commit."""
    return registry.with_name(f"{registry.name}.new")


def journal_of(database: Path) -> Path:
    return database.with_name(f"{database.name}-journal")


def is_locked(error: sqlite3.Error) -> bool:
    """Whether SQLite gave up waiting for another connection's lock."""
    return error.sqlite_errorcode in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


def _encoded(values: Iterable[Any]) -> tuple[Any, ...]:
    """Dicts and lists as JSON text; everything else as it is."""
    return tuple(
        orjson.dumps(value).decode() if isinstance(value, dict | list) else value
        for value in values
    )
