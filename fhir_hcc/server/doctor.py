"""Preflight for a pull: what the server supports, whether the credentials work, and how much
a pull would fetch (`_summary=count` estimates)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fhir_hcc.errors import ExitCode, FhirHccError
from fhir_hcc.fhir import capability as capabilities
from fhir_hcc.fhir.types import COHORT_TYPES, FETCHED_BY_ID, PATIENT_TYPES
from fhir_hcc.server.auth import Credentials
from fhir_hcc.server.batching import code_lists
from fhir_hcc.server.client import FhirClient
from fhir_hcc.server.errors import AuthError
from fhir_hcc.server.options import ClientOptions
from fhir_hcc.server.pull import CANDIDATE_TYPES, CODE_FILTERED_TYPES


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
    smart: str = "not checked"
    auth: str = "not checked"
    auth_ok: bool | None = None  # None: the test search failed for another reason
    paging: str = "not checked"
    estimates: dict[str, int | None] = field(default_factory=dict)
    batch_size: int = 0

    @property
    def exit_code(self) -> int:
        """0 when a pull can run; otherwise the code the pull would most likely fail with."""
        if self.auth_ok is False:
            return ExitCode.AUTH_FAILED
        if self.auth_ok is None or any(t.missing or not t.listed for t in self.types):
            return ExitCode.INCOMPLETE_DATA
        return ExitCode.OK


async def diagnose(
    base_url: str,
    search_codes: Mapping[str, Sequence[tuple[str, str]]],
    options: ClientOptions,
    credentials: Credentials | None = None,
    environ: Mapping[str, str] | None = None,
) -> Preflight:
    async with FhirClient(base_url, options, credentials, environ=environ) as client:
        preflight = Preflight(client.base_url, batch_size=options.batch_size)
        _read_capabilities(preflight, await client.capability())
        preflight.smart = await _smart_configuration(client)
        preflight.auth, preflight.auth_ok, probe = await _check_auth(client)
        if preflight.auth_ok:
            preflight.paging = _check_paging(probe)
            preflight.estimates = await _estimates(client, search_codes)
    return preflight


def _read_capabilities(preflight: Preflight, capability: dict[str, Any]) -> None:
    if not capability:
        preflight.software = "no CapabilityStatement at /metadata"
        return
    preflight.fhir_version = capabilities.fhir_version(capability)
    preflight.software = capabilities.software(capability)
    preflight.formats = [str(f) for f in capability.get("format", [])]
    resources = capabilities.resources(capability)
    for name in COHORT_TYPES:
        listed = capabilities.search_parameters(capability, name)
        missing = [p for p in needed_parameters(name) if p not in listed]
        includes = len(resources.get(name, {}).get("searchInclude", []))
        preflight.types.append(TypeSupport(name, name in resources, missing, includes))
    preflight.export = capabilities.export_levels(capability)


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


async def _check_auth(client: FhirClient) -> tuple[str, bool | None, Any]:
    """A one-entry Patient search: proves the credentials, and is the paging probe too."""
    try:
        bundle = await client.get_json(client.url("Patient"), [("_count", "1")])
    except AuthError as error:
        return f"FAILED: {error}", False, None
    except FhirHccError as error:
        return f"unknown: the test search failed: {error}", None, None
    return f"ok ({client.options.auth.mode})", True, bundle


def _check_paging(bundle: Any) -> str:
    if not isinstance(bundle, dict):
        return "not checked"
    has_next = any(link.get("relation") == "next" for link in bundle.get("link", []))
    total = bundle.get("total")
    if isinstance(total, int) and total > 1 and not has_next:
        return f"FAILED: total {total} but no next link after 1 entry"
    return "ok (next links)" if has_next else "not exercised (fewer than 2 patients)"


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
        "resource types the pull searches:",
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
        lines.append(f"  {_pull_size(preflight)}")
    return "\n".join(lines)


def _export_line(levels: tuple[str, ...]) -> str:
    if not levels:
        return "no"
    return "yes (" + ", ".join(f"{level} level" for level in levels) + ")"


def _pull_size(preflight: Preflight) -> str:
    by_code = [preflight.estimates.get(f"{n} with mapping codes") for n in CANDIDATE_TYPES]
    if None in by_code:
        return "candidate patients: unknown"
    upper = sum(c for c in by_code if c is not None)
    batches = math.ceil(upper / preflight.batch_size) if preflight.batch_size else 0
    searches = batches * (1 + len(PATIENT_TYPES))
    return (
        f"candidate patients: at most {upper}; about {searches} searches "
        f"in batches of {preflight.batch_size} (plus paging)"
    )
