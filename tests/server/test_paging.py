"""Fail-closed paging: next links, cycles, duplicates, totals, outcome entries, recorded gaps."""

from __future__ import annotations

import pytest

from fhir_hcc.server.errors import IncompleteDataError
from fhir_hcc.server.paging import SearchRequest, run_search
from server.fake_fhir import BASE, bundle, outcome

FIRST = f"{BASE}/Condition?code=x&_count=2"


def conditions(*ids: str) -> list[dict]:
    return [{"resourceType": "Condition", "id": i} for i in ids]


def search(run_client, allow_gaps=False):
    received: list[tuple[str, str]] = []

    async def action(client):
        request = SearchRequest("Condition", [("code", "x"), ("_count", "2")])
        sink = lambda resource, mode: received.append((resource["id"], mode))  # noqa: E731
        return await run_search(client, request, sink, allow_gaps=allow_gaps)

    return run_client(action), received


def test_absolute_and_relative_next_links_are_followed(httpx_mock, run_client):
    httpx_mock.add_response(
        url=FIRST, json=bundle(conditions("a", "b"), 5, f"{BASE}/Condition?page=2")
    )
    # A relative link resolves against the service base, not the page URL.
    httpx_mock.add_response(
        url=f"{BASE}/Condition?page=2", json=bundle(conditions("c", "d"), 5, "Condition?page=3")
    )
    httpx_mock.add_response(url=f"{BASE}/Condition?page=3", json=bundle(conditions("e"), 5))
    result, received = search(run_client)
    assert [i for i, _ in received] == ["a", "b", "c", "d", "e"]
    assert (result.pages, result.matches, result.total) == (3, 5, 5)


def test_next_link_cycle_fails(httpx_mock, run_client):
    httpx_mock.add_response(url=FIRST, json=bundle(conditions("a"), None, f"{BASE}/C?p=2"))
    httpx_mock.add_response(url=f"{BASE}/C?p=2", json=bundle(conditions("b"), None, FIRST))
    with pytest.raises(IncompleteDataError, match="next link cycles back"):
        search(run_client)


def test_duplicate_ids_across_pages_fail(httpx_mock, run_client):
    httpx_mock.add_response(url=FIRST, json=bundle(conditions("a", "b"), 4, f"{BASE}/C?p=2"))
    httpx_mock.add_response(url=f"{BASE}/C?p=2", json=bundle(conditions("b", "c"), 4))
    with pytest.raises(IncompleteDataError, match="Condition/b arrived twice"):
        search(run_client)


def test_missing_next_link_shows_as_total_mismatch(httpx_mock, run_client):
    httpx_mock.add_response(url=FIRST, json=bundle(conditions("a", "b"), 3))
    with pytest.raises(IncompleteDataError, match="total 3 but 2 resources arrived in 1 pages"):
        search(run_client)


def test_gap_is_recorded_when_allowed(httpx_mock, run_client):
    httpx_mock.add_response(url=FIRST, json=bundle(conditions("a", "b"), 3))
    result, received = search(run_client, allow_gaps=True)
    assert len(received) == 2
    assert "total 3 but 2" in result.gap
    assert result.record()["gap"] == result.gap


def test_failed_page_is_a_gap_only_when_allowed(httpx_mock, run_client):
    for _ in range(8):
        httpx_mock.add_response(url=f"{BASE}/C?p=2", status_code=500, is_optional=True)
    httpx_mock.add_response(
        url=FIRST, json=bundle(conditions("a", "b"), 4, f"{BASE}/C?p=2"), is_reusable=True
    )
    with pytest.raises(Exception, match="HTTP 500"):
        search(run_client)
    result, _ = search(run_client, allow_gaps=True)
    assert "HTTP 500" in result.gap


def test_outcome_entries_are_warnings_not_data(httpx_mock, run_client):
    warning = {
        "resource": outcome("processing", "parameter _foo ignored", "warning"),
        "search": {"mode": "outcome"},
    }
    included = {"resource": {"resourceType": "Patient", "id": "p"}, "search": {"mode": "include"}}
    httpx_mock.add_response(
        url=FIRST, json=bundle(conditions("a"), 1, extra_entries=[warning, included])
    )
    result, received = search(run_client)
    assert received == [("a", "match"), ("p", "include")]
    assert result.matches == 1
    assert result.warnings == [
        "GET Condition?code=x&_count=2: warning processing: parameter _foo ignored"
    ]


def test_error_outcome_inside_a_bundle_fails(httpx_mock, run_client):
    error = {"resource": outcome("too-costly", "result truncated"), "search": {"mode": "outcome"}}
    httpx_mock.add_response(url=FIRST, json=bundle(conditions("a"), 1, extra_entries=[error]))
    with pytest.raises(IncompleteDataError, match="too-costly: result truncated"):
        search(run_client)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"resourceType": "OperationOutcome"}, "expected a searchset Bundle, got OperationOutcome"),
        ([1, 2], "expected a searchset Bundle, got list"),
        ({"resourceType": "Bundle", "entry": [{"fullUrl": "x"}]}, "entry has no resource"),
        ({"resourceType": "Bundle", "entry": [{"resource": {"id": "a"}}]}, "lacks resourceType"),
    ],
)
def test_malformed_bundles_fail(httpx_mock, run_client, body, message):
    httpx_mock.add_response(url=FIRST, json=body)
    with pytest.raises(IncompleteDataError, match=message):
        search(run_client)


ODD_PAGES = [
    # (page, what the pull must do with it): a page of the wrong shape is a loud failure of
    # that search (or a recorded gap), never a traceback; odd parts it can read past are read.
    ({"resourceType": "Bundle", "entry": "x"}, "Bundle.entry is not a list"),
    ({"resourceType": "Bundle", "entry": [7]}, "a Bundle entry has no resource"),
    ({"resourceType": "Bundle", "entry": [{"resource": [1]}]}, "a Bundle entry has no resource"),
    ({"resourceType": "Bundle", "entry": [{"resource": {"id": 3}}]}, "lacks resourceType or id"),
    ([1, 2], "expected a searchset Bundle, got list"),
    (
        {"resourceType": "Bundle", "entry": [{"resource": {"resourceType": "OperationOutcome",
         "issue": {"severity": "error"}}}]},
        None,
    ),
    (
        {"resourceType": "Bundle", "link": {"relation": "next"}, "total": "many",
         "entry": [{"search": ["match"], "resource": conditions("a")[0]}]},
        None,
    ),
    (
        {"resourceType": "Bundle", "link": [{"relation": "next", "url": 5}, "next"],
         "entry": [{"search": {"mode": ["match"]}, "resource": conditions("a")[0]}]},
        None,
    ),
]  # fmt: skip


@pytest.mark.parametrize(("page", "failure"), ODD_PAGES)
def test_a_page_of_any_shape_fails_loudly_or_is_read(httpx_mock, run_client, page, failure):
    httpx_mock.add_response(url=FIRST, json=page)
    if failure is None:
        _, received = search(run_client)
        assert received in ([], [("a", "match")])
        return
    with pytest.raises(IncompleteDataError, match=failure):
        search(run_client)
    httpx_mock.add_response(url=FIRST, json=page)
    result, _ = search(run_client, allow_gaps=True)
    assert failure in (result.gap or "")
