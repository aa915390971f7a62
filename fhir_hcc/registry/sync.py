"""One sync run: fetch what changed on the server, write it in one transaction, snapshot the cohort.

Modes:
- `full`: a Bulk Data export of everything the cohort reads; the content-hash ledger finds new,
  changed and deleted resources by comparison (works on every server, including those that keep
  no lastUpdated or do not report deletions);
- `incremental`: a `_since` export from the last good run's transaction time; deletions come from
  the export's `deleted` files; patients new to the cohort get their full history by search;
- `search`: the search pull plan (servers without `$export`), compared with the ledger;
- `search-incremental`: the search pull plan for what changed (`_lastUpdated`) since the last
  good run, reaching back `search_overlap` seconds for clock skew; new candidates get their whole
  history; deletions are not seen (a `search` run finds them). On a server without
  `_lastUpdated` (the profile says so: Epic) it is a `search` run: every patient is fetched
  again and the content-hash ledger tells what changed;
- `auto` (default): `full` when the CapabilityStatement offers `$export` at the level the sync
  needs (system, or Group with `group`; `fhir_hcc.fhir.capability`, as `doctor` says), else
  `search`; `incremental` likewise becomes `search-incremental` on a server without it.

With a case list (`population`: `--patients`, `--identifiers`; or `--group` on a server without
Group export) the search modes pull the listed patients; new and merged patients get their
whole history, and the resources of patients no longer on the list are deleted, so they leave
the cohort (and `registry diff` lists them as left). The list is resolved again at every run.

One client (one connection pool, one read of `/metadata`, one server profile) serves the run.

Safety: a lock allows one sync per registry; the run's `running` row is committed first, the
data, cohort snapshot and final status in one transaction; the export's status URL and a
finished but not yet written export are kept in `<registry>.work/`, so a killed run's successor
resumes them instead of starting over.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import shutil
import sqlite3
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fhir_hcc.cohort import build_cohort
from fhir_hcc.config import CohortConfig, load_config
from fhir_hcc.contract import records
from fhir_hcc.errors import FhirHccError
from fhir_hcc.fhir.capability import supports_export
from fhir_hcc.mappings import load_mappings, mapping_directories
from fhir_hcc.registry.errors import RegistryError
from fhir_hcc.registry.ingest import IngestResult, apply_deletions, files_by_type, ingest
from fhir_hcc.registry.lock import sync_lock
from fhir_hcc.registry.store import Registry, is_locked
from fhir_hcc.server import caselist
from fhir_hcc.server.bulk import ExportRequest, run_export, type_filters
from fhir_hcc.server.caselist import Population
from fhir_hcc.server.client import FhirClient, tool_version
from fhir_hcc.server.options import ClientOptions
from fhir_hcc.server.output import read_manifest
from fhir_hcc.server.profile import Profile
from fhir_hcc.server.progress import NoProgress, Progress
from fhir_hcc.server.puller import Plan, Puller, apply_profile, run_pull
from fhir_hcc.server.writer import NdjsonWriter
from fhir_hcc.sources import Item, Origin, ProblemSink

log = logging.getLogger(__name__)

MODES = ("auto", "full", "incremental", "search", "search-incremental")
INCREMENTAL_MODES = frozenset({"incremental", "search-incremental"})


@dataclass(frozen=True)
class SyncSettings:
    base_url: str
    registry: Path
    mode: str = "auto"
    group: str | None = None  # a Group export; on a server without one, the Group's members
    population: Population | None = None  # a case list for the search modes
    type_filter: bool = True
    config: CohortConfig | str | Path | None = None
    snapshot: bool = True  # build and store the cohort (the benchmark times it separately)
    search_overlap: float = 600.0  # seconds a search-incremental window reaches back
    busy_timeout: float = 30.0  # seconds to wait for another writer before a write gives up


class RegistrySource:
    """The registry's current resources as a cohort source, read like NDJSON lines."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    def __repr__(self) -> str:
        return f"RegistrySource({str(self.registry.path)!r})"

    def read(self, report: ProblemSink) -> Iterator[Item]:
        for resource_type, resource_id, line in self.registry.resource_lines():
            yield line, Origin(f"registry:{resource_type}/{resource_id}")


def work_folder(registry: Path) -> Path:
    return registry.with_name(f"{registry.name}.work")


def sync(
    settings: SyncSettings,
    options: ClientOptions,
    *,
    progress: Progress | None = None,
    environ: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Run one sync under the registry's lock and return its run record."""
    config = settings.config
    if not isinstance(config, CohortConfig):
        config = load_config(config)
    try:
        with (
            closing(progress or NoProgress()) as shown,
            sync_lock(settings.registry),
            Registry(settings.registry, timeout=settings.busy_timeout) as registry,
        ):
            run_id = registry.start_run(
                {
                    "started": _now(),
                    "mode": settings.mode,
                    "server": settings.base_url,
                    "tool_version": tool_version(),
                    "mappings_version": mappings_version(config.mappings),
                }
            )
            try:
                _Run(settings, options, config, registry, run_id, shown, environ).run()
            except BaseException as error:
                registry.rollback()
                _record_failure(registry, run_id, _as_registry_error(error, settings.registry))
                raise
            return registry.run(run_id)
    except sqlite3.OperationalError as error:
        raise _as_registry_error(error, settings.registry) from None


def _record_failure(registry: Registry, run_id: int, error: BaseException) -> None:
    message = str(error) if isinstance(error, FhirHccError) else type(error).__name__
    try:
        registry.finish_run(run_id, {"status": "failed", "finished": _now(), "message": message})
    except sqlite3.OperationalError:  # still locked: the next run marks it interrupted
        log.warning("could not record run %d as failed: the registry is locked", run_id)


def _as_registry_error(error: BaseException, path: Path) -> BaseException:
    """Another writer that held the registry past the lock timeout, as a clear error (exit 7).
    Readers never hold a sync up (WAL), except while it upgrades a schema-1 file."""
    if isinstance(error, sqlite3.OperationalError) and is_locked(error):
        return RegistryError(
            f"{path}: another process kept the registry locked too long to write (an SQLite "
            "shell inside a write transaction?); this sync kept nothing"
        )
    return error


class _Run:
    def __init__(
        self,
        settings: SyncSettings,
        options: ClientOptions,
        config: CohortConfig,
        registry: Registry,
        run_id: int,
        progress: Progress,
        environ: Mapping[str, str] | None,
    ) -> None:
        self.settings = settings
        self.options = options
        self.config = config
        self.mappings = load_mappings(config.mappings)
        self.registry = registry
        self.run_id = run_id
        self.progress = progress
        self.environ = environ
        self.export_dir = work_folder(settings.registry) / "export"
        self.previous = registry.last_run("ok")
        self.pending = False  # whether this run writes an export an interrupted run fetched
        self.profile: Profile | None = None  # chosen once the run has the server's metadata
        self.left: list[str] = []  # patients of the registry no longer on the case list

    def run(self) -> None:
        asyncio.run(self._run(time.monotonic()))

    async def _run(self, started: float) -> None:
        async with FhirClient(self.settings.base_url, self.options, environ=self.environ) as client:
            await self._sync(client, started)

    async def _sync(self, client: FhirClient, started: float) -> None:
        pending = self._pending_export()
        self.pending = pending is not None
        mode, manifest = pending or await self._fetch(client)
        self.registry.begin(self.run_id)
        result = ingest(
            self.registry,
            self.run_id,
            files_by_type(self.export_dir, manifest["files"]),
            complete=mode not in INCREMENTAL_MODES and _complete(manifest),
        )
        apply_deletions(self.registry, manifest.get("deleted", []), result)
        if mode == "search-incremental" and "patientIds" in manifest.get("population", {}):
            self._drop_unlisted(set(manifest["population"]["patientIds"]), result)
        cohort = self._snapshot() if self.settings.snapshot else None
        if mode == "incremental" and cohort is not None:
            cohort = await self._backfill(client, cohort, result)
        if cohort is not None:
            self.registry.save_cohort(self.run_id, cohort)
        self.registry.finish_run(self.run_id, self._record(mode, manifest, result, started))
        self.registry.commit()
        shutil.rmtree(self.export_dir, ignore_errors=True)

    def _pending_export(self) -> tuple[str, dict[str, Any]] | None:
        """A finished export of this server that a killed run did not get to write."""
        manifest = read_manifest(self.export_dir)
        if manifest is None:
            return None
        if manifest.get("server", {}).get("baseUrl") != self.settings.base_url.rstrip("/"):
            return None
        mode = mode_of(manifest)
        if mode is None:
            log.info("ignoring a fetched export of unknown mode; fetching anew")
            return None
        log.info("writing the export a previous run fetched but did not write")
        return mode, manifest

    async def _fetch(self, client: FhirClient) -> tuple[str, dict[str, Any]]:
        search_codes = self.mappings.search_codes()
        self.profile, _ = await apply_profile(client, self.environ)
        mode = await self._mode(client)
        if mode in ("search", "search-incremental"):
            incremental = mode == "search-incremental"
            manifest = await run_pull(
                client,
                search_codes,
                self.export_dir,
                population=self._population(),
                progress=self.progress,
                since=self._search_since() if incremental else None,
                known_patients=sorted(self.registry.hashes("Patient")) if incremental else (),
                environ=self.environ,
            )
            return mode, manifest
        request = ExportRequest(
            type_filters=type_filters(search_codes) if self.settings.type_filter else (),
            since=self.previous["transaction_time"]
            if mode == "incremental" and self.previous
            else None,
            group=self.settings.group,
        )
        manifest = await run_export(
            client, request, self.export_dir, profile=self.profile, progress=self.progress
        )
        return mode, manifest

    async def _mode(self, client: FhirClient) -> str:
        assert self.profile is not None
        requested = self.settings.mode
        bulk = None
        if requested in ("auto", "incremental"):
            level = "Group" if self.settings.group else "system"
            offered = supports_export(await client.capability(), level)
            bulk = offered and level in self.profile.bulk_levels and not self.settings.population
        mode = choose_mode(requested, bulk, self.previous is not None)
        if requested in INCREMENTAL_MODES and mode not in INCREMENTAL_MODES:
            log.info("no earlier successful run: this incremental sync fetches everything")
        if mode == "search-incremental" and not self.profile.last_updated:
            log.info(
                "server profile %s has no _lastUpdated: every patient is fetched again and "
                "compared by content hash",
                self.profile.name,
            )
            mode = "search"
        return mode

    def _population(self) -> Population | None:
        """The case list of a search run: the one given, or the Group's members."""
        if self.settings.population is not None:
            return self.settings.population
        return caselist.group(self.settings.group) if self.settings.group else None

    def _drop_unlisted(self, listed: set[str], result: IngestResult) -> None:
        """A search-incremental run of a case list: patients no longer on it leave."""
        self.left = sorted(set(self.registry.hashes("Patient")) - listed)
        if self.left:
            apply_deletions(self.registry, self.registry.patient_resources(self.left), result)

    def _search_since(self) -> str:
        """The last good run's time, less the overlap that covers clock skew."""
        assert self.previous is not None
        last = datetime.fromisoformat(self.previous["transaction_time"])
        since = last - timedelta(seconds=self.settings.search_overlap)
        return since.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")

    def _snapshot(self) -> dict[str, dict[str, Any]]:
        result = build_cohort(RegistrySource(self.registry), self.config, mappings=self.mappings)
        rows = records(result.table)
        return {str(row["patient_id"]): row for row in rows}

    async def _backfill(
        self, client: FhirClient, cohort: dict[str, dict[str, Any]], result: IngestResult
    ) -> dict[str, dict[str, Any]]:
        """Patients new to the registry or the cohort get their whole history by search.

        A `_since` export leaves out what such a patient had before (a Group export, for one, may
        send only the new resources of a patient added to the Group); unchanged resources that
        come again are not rewritten.
        """
        before = set(self.registry.cohort(self.previous["id"])) if self.previous else set()
        patients = sorted(result.new_patients | (set(cohort) - before))
        if not patients:
            return cohort
        folder = work_folder(self.settings.registry) / "backfill"
        files = await self._fetch_patients(client, patients, folder)
        writes = result.writes
        ingest(
            self.registry, self.run_id, files_by_type(folder, files), complete=False, result=result
        )
        shutil.rmtree(folder, ignore_errors=True)
        return self._snapshot() if result.writes > writes else cohort

    async def _fetch_patients(
        self, client: FhirClient, patients: Sequence[str], folder: Path
    ) -> dict[str, str]:
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        writer = NdjsonWriter(folder)
        profile, _ = await apply_profile(client, self.environ)
        puller = Puller(Plan(client, self.mappings.search_codes(), profile), writer, NoProgress())
        await puller.fetch_patient_data(list(patients))
        await puller.fetch_medications()
        writer.close()
        return writer.file_names()

    def _record(
        self, mode: str, manifest: dict[str, Any], result: IngestResult, started: float
    ) -> dict[str, Any]:
        complete = _complete(manifest)
        problems = manifest.get("errors", []) + [str(gap) for gap in manifest.get("gaps", [])]
        message = (
            f"{result.writes} writes in {time.monotonic() - started:.1f} s"
            if complete
            else f"partial data: {len(problems)} problems, first: {problems[0]}"
        )
        if mode == "search-incremental":
            message += "; searches do not see deletions (a `search` run finds them)"
        if self.left:
            message += f"; {len(self.left)} patients left the case list"
        if result.problems:
            message += f"; {len(result.problems)} lines not stored, first: {result.problems[0]}"
        if self.pending:
            message += "; wrote the export of an interrupted run"
        elif manifest.get("resumed"):
            message += "; resumed the export of an interrupted run"
        return {
            "finished": _now(),
            "mode": mode,
            "since": _since_of(manifest),
            "transaction_time": manifest.get("transactionTime") or manifest.get("started"),
            "status": "ok" if complete else "partial",
            "counts": result.record(),
            "message": message,
        }


def choose_mode(requested: str, bulk: bool | None, has_previous: bool) -> str:
    """The mode a run uses: `auto` and `incremental` follow the server (`bulk`: whether it
    offers `$export`); an incremental run without an earlier good run fetches everything."""
    mode = requested
    if requested == "auto":
        mode = "full" if bulk else "search"
    elif requested == "incremental" and not bulk:
        mode = "search-incremental"
    if mode in INCREMENTAL_MODES and not has_previous:
        return "full" if mode == "incremental" else "search"
    return mode


def mappings_version(extra: Sequence[str | Path] = ()) -> str:
    """A digest of the mapping files in use, so a run records which code lists it applied."""
    digest = hashlib.sha256()
    for directory in mapping_directories(extra):
        for path in sorted(Path(directory).glob("*.toml")):
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def _complete(manifest: dict[str, Any]) -> bool:
    return bool(manifest.get("complete", True)) and not manifest.get("gaps")


def _since_of(manifest: dict[str, Any]) -> str | None:
    """The `_since` of an incremental export, or the `_lastUpdated` bound of a search pull."""
    return (manifest.get("request") or {}).get("since") or manifest.get("since")


def mode_of(manifest: dict[str, Any]) -> str | None:
    """The sync mode that fetched `manifest` (None if unknown), to write it after a crash: an
    incremental fetch must never be taken for a complete one, which would delete the rest."""
    match manifest.get("mode"):
        case "bulk":
            return "incremental" if _since_of(manifest) else "full"
        case "search":
            return "search-incremental" if _since_of(manifest) else "search"
    return None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
