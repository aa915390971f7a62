"""The pull plan: the starting population, then what the cohort needs of each patient.

1. The population: a case list the user gives (`--patients`, `--identifiers`, `--group`; see
   `fhir_hcc.server.caselist`), or, where the server profile allows searches without a patient,
   the candidates found by Condition and Procedure token searches with the mapping codes.
   Without a list on a server that refuses population searches the pull stops at once with a
   message naming the three options (`CaseListRequired`), before any file is written.
2. Per patient, or per batch of patients where the profile allows lists (`patient=a,b,c`, sized
   under the URL limit): the Patient and every type the mappers read of a patient
   (`fhir_hcc.fhir.types.PATIENT_TYPES`, less those the CapabilityStatement or the profile rules
   out; Observations with mapped codes only). Batches (single patients on an EHR) run through
   `concurrency` workers. A refused list falls back to `POST [type]/_search` (where allowed),
   then to one patient per request; the first request of each type goes alone, so no request
   is refused more than once per type. A Patient `link` of type `replaced-by` or `replaces` (a
   merge) brings the other record and its whole history in too.
3. The Medications that medication administrations, statements and requests reference, by `_id`
   lists, or one read per Medication where lists are refused; contained ones are read in place.

An incremental pull (`since`, `known_patients`) asks only for what changed after `since`
(`_lastUpdated`, with the profile's prefix): candidates by code (or the listed patients), and
the resources of the patients the registry already holds; a patient it does not hold yet gets
its whole history. Searches cannot see deletions.

Output: `<Type>.ndjson` per type and `manifest.json` (server, profile, population, queries,
counts, time, tool version; no secrets, no identifier values). Files appear only when the pull
is complete.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import shutil
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from fhir_hcc.errors import ConfigError, FhirHccError
from fhir_hcc.fhir import capability as capabilities
from fhir_hcc.fhir.references import Target, label, parse_reference, subject_of, target_of
from fhir_hcc.fhir.types import FETCHED_BY_ID, PATIENT_TYPES
from fhir_hcc.server.auth import Credentials
from fhir_hcc.server.batching import code_lists, pack, token
from fhir_hcc.server.caselist import Entry, Population
from fhir_hcc.server.client import REDIRECTS, FhirClient, Params, status_error
from fhir_hcc.server.errors import IncompleteDataError, ServerRefusedError
from fhir_hcc.server.options import ClientOptions
from fhir_hcc.server.output import manifest_header, publish, request_figures, search_staging
from fhir_hcc.server.paging import SearchRequest, SearchResult, Sink, run_search
from fhir_hcc.server.profile import Profile, choose_profile
from fhir_hcc.server.progress import NoProgress, Progress
from fhir_hcc.server.writer import NdjsonWriter

log = logging.getLogger(__name__)

CANDIDATE_TYPES = ("Condition", "Procedure")  # their mapping codes make a patient a candidate
CODE_FILTERED_TYPES = frozenset({"Observation"})  # everything else: all of a patient's resources
# The types whose `medicationReference` names a Medication to fetch by id.
MEDICATION_USE_TYPES = frozenset(
    {"MedicationAdministration", "MedicationStatement", "MedicationRequest"}
)
MERGE_LINKS = frozenset({"replaced-by", "replaces"})  # Patient.link types that mean a merge
ONE_PATIENT_URL_MARGIN = 150  # characters left for `patient=<id>&_count=...` beside the codes
POPULATION_OPTIONS = (
    "--patients FILE (FHIR Patient ids, one a line), --identifiers FILE (MRNs as system|value, "
    "or bare with --identifier-system URI) or --group ID (the members of a Group)"
)


class CaseListRequired(ConfigError):
    """A server that searches clinical data only per patient, and no case list was given."""

    def __init__(self, base_url: str, why: str) -> None:
        super().__init__(
            f"{base_url}: {why}; give the starting population with {POPULATION_OPTIONS}"
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


@dataclass
class Resolution:
    """How a case list became patients: counts and line numbers, never identifier values."""

    population: Population
    patients: list[str] = field(default_factory=list)
    lines: dict[str, int] = field(default_factory=dict)  # patient -> its line (Group: member)
    unknown: list[int] = field(default_factory=list)  # lines naming no patient
    ambiguous: list[int] = field(default_factory=list)  # lines naming several patients
    skipped_members: int = 0  # Group members that are inactive or not Patients

    def record(self, merged: set[str]) -> dict[str, Any]:
        """For the manifest; `merged`: the records merge links brought in besides the list's."""
        record = self.population.record() | {
            "patients": len(self.patients),
            # What a registry sync keeps: ids (never identifiers), the merged records too.
            "patientIds": sorted({*self.patients, *merged}),
            "unknownLines": sorted(self.unknown),
            "ambiguousLines": sorted(self.ambiguous),
            "skippedMembers": self.skipped_members,
            "merged": len(merged),
        }
        if self.population.kind == "group":
            record["entries"] = len(self.lines) + self.skipped_members
        return record


class Plan:
    """What a pull asks a server for, from its profile, its CapabilityStatement and the codes:
    the types searched (and those left out, with why), the parameters of each search, `_count`,
    the code lists and the batch sizes. `doctor` shows it; the `Puller` follows it."""

    def __init__(
        self,
        client: FhirClient,
        search_codes: Mapping[str, Sequence[tuple[str, str]]],
        profile: Profile,
        *,
        everything: bool = False,
        types: Sequence[str] = PATIENT_TYPES,
    ) -> None:
        self.client = client
        self.options = client.options
        self.search_codes = search_codes
        self.profile = profile
        self.everything = everything  # all Observations, not only the mapped codes (capture)
        self.skipped: dict[str, str] = {}  # type -> why the plan leaves it out
        self.types = [t for t in types if self.includes(t)]  # searched per patient
        self.work(None)  # a search the profile would refuse stops the pull before it starts

    def includes(self, resource_type: str) -> bool:
        """Whether the plan searches a type: the profile and the CapabilityStatement agree."""
        if resource_type in self.skipped:
            return False
        rules = self.profile.type(resource_type)
        if not rules.search:
            self.skipped[resource_type] = f"server profile {self.profile.name!r}: {rules.source}"
            return False
        if not capabilities.searchable(self.client.capability_statement or {}, resource_type):
            self.skipped[resource_type] = "the CapabilityStatement does not list its search"
            return False
        return True

    def candidate_requests(self, since: str | None) -> list[list[SearchRequest]]:
        """The population code searches, per candidate type."""
        return [
            [
                SearchRequest(name, [("code", codes), *self.changed_since(since), self.count(name)])
                for codes in self.code_lists(name)
            ]
            for name in CANDIDATE_TYPES
            if self.includes(name) and self.search_codes.get(name)
        ]

    def work(self, since: str | None) -> list[tuple[str, Params]]:
        """(type, parameters besides the ids) of every search per patient or batch, Patient
        first; each meets the parameters the profile requires of its type."""
        work: list[tuple[str, Params]] = [
            (resource_type, [*_code_params(codes), *self.changed_since(since)])
            for resource_type in ("Patient", *self.types)
            for codes in self.code_filters(resource_type)
        ]
        for resource_type, extra in work:
            self._check_required(resource_type, {name for name, _ in extra})
        return work

    def _check_required(self, resource_type: str, sent: set[str]) -> None:
        rules = self.profile.type(resource_type)
        id_param = "_id" if resource_type in FETCHED_BY_ID else "patient"
        if rules.required and not any(set(g) <= sent | {id_param} for g in rules.required):
            needed = " or ".join("+".join(group) for group in rules.required)
            raise ConfigError(
                f"server profile {self.profile.name!r}: a {resource_type} search needs "
                f"{needed} ({rules.source}), and the plan has none to send"
            )

    def batch_size(self, resource_type: str) -> int:
        allowed = self.lists_allowed(resource_type)
        return self.options.batch_size if allowed else 1

    def lists_allowed(self, resource_type: str) -> bool:
        by_id = resource_type in FETCHED_BY_ID
        return self.profile.id_lists if by_id else self.profile.patient_lists

    def by_ids(
        self, resource_type: str, ids: list[str], extra: Params, post: bool = False
    ) -> SearchRequest:
        id_param = "_id" if resource_type in FETCHED_BY_ID else "patient"
        params = [(id_param, ",".join(ids)), *extra, self.count(resource_type)]
        return SearchRequest(resource_type, params, post)

    def count(self, resource_type: str) -> tuple[str, str]:
        return ("_count", str(self.profile.count(resource_type, self.options.page_size)))

    def changed_since(self, since: str | None) -> Params:
        return [("_lastUpdated", f"{self.profile.last_updated_prefix}{since}")] if since else []

    def is_local(self, reference: Target) -> bool:
        """Relative, or absolute on this server (another server's resources are not pulled)."""
        return reference.base in ("", self.client.base_url)

    def code_lists(self, resource_type: str) -> list[str]:
        """Code lists that leave room for the patient ids (half the URL for lists)."""
        codes = self.search_codes.get(resource_type, ())
        url = self.client.url(resource_type)
        limit = self.options.max_url_length
        budget = limit // 2 if self.profile.patient_lists else limit - ONE_PATIENT_URL_MARGIN
        return code_lists(url, codes, budget)

    def code_filters(self, resource_type: str) -> list[str | None]:
        """The code lists a type is searched with, or [None] for all its resources. With
        `everything`, a type the profile requires a code for (Epic's Observation) is still
        searched by the mapped codes."""
        if resource_type not in CODE_FILTERED_TYPES:
            return [None]
        required = self.profile.type(resource_type).required
        needs_code = bool(required) and ("code",) in required and ("patient",) not in required
        if self.everything and not needs_code:
            return [None]
        return list(self.code_lists(resource_type))

    def fits_every(self, work: Iterable[tuple[str, Params]]) -> Callable[[list[str]], bool]:
        """Whether an id list fits the URL of every planned search that will carry it."""
        requests = list(work)

        def fits(ids: list[str]) -> bool:
            for resource_type, extra in requests:
                params = self.by_ids(resource_type, ids, extra).params
                url = httpx.URL(self.client.url(resource_type), params=list(params))
                if len(str(url)) > self.options.max_url_length:
                    return False
            return True

        return fits


class Puller:
    """Follows a `Plan`: resolves the population, fetches the patients' data, writes it."""

    def __init__(self, plan: Plan, writer: NdjsonWriter, progress: Progress) -> None:
        self.plan = plan
        self.client = plan.client
        self.options = plan.options
        self.search_codes = plan.search_codes
        self.profile = plan.profile
        self.writer = writer
        self.progress = progress
        self.log = PullLog()
        self.strategies: dict[str, Strategy] = {}
        self.medication_ids: set[str] = set()
        self.links: dict[str, set[str]] = {}  # patient -> patients its merge links name
        self.missing: set[str] = set()  # patients asked for whom the server has no Patient
        for resource_type, why in self.plan.skipped.items():
            self.log.warn(f"{resource_type} is not searched: {why}")
        self._settled: dict[str, asyncio.Event] = {}  # a type's first request has answered

    # -- the population ----------------------------------------------------------------------
    async def find_candidates(self, since: str | None = None) -> list[str]:
        """Patients with a mapped Condition or Procedure code (changed after `since`)."""
        if not self.profile.population_search:
            rule = self.profile.rules["search.population"]
            raise CaseListRequired(
                self.client.base_url,
                f"server profile {self.profile.name!r} has no searches without a patient "
                f"({rule.source})",
            )
        candidates: set[str] = set()

        def collect(resource: dict[str, Any], mode: str) -> None:
            patient = self._patient_of(resource)
            if mode == "match" and patient is not None:
                candidates.add(patient)

        by_type = self.plan.candidate_requests(since)
        self.progress.phase("candidates", sum(len(requests) for requests in by_type))
        try:
            # A type's first search alone: a refusal is then met once, not once per code list.
            await _all(self._candidate_search(requests[0], collect) for requests in by_type)
            await _all(
                self._candidate_search(request, collect)
                for requests in by_type
                for request in requests[1:]
            )
        except ServerRefusedError as refusal:
            raise CaseListRequired(
                self.client.base_url, f"the server refused a search without a patient ({refusal})"
            ) from None
        return sorted(candidates)

    async def resolve(self, population: Population) -> Resolution:
        """The patients a case list names; Patients found by identifier are written already."""
        resolution = Resolution(population)
        if population.kind == "patients":
            resolution.lines = {entry.value: entry.line for entry in population.entries}
        elif population.kind == "identifiers":
            self.progress.phase("identifiers", len(population.entries), unit="identifiers")
            found = await _bounded(
                (self._identify(population, entry) for entry in population.entries),
                self.options.concurrency,
            )
            for line, patients in found:
                if not patients:
                    resolution.unknown.append(line)
                elif len(patients) > 1:
                    resolution.ambiguous.append(line)
                else:
                    resolution.lines.setdefault(patients[0], line)
        else:
            assert population.group is not None
            resolution.lines, resolution.skipped_members = await self._members(population.group)
        resolution.patients = sorted(resolution.lines)
        for line in resolution.unknown:
            self.log.warn(f"{population.label}:{line}: no patient has this identifier")
        for line in resolution.ambiguous:
            self.log.warn(f"{population.label}:{line}: several patients have this identifier")
        return resolution

    async def _identify(self, population: Population, entry: Entry) -> tuple[int, list[str]]:
        """(line, the patients the identifier names): one search per identifier. Of records
        merged into one another (`replaced-by` among the matches) only the survivor counts."""
        request = SearchRequest(
            "Patient",
            [("identifier", token(entry.system or "", entry.value)), self.plan.count("Patient")],
            label=f"GET Patient?identifier=<{population.label}:{entry.line}>",
        )
        matches: dict[str, dict[str, Any]] = {}

        def keep(resource: dict[str, Any], mode: str) -> None:
            if mode == "match" and resource["resourceType"] == "Patient":
                matches[resource["id"]] = resource

        await self._search(request, keep)
        self.progress.advance(len(matches), self.client.stats)
        survivors = [p["id"] for p in matches.values() if not _replaced_by(p) & set(matches)]
        if len(survivors) == 1:
            for patient in matches.values():
                self._write_patient(patient)
            # The merged records' own data comes too, as for any merge link.
            merged = set(matches) - set(survivors)
            if merged:
                self.links.setdefault(survivors[0], set()).update(merged)
        return entry.line, survivors or sorted(matches)

    async def _members(self, group_id: str) -> tuple[dict[str, int], int]:
        url = self.client.url(f"Group/{quote(group_id, safe='')}")
        group = await self.client.get_json(url)
        if not isinstance(group, dict) or group.get("resourceType") != "Group":
            raise IncompleteDataError(f"GET Group/{group_id}: the server did not return a Group")
        members: dict[str, int] = {}
        skipped = 0
        members_listed = group.get("member")
        listed = members_listed if isinstance(members_listed, list) else []
        for number, member in enumerate(listed, start=1):
            member = member if isinstance(member, dict) else {}
            target = target_of(member.get("entity"))
            if member.get("inactive") or target is None or target.type != "Patient":
                skipped += 1
            else:
                members.setdefault(target.id, number)
        if not members:
            raise IncompleteDataError(
                f"Group/{group_id} lists no active Patient members (a server may give them only "
                "through a Group export: --bulk --group)"
            )
        return members, skipped

    # -- the patients' data ------------------------------------------------------------------
    async def fetch_patient_data(self, patients: Sequence[str], since: str | None = None) -> None:
        """Everything the cohort reads of `patients` (what changed after `since`), and of every
        patient a merge link of theirs names (whole histories)."""
        planned = set(patients)
        wanted, name = list(patients), "changes of known patients" if since else "patient data"
        while wanted:
            await self._fetch_patients(wanted, since, name)
            linked = sorted({p for ids in self.links.values() for p in ids} - planned)
            planned.update(linked)
            for patient in linked:
                self.log.warn(f"Patient/{patient} is linked by a merge; its data is pulled too")
            wanted, since, name = linked, None, "merged patients"

    async def _fetch_patients(self, patients: list[str], since: str | None, name: str) -> None:
        work = self.plan.work(since)
        batches = pack(patients, self.plan.fits_every(work), self.plan.batch_size("Condition"))
        self.progress.phase(name, len(patients), unit="patients")
        await _bounded(
            (self._fetch_batch(batch, work, since) for batch in batches), self.options.concurrency
        )

    async def _fetch_batch(
        self, batch: list[str], work: list[tuple[str, Params]], since: str | None
    ) -> None:
        (_, patient_params), rest = work[0], work[1:]
        ask = [p for p in batch if not self.writer.has("Patient", p)]  # (some came by identifier)
        received = await self._fetch_by_ids("Patient", ask, patient_params) if ask else 0
        present = batch
        if since is None:  # a Patient unchanged since `since` is rightly absent
            await self._recover_missing_patients(ask)
            present = [p for p in batch if self.writer.has("Patient", p)]
            # A merged record (a read redirected to its survivor) is not missing.
            self.missing.update(p for p in batch if p not in present and p not in self.links)
        if present:
            counts = await _gather(
                self._fetch_by_ids(resource_type, present, extra) for resource_type, extra in rest
            )
            received += sum(counts)
        self.progress.advance(received, self.client.stats, steps=len(batch))

    async def fetch_medications(self) -> None:
        wanted = sorted(i for i in self.medication_ids if not self.writer.has("Medication", i))
        if not wanted:
            return
        if not self.plan.includes("Medication"):
            why = self.plan.skipped["Medication"]
            self.log.warn(f"{len(wanted)} referenced Medications not fetched: {why}")
            return
        size = self.plan.batch_size("Medication")
        batches = pack(wanted, self.plan.fits_every([("Medication", [])]), size)
        self.progress.phase("medications", len(wanted), unit="medications")

        async def fetch(batch: list[str]) -> None:
            received = await self._fetch_by_ids("Medication", batch, [])
            self.progress.advance(received, self.client.stats, steps=len(batch))

        await _bounded((fetch(batch) for batch in batches), self.options.concurrency)

    # -- one list of ids, with fallbacks ---------------------------------------------------
    def strategy(self, resource_type: str) -> Strategy:
        """How ids go to the server for a type now: lists where the profile allows them."""
        allowed = self.plan.lists_allowed(resource_type)
        start = Strategy.GET_LIST if allowed else Strategy.ONE_PER_REQUEST
        return self.strategies.get(resource_type, start)

    async def _fetch_by_ids(self, resource_type: str, ids: list[str], extra: Params) -> int:
        """Resources of `ids` (Patient, Medication by id; other types by patient), received."""
        settled = self._settled.get(resource_type)
        if settled is None:  # the first request of this type: the others wait for its answer
            self._settled[resource_type] = settled = asyncio.Event()
            try:
                return await self._send_ids(resource_type, ids, extra)
            finally:
                settled.set()
        await settled.wait()
        return await self._send_ids(resource_type, ids, extra)

    async def _send_ids(self, resource_type: str, ids: list[str], extra: Params) -> int:
        sink = self._sink(resource_type, set(ids))
        while True:
            strategy = self.strategy(resource_type)
            try:
                if strategy is not Strategy.ONE_PER_REQUEST:
                    post = strategy is Strategy.POST_LIST
                    request = self.plan.by_ids(resource_type, ids, extra, post)
                    return (await self._search(request, sink)).matches
                if resource_type in FETCHED_BY_ID:
                    return sum([await self._read(resource_type, one) for one in ids])
                received = 0
                for one in ids:
                    request = self.plan.by_ids(resource_type, [one], extra, False)
                    received += (await self._search(request, sink)).matches
                return received
            except ServerRefusedError as refusal:
                if strategy is Strategy.ONE_PER_REQUEST:
                    raise
                self._downgrade(resource_type, strategy, refusal)

    def _downgrade(self, resource_type: str, refused: Strategy, refusal: Exception) -> None:
        following = Strategy(refused + 1)
        if following is Strategy.POST_LIST and not self.profile.post_search:
            following = Strategy.ONE_PER_REQUEST
        if self.strategies.get(resource_type, Strategy.GET_LIST) < following:
            self.strategies[resource_type] = following
            self.log.warn(f"{refusal}; now sending {resource_type} as {following.label}")

    async def _read(self, resource_type: str, resource_id: str) -> int:
        """`GET [type]/[id]`: 1 when the resource arrived, 0 when the server has none."""
        what = f"GET {resource_type}/{resource_id}"
        url = self.client.url(f"{resource_type}/{quote(resource_id, safe='')}")
        response = await self.client.fetch("GET", url, what=what)
        self.log.searches.append(SearchResult(what, what, 1, int(response.status == 200)))
        if response.status in (404, 410):
            return 0
        survivor = _redirected_patient(resource_type, response.status, response.headers)
        if survivor is not None:  # Epic answers a read of a merged Patient with a redirect
            self.links[resource_id] = {survivor}
            return 0
        if response.status != 200:
            raise status_error(response.status, response.body, what)
        body = response.body
        if not isinstance(body, dict) or body.get("resourceType") != resource_type:
            raise IncompleteDataError(f"{what}: the server did not return a {resource_type}")
        if body.get("id") != resource_id:
            raise IncompleteDataError(
                f"{what}: the server returned {resource_type}/{body.get('id')}"
            )
        self._write(body)
        return 1

    async def _recover_missing_patients(self, asked: list[str]) -> None:
        """A list search that silently returns fewer Patients gets asked one by one."""
        missing = [pid for pid in asked if not self.writer.has("Patient", pid)]
        if len(asked) > 1 and missing:
            sink = self._sink("Patient", set(missing))
            for pid in missing:
                await self._search(self.plan.by_ids("Patient", [pid], [], False), sink)
        for pid in missing:
            if not self.writer.has("Patient", pid) and pid not in self.links:
                self.log.warn(f"Patient/{pid} is not on the server; no data of it is pulled")

    async def _candidate_search(self, request: SearchRequest, sink: Sink) -> None:
        result = await self._search(request, sink)
        self.progress.advance(result.matches, self.client.stats)

    async def _search(self, request: SearchRequest, sink: Sink) -> SearchResult:
        result = await run_search(
            self.client,
            request,
            sink,
            allow_gaps=self.options.allow_gaps,
            check_total=self.profile.trust_total,
        )
        self.log.searches.append(result)
        self.log.warnings.extend(result.warnings)
        return result

    def _sink(self, resource_type: str, asked: set[str]) -> Sink:
        """Writes what arrives, after checking each match is one of the ids asked for."""

        def write(resource: dict[str, Any], mode: str) -> None:
            if mode == "match":
                self._check_asked(resource_type, resource, asked)
            self._write(resource)

        return write

    def _write(self, resource: dict[str, Any]) -> None:
        if resource["resourceType"] == "Patient":
            self._write_patient(resource)
            return
        if resource["resourceType"] in MEDICATION_USE_TYPES:
            self.note_medication(resource)
        self.writer.write(resource)

    def _write_patient(self, patient: dict[str, Any]) -> None:
        linked = _merge_links(patient)
        if linked:
            self.links[patient["id"]] = linked
        self.writer.write(patient)

    def _check_asked(self, resource_type: str, resource: dict[str, Any], asked: set[str]) -> None:
        by_id = resource_type in FETCHED_BY_ID
        key = resource["id"] if by_id else self._patient_of(resource)
        if key not in asked:
            what = "was not asked for" if by_id else "belongs to a patient that was not asked for"
            raise IncompleteDataError(
                f"{resource['resourceType']}/{resource['id']} {what}: "
                f"the server may ignore the {'_id' if by_id else 'patient'} parameter"
            )

    def note_medication(self, resource: dict[str, Any]) -> None:
        """Remember the Medication `resource` references, to fetch it later."""
        element = resource.get("medicationReference")
        reference = element.get("reference") if isinstance(element, dict) else None
        if not isinstance(reference, str) or reference.startswith("#"):
            return  # a code or a contained Medication (read in place): nothing to fetch
        target = parse_reference(reference)
        if target is not None and target.type == "Medication" and self.plan.is_local(target):
            self.medication_ids.add(target.id)
        else:
            what = label(resource.get("resourceType"), resource.get("id"))
            self.log.warn(f"{what}: cannot follow its medicationReference")

    # -- helpers ---------------------------------------------------------------------------
    def _patient_of(self, resource: dict[str, Any]) -> str | None:
        patient = subject_of(resource)
        return patient.id if patient is not None and self.plan.is_local(patient) else None


def _merge_links(patient: dict[str, Any]) -> set[str]:
    """The other Patients of a merge (`link` replaced-by / replaces) on this server."""
    linked = set()
    for link in _links(patient):
        if link.get("type") in MERGE_LINKS:
            target = target_of(link.get("other"))
            if target is not None and target.type == "Patient" and target.id != patient["id"]:
                linked.add(target.id)
    return linked


def _redirected_patient(resource_type: str, status: int, headers: Mapping[str, str]) -> str | None:
    """The Patient a read was redirected to (a merged record's survivor), if any."""
    if resource_type != "Patient" or status not in REDIRECTS:
        return None
    target = parse_reference(headers.get("Location", "").split("?")[0])
    return target.id if target is not None and target.type == "Patient" else None


def _replaced_by(patient: dict[str, Any]) -> set[str]:
    return {
        target.id
        for link in _links(patient)
        if link.get("type") == "replaced-by"
        for target in [target_of(link.get("other"))]
        if target is not None and target.type == "Patient"
    }


def _links(patient: dict[str, Any]) -> list[dict[str, Any]]:
    links = patient.get("link")
    return [link for link in links if isinstance(link, dict)] if isinstance(links, list) else []


def _code_params(codes: str | None) -> Params:
    return [("code", codes)] if codes else []


async def _all(coroutines: Iterable[Awaitable[Any]]) -> None:
    """Run concurrently (the client's limiter bounds the requests); the first failure wins."""
    await _gather(coroutines)


async def _gather(coroutines: Iterable[Awaitable[Any]]) -> list[Any]:
    tasks = []
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(_awaited(coroutine)) for coroutine in coroutines]
    except* FhirHccError as failures:
        raise failures.exceptions[0] from None
    return [task.result() for task in tasks]


async def _bounded(coroutines: Iterable[Awaitable[Any]], workers: int) -> list[Any]:
    """Run at most `workers` at a time, started in order, results as they finish: thousands of
    patients never become thousands of tasks waiting on the limiter."""
    pending = iter(coroutines)
    results: list[Any] = []

    async def work() -> None:
        for coroutine in pending:
            results.append(await coroutine)

    await _gather(work() for _ in range(max(1, workers)))
    return results


async def _awaited(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


# -- the whole pull --------------------------------------------------------------------------
async def run_pull(
    client: FhirClient,
    search_codes: Mapping[str, Sequence[tuple[str, str]]],
    out_dir: Path,
    *,
    population: Population | None = None,
    progress: Progress | None = None,
    since: str | None = None,
    known_patients: Sequence[str] = (),
    environ: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Pull into `out_dir` with an open client and return the written manifest; nothing is
    left behind on failure.

    `population` is a case list (else the candidates found by code); the server profile is
    `client.options.profile` or chosen from the CapabilityStatement. With `since`, an
    incremental pull:
    what changed after it, for the candidates (or listed patients) and `known_patients`; a
    patient not among those known gets its whole history.
    """
    started = time.time()
    partial = search_staging(out_dir)
    writer = NdjsonWriter(partial)
    progress = progress or NoProgress()
    try:
        chosen, reason = await apply_profile(client, environ)
        if since is not None and not chosen.last_updated:
            rule = chosen.rules["search.last_updated"]
            raise ConfigError(f"server profile {chosen.name!r} has no _lastUpdated ({rule.source})")
        puller = Puller(Plan(client, search_codes, chosen), writer, progress)
        _check_fhir_version(client.capability_statement or {}, puller.log)
        resolution = await puller.resolve(population) if population is not None else None
        if resolution is not None:
            patients = resolution.patients
        else:
            patients = await puller.find_candidates(since)
        known = set(known_patients) if since else set()
        await puller.fetch_patient_data([p for p in patients if p not in known])
        if resolution is not None:  # listed patients only: the sync drops the others
            known &= set(patients)
        if known:
            await puller.fetch_patient_data(sorted(known), since)
        await puller.fetch_medications()
        writer.close()
        manifest = manifest_header(client, "search", started) | _manifest(
            puller, patients, writer, resolution, reason
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


async def apply_profile(
    client: FhirClient, environ: Mapping[str, str] | None = None
) -> tuple[Profile, str]:
    """Choose the server's profile (`client.options.profile`, else from `/metadata`, read
    once) and set its client rules: the headers it names and its Retry-After cap."""
    chosen, reason = choose_profile(await client.capability(), client.options.profile)
    client.extra_headers.update(chosen.header_values(environ))
    cap = chosen.retry_after_cap
    if cap is not None and cap < client.options.max_retry_wait:
        client.options = replace(client.options, max_retry_wait=cap)
    log.info("server profile %s (%s)", chosen.name, reason)
    return chosen, reason


async def pull(
    base_url: str,
    search_codes: Mapping[str, Sequence[tuple[str, str]]],
    options: ClientOptions,
    out_dir: Path,
    *,
    population: Population | None = None,
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
            population=population,
            progress=progress,
            since=since,
            known_patients=known_patients,
            environ=environ,
        )


def _check_fhir_version(capability: dict[str, Any], pull_log: PullLog) -> None:
    version = capabilities.fhir_version(capability)
    if version is None or not version.startswith("4."):
        pull_log.warn(f"the server's CapabilityStatement gives FHIR version {version}, not R4")


def _manifest(
    puller: Puller,
    patients: list[str],
    writer: NdjsonWriter,
    resolution: Resolution | None,
    reason: str,
) -> dict[str, Any]:
    client, options = puller.client, puller.options
    gaps = [result.record() for result in puller.log.searches if result.gap]
    merged = {p for ids in puller.links.values() for p in ids} - set(patients)
    return {
        "complete": not gaps,
        "profile": {"name": puller.profile.name, "chosenBy": reason},
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
        "population": resolution.record(merged) if resolution else {"kind": "codes"},
        "candidates": len(patients),
        "missingPatients": sorted(puller.missing),
        "skippedTypes": dict(sorted(puller.plan.skipped.items())),
        "counts": dict(sorted(writer.counts.items())),
        "files": writer.file_names(),
        "requests": request_figures(client),
        "strategies": {name: strategy.label for name, strategy in puller.strategies.items()},
        "queries": [result.record() for result in puller.log.searches],
        "warnings": puller.log.warnings,
        "gaps": gaps,
    }
