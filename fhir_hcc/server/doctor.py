"""Preflight for a pull: what the server supports, which profile and plan a pull would use,
whether the credentials work, and how many requests a pull would take."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from fhir_hcc.errors import ExitCode, FhirHccError
from fhir_hcc.fhir import capability as capabilities
from fhir_hcc.fhir.types import COHORT_TYPES, FETCHED_BY_ID, PATIENT_TYPES
from fhir_hcc.server.auth import Credentials
from fhir_hcc.server.batching import code_lists, token
from fhir_hcc.server.caselist import Population
from fhir_hcc.server.client import FhirClient
from fhir_hcc.server.errors import AuthError
from fhir_hcc.server.options import ClientOptions
from fhir_hcc.server.profile import Profile
from fhir_hcc.server.puller import (
    CANDIDATE_TYPES,
    CODE_FILTERED_TYPES,
    POPULATION_OPTIONS,
    Plan,
    apply_profile,
)

ESSENTIAL_TYPES = ("Patient", "Condition", "Procedure")  # without them there is no cohort
# The profile rules `doctor` shows, in order, with their labels.
SHOWN_RULES = {
    "search.population": "population search",
    "search.patient_lists": "patient lists",
    "search.id_lists": "_id lists",
    "search.post": "POST _search",
    "search.max_count": "_count maximum",
    "search.total": "Bundle.total trusted",
    "search.last_updated": "_lastUpdated",
    "bulk.levels": "bulk levels",
    "bulk.unexported": "not in bulk",
    "client.retry_after_cap": "Retry-After cap",
}


def needed_parameters(resource_type: str) -> tuple[str, ...]:
    """The search parameters the pull sends for a type (what `doctor` checks is listed)."""
    if resource_type in FETCHED_BY_ID:
        return ("_id",)
    by_code = resource_type in CANDIDATE_TYPES or resource_type in CODE_FILTERED_TYPES
    return ("code", "patient") if by_code else ("patient",)


@dataclass
class TypeSupport:
    name: str
    listed: bool
    missing: list[str]
    includes: int


@dataclass
class Preflight:
    """What `doctor` found out about a server before any pull."""

    base_url: str
    fhir_version: str | None = None
    software: str = "unknown"
    formats: list[str] = field(default_factory=list)
    types: list[TypeSupport] = field(default_factory=list)
    export: tuple[str, ...] = ()  # the Bulk Data levels offered
    profile: list[str] = field(default_factory=list)  # lines: the profile and its rules
    plan: list[str] = field(default_factory=list)  # lines: what a pull would ask for
    skipped: dict[str, str] = field(default_factory=dict)  # types the plan leaves out
    needs_case_list: bool = False  # no list given, and no searches without a patient
    smart: str = "not checked"
    auth: str = "not checked"
    auth_ok: bool | None = None  # None: the test request failed for another reason
    paging: str = "not checked"
    estimates: dict[str, int | None] = field(default_factory=dict)
    batch_size: int = 0

    @property
    def exit_code(self) -> int:
        """0 when a pull can run; otherwise the code the pull would most likely fail with."""
        if self.auth_ok is False:
            return ExitCode.AUTH_FAILED
        if self.needs_case_list:
            return ExitCode.BAD_INPUT
        searched = [t for t in self.types if t.name not in self.skipped]
        essential_left_out = any(name in self.skipped for name in ESSENTIAL_TYPES)
        if self.auth_ok is None or essential_left_out or any(t.missing for t in searched):
            return ExitCode.INCOMPLETE_DATA
        return ExitCode.OK


async def diagnose(
    base_url: str,
    search_codes: Mapping[str, Sequence[tuple[str, str]]],
    options: ClientOptions,
    credentials: Credentials | None = None,
    environ: Mapping[str, str] | None = None,
    population: Population | None = None,
) -> Preflight:
    async with FhirClient(base_url, options, credentials, environ=environ) as client:
        preflight = Preflight(client.base_url, batch_size=options.batch_size)
        _read_capabilities(preflight, await client.capability())
        profile, reason = await apply_profile(client, environ)
        plan = Plan(client, search_codes, profile)
        preflight.profile = _profile_lines(profile, reason, environ)
        preflight.skipped = dict(plan.skipped)
        preflight.needs_case_list = population is None and not profile.population_search
        preflight.smart = await _smart_configuration(client)
        preflight.auth, preflight.auth_ok, probe = await _check_auth(client, plan, population)
        if preflight.auth_ok:
            preflight.paging = _check_paging(probe)
            if population is None and profile.population_search:
                preflight.estimates = await _estimates(client, search_codes)
        patients = await _listed_patients(client, population) if preflight.auth_ok else None
        preflight.plan = _plan_lines(plan, population, patients, preflight)
    return preflight


def _read_capabilities(preflight: Preflight, capability: dict[str, Any]) -> None:
    if not capability:
        preflight.software = "no CapabilityStatement at /metadata"
        return
    preflight.fhir_version = capabilities.fhir_version(capability)
    preflight.software = capabilities.software(capability)
    formats = capability.get("format")
    preflight.formats = (
        [f for f in formats if isinstance(f, str)] if isinstance(formats, list) else []
    )
    resources = capabilities.resources(capability)
    for name in COHORT_TYPES:
        listed = capabilities.search_parameters(capability, name)
        missing = [p for p in needed_parameters(name) if p not in listed]
        listed_includes = resources.get(name, {}).get("searchInclude")
        includes = len(listed_includes) if isinstance(listed_includes, list) else 0
        preflight.types.append(TypeSupport(name, name in resources, missing, includes))
    preflight.export = capabilities.export_levels(capability)


def _profile_lines(profile: Profile, reason: str, environ: Mapping[str, str] | None) -> list[str]:
    lines = [f"{profile.name}: {profile.description} ({reason})"]
    for key, label in SHOWN_RULES.items():
        rule = profile.rules.get(key)
        if rule is not None:
            lines.append(f"  {label:<22}{_shown(rule.value):<24}{rule.source}")
    sent = profile.header_values(environ)
    for header, rule in profile.headers.items():
        state = "sent" if header in sent else f"not sent: set {rule.value}"
        lines.append(f"  header {header:<15}{state:<24}{rule.source}")
    for resource_type, rules in profile.types.items():
        what = (
            [f"needs {' or '.join('+'.join(g) for g in rules.required)}"] if rules.required else []
        )
        what += [f"_count <= {rules.max_count}"] if rules.max_count else []
        what += ["not searched"] if not rules.search else []
        lines.append(f"  {resource_type:<22}{', '.join(what):<24}{rules.source}")
    return lines


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(value) or "-"
    return "none" if value == 0 else str(value)


async def _smart_configuration(client: FhirClient) -> str:
    url = client.url(".well-known/smart-configuration")
    try:
        response = await client.fetch("GET", url, authenticated=False)
    except FhirHccError as error:
        return f"not available ({error})"
    body = response.body if isinstance(response.body, dict) else {}
    if response.status != 200 or "token_endpoint" not in body:
        return f"not advertised (HTTP {response.status})"
    algorithms = ", ".join(body.get("token_endpoint_auth_signing_alg_values_supported", []))
    grants = ", ".join(body.get("grant_types_supported", []))
    endpoint = body["token_endpoint"]
    return f"token endpoint {endpoint}; grants: {grants or '?'}; algs: {algorithms or '?'}"


async def _check_auth(
    client: FhirClient, plan: Plan, population: Population | None
) -> tuple[str, bool | None, Any]:
    """One authenticated request that proves the credentials (and probes paging): the first
    case-list entry, else a one-entry Patient search where searches need no patient."""
    url, what = client.url("Patient"), None
    params: list[tuple[str, str]] | None = [("_count", "1")]
    if population is not None and population.kind == "group":
        url, params = client.url(f"Group/{quote(population.group or '', safe='')}"), None
    elif population is not None and population.kind == "identifiers":
        first = population.entries[0]
        params = [("identifier", token(first.system or "", first.value)), plan.count("Patient")]
        what = f"GET Patient?identifier=<{population.label}:{first.line}>"
    elif population is not None:
        url, params = client.url(f"Patient/{quote(population.entries[0].value, safe='')}"), None
    elif not plan.profile.population_search:
        return "not checked: give a case list (this server searches only per patient)", None, None
    try:
        found = await client.get_json(url, params, what=what)
    except AuthError as error:
        return f"FAILED: {error}", False, None
    except FhirHccError as error:
        return f"unknown: the test request failed: {error}", None, None
    return f"ok ({client.options.auth.mode})", True, found


def _check_paging(bundle: Any) -> str:
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        return "not checked"
    has_next = any(link.get("relation") == "next" for link in bundle.get("link", []))
    total = bundle.get("total")
    if isinstance(total, int) and total > 1 and not has_next:
        return f"FAILED: total {total} but no next link after 1 entry"
    return "ok (next links)" if has_next else "not exercised (fewer than 2 matches)"


async def _listed_patients(client: FhirClient, population: Population | None) -> int | None:
    """How many patients the case list names (a Group: its active Patient members)."""
    if population is None:
        return None
    if population.kind != "group":
        return len(population.entries)
    try:
        group = await client.get_json(client.url(f"Group/{quote(population.group or '', safe='')}"))
    except FhirHccError:
        return None
    members = group.get("member") if isinstance(group, dict) else None
    return sum(1 for m in members or [] if not m.get("inactive"))


async def _estimates(
    client: FhirClient, search_codes: Mapping[str, Sequence[tuple[str, str]]]
) -> dict[str, int | None]:
    estimates: dict[str, int | None] = {}
    for name in (*CANDIDATE_TYPES, "Observation"):
        budget = client.options.max_url_length
        lists = code_lists(client.url(name), search_codes.get(name, ()), budget)
        counts = [await _count(client, name, [("code", codes)]) for codes in lists]
        estimates[f"{name} with mapping codes"] = (
            None if None in counts else sum(c for c in counts if c is not None)
        )
    for name in ("Patient", *PATIENT_TYPES):
        estimates[f"{name} on the server"] = await _count(client, name, [])
    return estimates


async def _count(
    client: FhirClient, resource_type: str, params: list[tuple[str, str]]
) -> int | None:
    try:
        bundle = await client.get_json(client.url(resource_type), [*params, ("_summary", "count")])
    except FhirHccError:
        return None
    total = bundle.get("total") if isinstance(bundle, dict) else None
    return total if isinstance(total, int) else None


def _plan_lines(
    plan: Plan, population: Population | None, patients: int | None, preflight: Preflight
) -> list[str]:
    """The plan a pull would follow, and its requests for the list (or the candidates)."""
    work = plan.work(None)
    searches = [
        "Patient (read)" if plan.batch_size("Patient") == 1 else "Patient (_id lists)",
        *_searched_types(plan, work),
    ]
    per = "patient" if plan.batch_size("Condition") == 1 else f"batch of {plan.options.batch_size}"
    lines = [_population_line(plan, population)]
    lines.append(f"per {per}: {len(work)} requests: {', '.join(searches)}")
    lines.append(f"  _count {plan.count('Condition')[1]}; next links followed as given")
    for resource_type, why in plan.skipped.items():
        lines.append(f"  not searched: {resource_type} ({why})")
    if preflight.needs_case_list:
        lines.append(f"a pull needs a case list: {POPULATION_OPTIONS}")
        return lines
    if patients is None:
        patients = _candidate_bound(preflight)
    if patients is None:
        lines.append("requests: unknown (the number of patients is unknown)")
        return lines
    batches = math.ceil(patients / plan.batch_size("Condition")) if patients else 0
    requests = batches * len(work)
    if population is not None and population.kind == "identifiers":
        # One identifier search each; it brings the Patient, so no Patient request follows.
        requests = patients + batches * (len(work) - 1)
    elif population is not None and population.kind == "group":
        requests += 1
    elif population is None:
        requests += sum(len(requests) for requests in plan.candidate_requests(None))
    lines.append(
        f"requests: about {requests} for {patients} patients "
        "(plus extra pages, merged records and the referenced Medications)"
    )
    return lines


def _searched_types(plan: Plan, work: list[tuple[str, Any]]) -> list[str]:
    counted: dict[str, int] = {}
    for resource_type, _ in work[1:]:
        counted[resource_type] = counted.get(resource_type, 0) + 1
    return [f"{name} ({n} code lists)" if n > 1 else name for name, n in counted.items()]


def _population_line(plan: Plan, population: Population | None) -> str:
    if population is None and plan.profile.population_search:
        searches = sum(len(requests) for requests in plan.candidate_requests(None))
        return f"population: patients with a mapped code ({searches} code searches)"
    if population is None:
        rule = plan.profile.rules["search.population"]
        return f"population: no searches without a patient on this server ({rule.source})"
    if population.kind == "identifiers":
        return (
            f"population: {population.label}: {len(population.entries)} identifiers, one "
            "Patient?identifier= search each"
        )
    if population.kind == "group":
        return f"population: the members of {population.label} (one read)"
    return f"population: {population.label}: {len(population.entries)} Patient ids"


def _candidate_bound(preflight: Preflight) -> int | None:
    by_code = [preflight.estimates.get(f"{n} with mapping codes") for n in CANDIDATE_TYPES]
    if not preflight.estimates or None in by_code:
        return None
    return sum(c for c in by_code if c is not None)


def render(preflight: Preflight) -> str:
    """The preflight as aligned text lines."""
    lines = [
        f"server        {preflight.base_url}",
        f"FHIR version  {preflight.fhir_version or 'unknown'}"
        + ("" if (preflight.fhir_version or "").startswith("4.") else "  (fhir-hcc expects R4)"),
        f"software      {preflight.software or 'unknown'}",
        f"formats       {', '.join(preflight.formats) or 'not listed'}",
        f"bulk $export  {_export_line(preflight.export)}",
        f"SMART config  {preflight.smart}",
        f"credentials   {preflight.auth}",
        f"paging        {preflight.paging}",
        "profile       " + "\n".join(preflight.profile),
        "resource types the mappers read:",
    ]
    for support in preflight.types:
        if not support.listed:
            status = "NOT LISTED in the CapabilityStatement"
        elif support.missing:
            status = f"missing search parameters: {', '.join(support.missing)}"
        else:
            status = "ok"
        lines.append(f"  {support.name:<26}{status}; {support.includes} _include values")
    if preflight.estimates:
        lines.append("estimates (_summary=count):")
        for name, count in preflight.estimates.items():
            lines.append(f"  {name:<40}{'unknown' if count is None else count}")
        bound = _candidate_bound(preflight)
        known = "unknown" if bound is None else f"at most {bound}"
        lines.append(f"  candidate patients: {known}")
    lines.append("plan:")
    lines += [f"  {line}" for line in preflight.plan]
    return "\n".join(lines)


def _export_line(levels: tuple[str, ...]) -> str:
    if not levels:
        return "no"
    return "yes (" + ", ".join(f"{level} level" for level in levels) + ")"
