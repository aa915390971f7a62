"""Fail-closed search paging: every page, or a loud error (or a recorded gap when allowed).

Follows `link[relation=next]` as given (relative links resolved against the service base).
Stops with an error on a next-link cycle, a resource id seen twice, a `total` that disagrees
with what arrived (unless the server profile says its totals are not to be trusted), or an
error-severity OperationOutcome. `search.mode = outcome` entries are surfaced as warnings and
never passed on as data. A next link that has expired (410 Gone, or 404, as HAPI's `_getpages`
cursor does after an hour) restarts the search from its first page once; what arrives again is
harmless, since the writer keeps each resource once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin

import httpx

from fhir_hcc.server.client import FhirClient, Params, outcome_issues, outcome_summary
from fhir_hcc.server.errors import (
    AuthError,
    IncompleteDataError,
    ServerRefusedError,
    ServerUnreachableError,
)

log = logging.getLogger(__name__)

Sink = Callable[[dict[str, Any], str], None]  # (resource, search mode)
ERROR_SEVERITIES = frozenset({"error", "fatal"})
EXPIRED_CURSOR = frozenset({404, 410})  # a next link the server no longer knows


@dataclass(frozen=True)
class SearchRequest:
    resource_type: str
    params: Params
    post: bool = False  # POST [type]/_search with a form body
    label: str | None = None  # names the search instead of its query (which holds an MRN)

    @property
    def method(self) -> str:
        return "POST" if self.post else "GET"

    def url(self, client: FhirClient) -> str:
        return client.url(f"{self.resource_type}/_search" if self.post else self.resource_type)


@dataclass
class SearchResult:
    query: str  # in full, for the manifest
    label: str  # shortened, for messages
    pages: int = 0
    matches: int = 0
    total: int | None = None
    warnings: list[str] = field(default_factory=list)
    gap: str | None = None
    restarted: bool = False  # after an expired next link

    def record(self) -> dict[str, Any]:
        """This search as it appears in the manifest."""
        entry: dict[str, Any] = {
            "query": self.query,
            "pages": self.pages,
            "matches": self.matches,
            "total": self.total,
        }
        if self.gap:
            entry["gap"] = self.gap
        if self.restarted:
            entry["restarted"] = True
        return entry


async def run_search(
    client: FhirClient,
    request: SearchRequest,
    sink: Sink,
    *,
    allow_gaps: bool = False,
    check_total: bool = True,
) -> SearchResult:
    """Page through one search, handing each resource to `sink`; raise or record gaps."""
    result = SearchResult(
        request.label
        or client.describe(request.method, request.url(client), request.params, limit=None),
        request.label or client.describe(request.method, request.url(client), request.params),
    )
    try:
        try:
            await _follow_pages(client, request, sink, result, check_total)
        except _ExpiredCursor as expired:
            log.warning("%s; searching again from the first page", expired)
            result.restarted = True
            result.pages = result.matches = 0
            result.total = None
            await _follow_pages(client, request, sink, result, check_total)
    except _ExpiredCursor as expired:
        raise IncompleteDataError(f"{expired}, also after starting the search again") from None
    except (AuthError, ServerRefusedError):
        raise  # not a gap: fix the credentials, or fall back to another request form
    except (IncompleteDataError, ServerUnreachableError) as error:
        if not allow_gaps:
            raise
        result.gap = str(error)
        log.warning("gap recorded: %s", error)
    return result


class _ExpiredCursor(Exception):
    pass


async def _follow_pages(
    client: FhirClient,
    request: SearchRequest,
    sink: Sink,
    result: SearchResult,
    check_total: bool,
) -> None:
    if request.post:
        bundle = await client.get_json(request.url(client), form=request.params, what=request.label)
    else:
        bundle = await client.get_json(request.url(client), request.params, what=request.label)
    page_url = result.label
    # The first page counts as visited, so a next link back to it is a cycle too.
    visited = {str(httpx.URL(request.url(client), params=list(request.params)))}
    seen: set[tuple[str, str]] = set()
    while True:
        result.pages += 1
        _check_bundle(bundle, page_url)
        if result.total is None and isinstance(bundle.get("total"), int):
            result.total = bundle["total"]
        for entry in bundle.get("entry") or []:
            _take_entry(entry, page_url, seen, sink, result)
        next_url = next_link(bundle, client.base_url)
        if next_url is None:
            break
        if next_url in visited:
            raise IncompleteDataError(f"{result.label}: next link cycles back to {next_url}")
        visited.add(next_url)
        # A labelled search's next links repeat its query: name them by the label too.
        page_url = (
            f"{request.label} (page {result.pages + 1})"
            if request.label
            else client.describe("GET", next_url)
        )
        try:
            bundle = await client.get_json(next_url, what=page_url)
        except ServerRefusedError as refusal:
            if refusal.status in EXPIRED_CURSOR:
                raise _ExpiredCursor(f"{page_url}: HTTP {refusal.status}") from None
            raise
    if check_total and result.total is not None and result.total != result.matches:
        raise IncompleteDataError(
            f"{result.label}: the server reported total {result.total} "
            f"but {result.matches} resources arrived in {result.pages} pages"
        )


def _check_bundle(bundle: Any, where: str) -> None:
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        kind = bundle.get("resourceType") if isinstance(bundle, dict) else type(bundle).__name__
        raise IncompleteDataError(f"{where}: expected a searchset Bundle, got {kind}")
    if not isinstance(bundle.get("entry", []), list):
        raise IncompleteDataError(f"{where}: Bundle.entry is not a list")


def _take_entry(
    entry: Any,
    where: str,
    seen: set[tuple[str, str]],
    sink: Sink,
    result: SearchResult,
) -> None:
    resource = entry.get("resource") if isinstance(entry, dict) else None
    if not isinstance(resource, dict):
        raise IncompleteDataError(f"{where}: a Bundle entry has no resource")
    search = entry.get("search")
    mode = search.get("mode", "match") if isinstance(search, dict) else "match"
    mode = mode if isinstance(mode, str) else "match"
    if mode == "outcome" or resource.get("resourceType") == "OperationOutcome":
        _surface_outcome(resource, where, result)
        return
    resource_type, resource_id = resource.get("resourceType"), resource.get("id")
    if not isinstance(resource_type, str) or not isinstance(resource_id, str):
        raise IncompleteDataError(f"{where}: a Bundle entry lacks resourceType or id")
    if mode == "match":
        key = (resource_type, resource_id)
        if key in seen:
            raise IncompleteDataError(
                f"{result.label}: {resource_type}/{resource_id} arrived twice "
                f"(page {result.pages}); the server's paging is unstable"
            )
        seen.add(key)
        result.matches += 1
    sink(resource, mode)


def _surface_outcome(outcome: dict[str, Any], where: str, result: SearchResult) -> None:
    issues = outcome_issues(outcome)
    if any(issue.get("severity") in ERROR_SEVERITIES for issue in issues):
        raise IncompleteDataError(f"{where}: the server reported {outcome_summary(outcome)}")
    warning = f"{where}: {outcome_summary(outcome)}"
    result.warnings.append(warning)
    log.warning("server outcome: %s", warning)


def next_link(bundle: dict[str, Any], base_url: str) -> str | None:
    """The absolute URL of `link[relation=next]`; FHIR resolves relative URLs against the base."""
    links = bundle.get("link")
    for link in links if isinstance(links, list) else []:
        if not isinstance(link, dict) or link.get("relation") != "next":
            continue
        url = link.get("url")
        if isinstance(url, str) and url:
            return urljoin(f"{base_url}/", url)
    return None
