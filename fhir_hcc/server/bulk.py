"""Bulk Data `$export`: kick-off, polling, streamed downloads, and a resumable status URL.

1. Kick-off at system, `Patient` or `Group/{id}` level with `Prefer: respond-async`, `_type`,
   `_typeFilter` (Observations narrowed to the mapping codes) and `_since`; a query longer than
   `max_url_length` is POSTed as a Parameters resource instead (Bulk Data 2.0), and sent as a
   GET after all when the server refuses that POST (a 4xx but 401/403/429, or 501); a GET
   refused as too long (414, 431) is sent again without `_typeFilter`.
2. The status URL is saved in a staging folder beside the output (`<out>.bulk-partial/`), so an
   interrupted export polls the same job again instead of starting over; a status URL that has
   expired (404/410) starts a new export once.
3. Polling honours `Retry-After` up to `max_retry_wait` and shows `X-Progress`; a 429 or 5xx
   while polling is retried by the client. After `export_timeout` seconds of waiting the run
   stops with IncompleteDataError and keeps the status URL, so the next run polls the same job.
4. The output files are downloaded concurrently and streamed to disk (kept gzip-compressed when
   the server sends them so); a download cut short is retried from the start, and the line count
   must match the manifest's `count`. Downloads finished before an interruption are kept.
5. `error` files are summarised in the manifest, `deleted` files become a list of `Type/id`, and
   the job is DELETEd on the server. The files then replace the previous pull in `out_dir`
   (manifest last), where `FileSource` reads them like any NDJSON folder.
"""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
import time
import zlib
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import orjson

from fhir_hcc.errors import ConfigError, FhirHccError
from fhir_hcc.fhir.ndjson import UnreadableFile, read_lines
from fhir_hcc.fhir.types import COHORT_TYPES, PATIENT_TYPES
from fhir_hcc.server.auth import Credentials
from fhir_hcc.server.batching import token
from fhir_hcc.server.client import (
    FhirClient,
    FhirResponse,
    outcome_summary,
    retry_after,
    status_error,
)
from fhir_hcc.server.errors import IncompleteDataError
from fhir_hcc.server.options import ClientOptions
from fhir_hcc.server.output import (
    export_staging,
    manifest_header,
    publish,
    refuse_foreign,
    request_figures,
)
from fhir_hcc.server.profile import Profile
from fhir_hcc.server.progress import NoProgress, Progress
from fhir_hcc.server.puller import MEDICATION_USE_TYPES, Plan, Puller, apply_profile
from fhir_hcc.server.writer import NdjsonWriter

log = logging.getLogger(__name__)

EXPORT_TYPES = COHORT_TYPES
STATE = "bulk-state.json"
EXPIRED_STATUSES = frozenset({404, 410})
URL_TOO_LONG = frozenset({414, 431})  # URI Too Long; Request Header Fields Too Large
_INSTANT = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)")
FIRST_POLL_WAIT = 1.0  # seconds, doubled per poll while the server gives no Retry-After
Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True)
class ExportRequest:
    """What to export; `group` selects Group level, `patient_level` Patient level."""

    types: tuple[str, ...] = EXPORT_TYPES
    type_filters: tuple[str, ...] = ()
    since: str | None = None
    group: str | None = None
    patient_level: bool = False

    def __post_init__(self) -> None:
        if self.group is not None and self.patient_level:
            raise ConfigError("choose a Group or Patient level export, not both")
        if self.since is not None and not _INSTANT.fullmatch(self.since):
            raise ConfigError(
                f"_since {self.since!r} is not a FHIR instant with a time zone, "
                "e.g. 2026-01-01T00:00:00Z"
            )

    @property
    def level(self) -> str:
        """The kick-off level: system, Patient or Group (`fhir_hcc.fhir.capability`)."""
        if self.group is not None:
            return "Group"
        return "Patient" if self.patient_level else "system"

    @property
    def path(self) -> str:
        if self.group is not None:
            return f"Group/{self.group}/$export"
        return "Patient/$export" if self.patient_level else "$export"

    def params(self) -> list[tuple[str, str]]:
        params = [("_type", ",".join(self.types))]
        params += [("_typeFilter", type_filter) for type_filter in self.type_filters]
        return params + ([("_since", self.since)] if self.since else [])

    def parameters(self) -> dict[str, Any]:
        """The same request as the body of a POST kick-off."""
        value_type = {"_since": "valueInstant"}
        return {
            "resourceType": "Parameters",
            "parameter": [
                {"name": name, value_type.get(name, "valueString"): value}
                for name, value in self.params()
            ],
        }


def type_filters(search_codes: Mapping[str, Sequence[tuple[str, str]]]) -> tuple[str, ...]:
    """`_typeFilter` queries that narrow Observations to the mapping codes.

    Conditions are not narrowed: the Condition mapper also reads hepatitis B, secondary cancer
    and transplant conditions, which the search codes (HCC only) would drop.
    """
    codes = search_codes.get("Observation", ())
    if not codes:
        return ()
    # _typeFilter is itself a comma-separated list, so the query inside is percent-encoded.
    tokens = ",".join(token(system, code) for system, code in codes)
    return ("Observation?code=" + quote(tokens, safe=""),)


@dataclass
class _State:
    """What survives an interruption: the job's status URL and the files already on disk."""

    base_url: str
    request: dict[str, Any]
    status_url: str
    kicked_off: float
    kick_off_method: str = "GET"  # or POST, or GET without _typeFilter (the manifest's kickOff)
    manifest: dict[str, Any] | None = None  # the server's, once the export is complete
    downloaded: dict[str, int] = field(default_factory=dict)  # local file name -> lines

    def save(self, staging: Path) -> None:
        staged = staging / f"{STATE}.tmp"
        staged.write_bytes(orjson.dumps(asdict(self)))
        staged.replace(staging / STATE)

    @classmethod
    def load(cls, staging: Path) -> _State | None:
        try:
            return cls(**orjson.loads((staging / STATE).read_bytes()))
        except (OSError, orjson.JSONDecodeError, TypeError):
            return None


@dataclass(frozen=True)
class _OutputFile:
    resource_type: str
    url: str
    count: int | None
    name: str  # local name without suffix, e.g. Observation.2


class _Export:
    def __init__(
        self,
        client: FhirClient,
        request: ExportRequest,
        staging: Path,
        progress: Progress,
        sleep: Sleep,
    ) -> None:
        self.client = client
        self.request = request
        self.staging = staging
        self.progress = progress
        self.sleep = sleep
        self.resumed = False

    async def run(self) -> _State:
        state = self._resumable_state()
        if state is None:
            state = await self._kick_off()
        if state.manifest is None:
            state = await self._wait_for_manifest(state)
        await self._download(state)
        return state

    def _resumable_state(self) -> _State | None:
        state = _State.load(self.staging)
        if state is not None and (state.base_url, state.request) == (
            self.client.base_url,
            _request_key(self.request),
        ):
            self.resumed = True
            log.info("resuming the export at %s", state.status_url)
            return state
        _reset(self.staging)
        return None

    async def _kick_off(self) -> _State:
        response, method, what = await self._send_kick_off()
        if response.status != 202:
            if response.status < 300:
                raise IncompleteDataError(f"{what}: HTTP {response.status} instead of 202")
            raise status_error(response.status, response.body, what)
        status_url = response.headers.get("Content-Location")
        if not status_url:
            raise IncompleteDataError(f"{what}: 202 without a Content-Location status URL")
        state = _State(
            self.client.base_url, _request_key(self.request), status_url, time.time(), method
        )
        state.save(self.staging)
        return state

    async def _send_kick_off(self) -> tuple[FhirResponse, str, str]:
        """POST when the query is too long for a URL, else (or when POST is unknown) GET."""
        url = self.client.url(self.request.path)
        params = self.request.params()
        if len(str(httpx.URL(url, params=params))) > self.client.options.max_url_length:
            what = f"POST {self.request.path} (Parameters)"
            response = await self.client.fetch(
                "POST", url, resource=self.request.parameters(), prefer="respond-async"
            )
            if not _refused(response.status):
                return response, "POST", what
            log.warning("%s: HTTP %d; kicking off with a long GET", what, response.status)
        response = await self.client.fetch("GET", url, params=params, prefer="respond-async")
        what = self.client.describe("GET", url, params)
        if response.status not in URL_TOO_LONG or not self.request.type_filters:
            return response, "GET", what
        # The filter only saves volume (the mappers skip unmapped Observations): drop it.
        log.warning("%s: HTTP %d; kicking off again without _typeFilter", what, response.status)
        method = f"GET without _typeFilter (HTTP {response.status} with it)"
        params = replace(self.request, type_filters=()).params()
        response = await self.client.fetch("GET", url, params=params, prefer="respond-async")
        return response, method, self.client.describe("GET", url, params)

    async def _wait_for_manifest(self, state: _State) -> _State:
        wait = FIRST_POLL_WAIT
        waited = 0.0  # polls (with their retries) as timed, plus the waits between them
        shown = None
        while True:
            asked = time.monotonic()
            response = await self.client.fetch("GET", state.status_url)
            waited += time.monotonic() - asked
            if response.status == 200:
                state.manifest = _checked_manifest(response.body, state.status_url)
                state.save(self.staging)
                return state
            if response.status in EXPIRED_STATUSES and self.resumed:
                log.warning("the saved export status URL has expired; starting a new export")
                self.resumed = False
                _reset(self.staging)
                state = await self._kick_off()
                continue
            if response.status != 202:
                raise status_error(
                    response.status, response.body, f"export status {state.status_url}"
                )
            progress = response.headers.get("X-Progress")
            if progress and progress != shown:
                shown = progress
                self.progress.phase(f"export in progress ({progress[:60]})", 0)
            wait = self._poll_wait(response, wait)
            timeout = self.client.options.export_timeout
            if waited + wait > timeout:
                raise IncompleteDataError(
                    f"export status {state.status_url}: not ready after {waited:.0f} s of "
                    f"waiting (export timeout {timeout:.0f} s); the next run polls the same job"
                )
            waited += wait
            await self.sleep(wait)

    def _poll_wait(self, response: FhirResponse, previous: float) -> float:
        """The server's Retry-After up to the cap; else a doubling wait up to the same cap."""
        cap = self.client.options.max_retry_wait
        asked = retry_after(response.headers.get("Retry-After"), time.time())
        return min(asked if asked is not None else previous * 2, cap)

    async def _download(self, state: _State) -> None:
        assert state.manifest is not None
        files = list(_output_files(state.manifest.get("output", []), ""))
        files += _output_files(state.manifest.get("deleted", []), "deleted.")
        files += _output_files(state.manifest.get("error", []), "error.")
        wanted = [f for f in files if _stored_name(f, state) is None]
        self.progress.phase("download", len(wanted), unit="files")
        try:
            async with asyncio.TaskGroup() as group:
                for output in wanted:
                    group.create_task(self._download_one(output, state))
        except* FhirHccError as failures:
            raise failures.exceptions[0] from None

    async def _download_one(self, output: _OutputFile, state: _State) -> None:
        part = self.staging / f"{output.name}.part"
        response = await self.client.download(output.url, part)
        if response.status >= 300:
            raise status_error(response.status, response.body, f"GET {output.url}")
        encoding = response.headers.get("Content-Encoding", "identity").lower()
        if encoding not in ("identity", "gzip"):
            raise IncompleteDataError(f"GET {output.url}: unsupported encoding {encoding}")
        path = self.staging / f"{output.name}.ndjson{'.gz' if encoding == 'gzip' else ''}"
        lines = _count_lines(part, output.url, gzipped=encoding == "gzip")
        if output.count is not None and lines != output.count:
            part.unlink()
            raise IncompleteDataError(
                f"GET {output.url}: {lines} lines, but the manifest says {output.count}"
            )
        part.replace(path)
        state.downloaded[path.name] = lines
        state.save(self.staging)
        self.progress.advance(lines, self.client.stats)


def _refused(status: int) -> bool:
    """A 4xx that may mean "no POST kick-off here" (not one about credentials or load)."""
    return (400 <= status < 500 and status not in (401, 403, 429)) or status == 501


def _request_key(request: ExportRequest) -> dict[str, Any]:
    return orjson.loads(orjson.dumps(asdict(request)))  # tuples as lists, as saved in JSON


def _reset(staging: Path) -> None:
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)


def _checked_manifest(body: Any, status_url: str) -> dict[str, Any]:
    if not isinstance(body, dict) or not isinstance(body.get("output"), list):
        raise IncompleteDataError(f"export status {status_url}: 200 without an output list")
    if not isinstance(body.get("transactionTime"), str):
        raise IncompleteDataError(f"export status {status_url}: no transactionTime")
    return body


def _output_files(entries: list[Any], prefix: str) -> Iterator[_OutputFile]:
    parts: dict[str, int] = {}
    for entry in entries:
        if not isinstance(entry, dict) or not entry.get("url") or not entry.get("type"):
            raise IncompleteDataError(f"export manifest: output entry without type or url: {entry}")
        resource_type = str(entry["type"])
        parts[resource_type] = parts.get(resource_type, 0) + 1
        count = entry.get("count")
        name = f"{prefix}{resource_type}.{parts[resource_type]}"
        yield _OutputFile(
            resource_type, entry["url"], count if isinstance(count, int) else None, name
        )


def _stored_name(output: _OutputFile, state: _State) -> str | None:
    for suffix in (".ndjson", ".ndjson.gz"):
        if f"{output.name}{suffix}" in state.downloaded:
            return f"{output.name}{suffix}"
    return None


def _count_lines(path: Path, url: str, *, gzipped: bool) -> int:
    """Non-blank lines; a gzip stream cut short is an incomplete download."""
    inflate = zlib.decompressobj(wbits=31) if gzipped else None
    lines = 0
    last = b"\n"
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            data = inflate.decompress(chunk) if inflate else chunk
            if data:
                lines += data.count(b"\n")
                last = data[-1:]
    if inflate is not None and not inflate.eof:
        raise IncompleteDataError(f"GET {url}: the gzip stream ends early")
    return lines + (last != b"\n")


def _read_lines(path: Path) -> Iterator[dict[str, Any]]:
    try:
        for number, line in read_lines(path):
            try:
                yield orjson.loads(line)
            except orjson.JSONDecodeError:
                raise IncompleteDataError(f"{path.name}:{number}: malformed JSON") from None
    except UnreadableFile as error:
        raise IncompleteDataError(f"{path.name}: {error}") from None


def _deleted_references(path: Path) -> list[str]:
    """`Type/id` of every DELETE entry in a Bulk Data `deleted` file (Bundles of requests)."""
    references = []
    for bundle in _read_lines(path):
        for entry in bundle.get("entry", []):
            request = entry.get("request") or {}
            url = str(request.get("url", "")).split("?")[0].strip("/")
            if request.get("method") == "DELETE" and url.count("/") == 1:
                references.append(url)
    return references


def _error_summaries(path: Path) -> list[str]:
    return [
        outcome_summary(outcome) or "error entry without issues" for outcome in _read_lines(path)
    ]


def _finish(staging: Path, state: _State) -> tuple[dict[str, str], list[str], list[str]]:
    """Move the NDJSON data aside from the deleted and error files and read those two."""
    files, deleted, errors = {}, [], []
    for name in sorted(state.downloaded):
        path = staging / name
        if name.startswith("deleted."):
            deleted += _deleted_references(path)
            path.unlink()
        elif name.startswith("error."):
            errors += _error_summaries(path)
            path.unlink()
        else:
            files[name.split(".ndjson")[0]] = name
    (staging / STATE).unlink()
    return files, deleted, errors


async def run_export(
    client: FhirClient,
    request: ExportRequest,
    out_dir: Path,
    *,
    profile: Profile | None = None,
    progress: Progress | None = None,
    sleep: Sleep = asyncio.sleep,
) -> dict[str, Any]:
    """Export into `out_dir` with an open client and return the written manifest.

    With a server `profile` its bulk rules apply: the export must be at a level it offers, and
    the types it leaves out of exports (Oracle: MedicationAdministration and Medication; Epic:
    Medication) are fetched afterwards by the search plan, per exported patient and by id.
    """
    started = time.time()
    staging = export_staging(out_dir)
    refuse_foreign(out_dir)
    progress = progress or NoProgress()
    left_out: tuple[str, ...] = ()
    if profile is not None:
        _check_level(request, profile)
        left_out = tuple(t for t in request.types if t in profile.unexported)
        request = replace(request, types=tuple(t for t in request.types if t not in left_out))
    export = _Export(client, request, staging, progress, sleep)
    state = await export.run()
    assert state.manifest is not None
    await _delete_job(client, state.status_url)
    files, deleted, errors = _finish(staging, state)
    counts = _counts(files, state)
    warnings: list[str] = []
    if left_out:
        assert profile is not None
        crawled = await _fetch_left_out(client, profile, staging, files, left_out, warnings)
        files |= crawled.file_names()
        counts |= crawled.counts
    manifest = _manifest(client, request, state, files, counts, deleted, errors, started)
    manifest |= {"resumed": export.resumed, "searched": list(left_out), "warnings": warnings}
    publish(staging, out_dir, manifest)
    return manifest


def _check_level(request: ExportRequest, profile: Profile) -> None:
    if request.level not in profile.bulk_levels:
        rule = profile.rules["bulk.levels"]
        offered = " or ".join(profile.bulk_levels)
        raise ConfigError(
            f"server profile {profile.name!r} exports only at {offered} level ({rule.source}); "
            + ("give --group ID" if "Group" in profile.bulk_levels else "use searches")
        )


async def _fetch_left_out(
    client: FhirClient,
    profile: Profile,
    staging: Path,
    files: dict[str, str],
    left_out: tuple[str, ...],
    warnings: list[str],
) -> NdjsonWriter:
    """The types the export left out, by the search plan: per exported patient, and the
    Medications the exported resources reference."""
    writer = NdjsonWriter(staging)  # `Type.ndjson` beside the export's `Type.N.ndjson`
    patient_types = [t for t in left_out if t in PATIENT_TYPES]
    puller = Puller(Plan(client, {}, profile, types=patient_types), writer, NoProgress())
    patients: set[str] = set()
    for resource in _exported(staging, files, {"Patient", "Medication", *MEDICATION_USE_TYPES}):
        if resource["resourceType"] in MEDICATION_USE_TYPES:
            puller.note_medication(resource)
        else:
            writer.written_elsewhere(resource["resourceType"], [resource["id"]])
            if resource["resourceType"] == "Patient":
                patients.add(resource["id"])
    if patient_types:
        await puller.fetch_patient_data(sorted(patients))
    if "Medication" in left_out:
        await puller.fetch_medications()
    writer.close()
    warnings += puller.log.warnings
    return writer


def _exported(staging: Path, files: dict[str, str], types: set[str]) -> Iterator[dict[str, Any]]:
    for name in files.values():
        if name.split(".")[0] in types:
            yield from _read_lines(staging / name)


def _counts(files: dict[str, str], state: _State) -> dict[str, int]:
    counts: dict[str, int] = {}
    for name in files.values():
        resource_type = name.split(".")[0]
        counts[resource_type] = counts.get(resource_type, 0) + state.downloaded[name]
    return counts


async def bulk_export(
    base_url: str,
    request: ExportRequest,
    options: ClientOptions,
    out_dir: Path,
    *,
    credentials: Credentials | None = None,
    progress: Progress | None = None,
    environ: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """`$export` into `out_dir` (resuming a saved job) under the server's profile, and return
    the manifest."""
    try:
        async with FhirClient(base_url, options, credentials, environ=environ) as client:
            profile, _ = await apply_profile(client, environ)
            return await run_export(client, request, out_dir, profile=profile, progress=progress)
    finally:
        if progress is not None:
            progress.close()


async def _delete_job(client: FhirClient, status_url: str) -> None:
    """Tell the server the files may go; failing to is worth a warning, not a failed export."""
    try:
        response = await client.fetch("DELETE", status_url)
    except FhirHccError as error:
        log.warning("could not DELETE the finished export: %s", error)
        return
    if response.status >= 300 and response.status not in EXPIRED_STATUSES:
        log.warning("DELETE of the finished export answered HTTP %d", response.status)


def _manifest(
    client: FhirClient,
    request: ExportRequest,
    state: _State,
    files: dict[str, str],
    counts: dict[str, int],
    deleted: list[str],
    errors: list[str],
    started: float,
) -> dict[str, Any]:
    assert state.manifest is not None
    return manifest_header(client, "bulk", started) | {
        "complete": not errors,
        "request": _request_key(request),
        "kickOff": state.kick_off_method,
        "transactionTime": state.manifest["transactionTime"],
        "counts": dict(sorted(counts.items())),
        "files": files,
        "deleted": deleted,
        "errors": errors,
        "requests": request_figures(client),
        "gaps": [],
    }
