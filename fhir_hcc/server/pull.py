"""The pull plan: find candidate patients by code, then fetch what the cohort needs, in batches.

1. Candidates: Condition and Procedure token searches with the mapping codes, several codes per
   request; the patients they reference are the candidates.
2. Per batch of candidates (`patient=a,b,c`, sized under the URL limit): the Patient and every
   type the mappers read of a patient (`fhir_hcc.fhir.types.PATIENT_TYPES`; Observations with
   mapped codes only). A server that refuses lists gets `POST [type]/_search`, then one patient
   per request; the downgrade sticks for that resource type.
3. The Medications that the medication administrations, statements and requests reference.

An incremental pull (`since`, `known_patients`) asks only for what changed after `since`
(`_lastUpdated=gt`): candidates by code, and the resources of the patients the registry already
holds; a candidate it does not hold yet gets its whole history. Searches cannot see deletions.

Output: `<Type>.ndjson` per type and `manifest.json` (server, FHIR version, queries, counts,
time, tool version; no secrets). Files appear only when the pull is complete.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import shutil
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from fhir_hcc.errors import FhirHccError
from fhir_hcc.fhir.capability import fhir_version
from fhir_hcc.fhir.references import Reference, parse_reference, subject_of
from fhir_hcc.fhir.types import FETCHED_BY_ID, PATIENT_TYPES
from fhir_hcc.server.auth import Credentials
from fhir_hcc.server.batching import code_lists, pack, token
from fhir_hcc.server.client import FhirClient, Params
from fhir_hcc.server.errors import IncompleteDataError, ServerRefusedError
from fhir_hcc.server.options import ClientOptions
from fhir_hcc.server.output import manifest_header, publish, request_figures, search_staging
from fhir_hcc.server.paging import SearchRequest, SearchResult, Sink, run_search
from fhir_hcc.server.progress import NoProgress, Progress
from fhir_hcc.server.writer import NdjsonWriter

log = logging.getLogger(__name__)

CANDIDATE_TYPES = ("Condition", "Procedure")  # their mapping codes make a patient a candidate
CODE_FILTERED_TYPES = frozenset({"Observation"})  # everything else: all of a patient's resources
# The types whose `medicationReference` names a Medication to fetch by id.
MEDICATION_USE_TYPES = frozenset(
    {"MedicationAdministration", "MedicationStatement", "MedicationRequest"}
)


class Strategy(enum.IntEnum):
    """How a list of ids is sent; a refusal moves a resource type to the next one."""

    GET_LIST = 0
    POST_LIST = 1
    ONE_PER_REQUEST = 2

    @property
    def label(self) -> str:
        return self.name.lower().replace("_", "-")


@dataclass
class PullLog:
    """What the manifest reports: every search, warning and recorded gap."""

    searches: list[SearchResult] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def warn(self, message: str) -> None:
        log.warning("%s", message)
        self.warnings.append(message)


class Puller:
    def __init__(
        self,
        client: FhirClient,
        search_codes: Mapping[str, Sequence[tuple[str, str]]],
        writer: NdjsonWriter,
        progress: Progress,
    ) -> None:
        self.client = client
        self.options = client.options
        self.search_codes = search_codes
        self.writer = writer
        self.progress = progress
        self.log = PullLog()
        self.strategies: dict[str, Strategy] = {}
        self.medication_ids: set[str] = set()

    # -- phases ----------------------------------------------------------------------------
    async def find_candidates(self, since: str | None = None) -> list[str]:
        candidates: set[str] = set()
        requests = [
            SearchRequest(
                resource_type, [("code", codes), *_changed_since(since), ("_count", self._count)]
            )
            for resource_type in CANDIDATE_TYPES
            for codes in self._code_lists(resource_type)
        ]
        self.progress.phase("candidates", len(requests))

        def collect(resource: dict[str, Any], mode: str) -> None:
            patient = self._patient_of(resource)
            if mode == "match" and patient is not None:
                candidates.add(patient)

        await _all(self._search(request, collect) for request in requests)
        return sorted(candidates)

    async def fetch_patient_data(self, patients: list[str], since: str | None = None) -> None:
        """Everything the cohort reads of `patients`, or what changed after `since`."""
        work = [
            (resource_type, [*_code_params(codes), *_changed_since(since)])
            for resource_type in ("Patient", *PATIENT_TYPES)
            for codes in self._code_filters(resource_type)
        ]
        batches = pack(patients, self._fits_every(work), self.options.batch_size)
        name = "changes of known patients" if since else "patient data"
        self.progress.phase(name, len(batches) * len(work), len(patients))
        await _all(
            self._fetch_by_ids(resource_type, batch, extra)
            for batch in batches
            for resource_type, extra in work
        )
        if since is None:  # a Patient unchanged since `since` is rightly absent
            await self._recover_missing_patients(patients)

    async def fetch_medications(self) -> None:
        wanted = sorted(i for i in self.medication_ids if not self.writer.has("Medication", i))
        batches = pack(wanted, self._fits_every([("Medication", [])]), self.options.batch_size)
        self.progress.phase("medications", len(batches))
        await _all(self._fetch_by_ids("Medication", batch, []) for batch in batches)

    # -- one list of ids, with fallbacks ---------------------------------------------------
    async def _fetch_by_ids(self, resource_type: str, ids: list[str], extra: Params) -> None:
        sink = self._sink(resource_type, set(ids))
        strategy = self.strategies.get(resource_type, Strategy.GET_LIST)
        while True:
            try:
                if strategy is Strategy.ONE_PER_REQUEST:
                    for one in ids:
                        await self._search(self._by_ids(resource_type, [one], extra, False), sink)
                else:
                    post = strategy is Strategy.POST_LIST
                    await self._search(self._by_ids(resource_type, ids, extra, post), sink)
                return
            except ServerRefusedError as refusal:
                if strategy is Strategy.ONE_PER_REQUEST:
                    raise
                strategy = Strategy(max(strategy + 1, self.strategies.get(resource_type, 0)))
                if self.strategies.get(resource_type) != strategy:
                    self.strategies[resource_type] = strategy
                    self.log.warn(f"{refusal}; now sending {resource_type} as {strategy.label}")

    def _by_ids(
        self, resource_type: str, ids: list[str], extra: Params, post: bool
    ) -> SearchRequest:
        id_param = "_id" if resource_type in FETCHED_BY_ID else "patient"
        params = [(id_param, ",".join(ids)), *extra, ("_count", self._count)]
        return SearchRequest(resource_type, params, post)

    async def _recover_missing_patients(self, candidates: list[str]) -> None:
        """A list search that silently returns fewer Patients gets asked one by one."""
        missing = [pid for pid in candidates if not self.writer.has("Patient", pid)]
        sink = self._sink("Patient", set(missing))
        for pid in missing:
            await self._search(self._by_ids("Patient", [pid], [], False), sink)
            if not self.writer.has("Patient", pid):
                self.log.warn(f"Patient/{pid} is referenced by a candidate resource but not found")

    async def _search(self, request: SearchRequest, sink: Sink) -> SearchResult:
        result = await run_search(self.client, request, sink, allow_gaps=self.options.allow_gaps)
        self.log.searches.append(result)
        self.log.warnings.extend(result.warnings)
        self.progress.advance(result.matches, self.client.stats)
        return result

    def _sink(self, resource_type: str, asked: set[str]) -> Sink:
        """Writes what arrives, after checking each match is one of the ids asked for."""

        def write(resource: dict[str, Any], mode: str) -> None:
            if mode == "match":
                self._check_asked(resource_type, resource, asked)
            if resource["resourceType"] in MEDICATION_USE_TYPES:
                self._note_medication(resource)
            self.writer.write(resource)

        return write

    def _check_asked(self, resource_type: str, resource: dict[str, Any], asked: set[str]) -> None:
        by_id = resource_type in FETCHED_BY_ID
        key = resource["id"] if by_id else self._patient_of(resource)
        if key not in asked:
            what = "was not asked for" if by_id else "belongs to a patient that was not asked for"
            raise IncompleteDataError(
                f"{resource['resourceType']}/{resource['id']} {what}: "
                f"the server may ignore the {'_id' if by_id else 'patient'} parameter"
            )

    def _note_medication(self, resource: dict[str, Any]) -> None:
        reference = (resource.get("medicationReference") or {}).get("reference")
        if not isinstance(reference, str) or reference.startswith("#"):
            return  # a code or a contained Medication (read in place): nothing to fetch
        target = parse_reference(reference)
        if target is not None and target.type == "Medication" and self._is_local(target):
            self.medication_ids.add(target.id)
        else:
            what = f"{resource['resourceType']}/{resource['id']}"
            self.log.warn(f"{what}: cannot follow {reference}")

    # -- helpers ---------------------------------------------------------------------------
    @property
    def _count(self) -> str:
        return str(self.options.page_size)

    def _patient_of(self, resource: dict[str, Any]) -> str | None:
        patient = subject_of(resource)
        return patient.id if patient is not None and self._is_local(patient) else None

    def _is_local(self, reference: Reference) -> bool:
        """Relative, or absolute on this server (another server's resources are not pulled)."""
        return reference.base in ("", self.client.base_url)

    def _code_lists(self, resource_type: str) -> list[str]:
        """Code lists that leave half of the URL length for patient ids."""
        codes = self.search_codes.get(resource_type, ())
        url = self.client.url(resource_type)
        return code_lists(url, codes, self.options.max_url_length // 2)

    def _code_filters(self, resource_type: str) -> list[str | None]:
        if resource_type in CODE_FILTERED_TYPES:
            return list(self._code_lists(resource_type))
        return [None]

    def _fits_every(self, work: Iterable[tuple[str, Params]]) -> Callable[[list[str]], bool]:
        """Whether an id list fits the URL of every planned search that will carry it."""
        requests = list(work)

        def fits(ids: list[str]) -> bool:
            for resource_type, extra in requests:
                params = self._by_ids(resource_type, ids, extra, False).params
                url = httpx.URL(self.client.url(resource_type), params=list(params))
                if len(str(url)) > self.options.max_url_length:
                    return False
            return True

        return fits


def _code_params(codes: str | None) -> Params:
    return [("code", codes)] if codes else []


def _changed_since(since: str | None) -> Params:
    return [("_lastUpdated", f"gt{since}")] if since else []


async def _all(coroutines: Iterable[Any]) -> None:
    """Run concurrently (the client's limiter bounds the requests); the first failure wins."""
    try:
        async with asyncio.TaskGroup() as group:
            for coroutine in coroutines:
                group.create_task(coroutine)
    except* FhirHccError as failures:
        raise failures.exceptions[0] from None


# -- the whole pull --------------------------------------------------------------------------
async def run_pull(
    client: FhirClient,
    search_codes: Mapping[str, Sequence[tuple[str, str]]],
    out_dir: Path,
    *,
    progress: Progress | None = None,
    since: str | None = None,
    known_patients: Sequence[str] = (),
) -> dict[str, Any]:
    """Pull into `out_dir` with an open client and return the written manifest; nothing is
    left behind on failure.

    With `since`, an incremental pull: what changed after it, for the candidates found by
    changed resources and for `known_patients`; new candidates get their whole history.
    """
    started = time.time()
    partial = search_staging(out_dir)
    writer = NdjsonWriter(partial)
    progress = progress or NoProgress()
    try:
        capability = await client.capability()
        puller = Puller(client, search_codes, writer, progress)
        _check_fhir_version(capability, puller.log)
        candidates = await puller.find_candidates(since)
        known = set(known_patients) if since else set()
        await puller.fetch_patient_data([p for p in candidates if p not in known])
        if known:
            await puller.fetch_patient_data(sorted(known), since)
        await puller.fetch_medications()
        writer.close()
        manifest = manifest_header(client, "search", started) | _manifest(
            client, puller, candidates, writer
        )
        manifest["since"] = since
        publish(partial, out_dir, manifest)
    except BaseException:
        writer.close()
        shutil.rmtree(partial, ignore_errors=True)
        raise
    finally:
        progress.close()
    return manifest


async def pull(
    base_url: str,
    search_codes: Mapping[str, Sequence[tuple[str, str]]],
    options: ClientOptions,
    out_dir: Path,
    *,
    credentials: Credentials | None = None,
    progress: Progress | None = None,
    environ: Mapping[str, str] | None = None,
    since: str | None = None,
    known_patients: Sequence[str] = (),
) -> dict[str, Any]:
    """`run_pull` with a client of its own (see `run_pull`)."""
    async with FhirClient(base_url, options, credentials, environ=environ) as client:
        return await run_pull(
            client,
            search_codes,
            out_dir,
            progress=progress,
            since=since,
            known_patients=known_patients,
        )


def _check_fhir_version(capability: dict[str, Any], pull_log: PullLog) -> None:
    version = fhir_version(capability)
    if version is None or not version.startswith("4."):
        pull_log.warn(f"the server's CapabilityStatement gives FHIR version {version}, not R4")


def _manifest(
    client: FhirClient, puller: Puller, candidates: list[str], writer: NdjsonWriter
) -> dict[str, Any]:
    options = client.options
    gaps = [result.record() for result in puller.log.searches if result.gap]
    return {
        "complete": not gaps,
        "options": {
            "auth": options.auth.mode,
            "strictHandling": options.strict_handling,
            "allowGaps": options.allow_gaps,
            "pageSize": options.page_size,
            "batchSize": options.batch_size,
            "concurrency": options.concurrency,
            "maxUrlLength": options.max_url_length,
        },
        "searchCodes": {
            resource_type: [token(system, code) for system, code in codes]
            for resource_type, codes in sorted(puller.search_codes.items())
        },
        "candidates": len(candidates),
        "counts": dict(sorted(writer.counts.items())),
        "files": writer.file_names(),
        "requests": request_figures(client),
        "strategies": {name: strategy.label for name, strategy in puller.strategies.items()},
        "queries": [result.record() for result in puller.log.searches],
        "warnings": puller.log.warnings,
        "gaps": gaps,
    }
