"""FhirClient: retries, Retry-After, throttling, timeouts, error answers and malformed bodies."""

from __future__ import annotations

import email.utils

import httpx
import pytest

from fhir_hcc.errors import ConfigError, ExitCode
from fhir_hcc.server.client import normalise_base_url, retry_after
from fhir_hcc.server.errors import (
    AuthError,
    IncompleteDataError,
    ServerRefusedError,
    ServerUnreachableError,
)
from server.conftest import fast_options
from server.fake_fhir import BASE, outcome

PATIENT = {"resourceType": "Patient", "id": "p1"}
URL = f"{BASE}/Patient/p1"


def get(client):
    return client.get_json(URL)


def test_500_then_success_is_retried(httpx_mock, run_client, sleeps):
    httpx_mock.add_response(url=URL, status_code=500, json=outcome("exception", "boom"))
    httpx_mock.add_response(url=URL, json=PATIENT)
    assert run_client(get) == PATIENT
    assert len(sleeps.delays) == 1
    # Exponential backoff with jitter: the first wait lies in [base / 2, base].
    assert 0.005 <= sleeps.delays[0] <= 0.01


def test_backoff_doubles_per_attempt(httpx_mock, run_client, sleeps):
    for _ in range(3):
        httpx_mock.add_response(url=URL, status_code=502)
    httpx_mock.add_response(url=URL, json=PATIENT)
    run_client(get)
    ceilings = [0.01, 0.02, 0.04]
    assert [c / 2 <= d <= c for d, c in zip(sleeps.delays, ceilings, strict=True)] == [True] * 3


def test_429_sequence_honours_retry_after_and_backs_off_concurrency(httpx_mock, run_client, sleeps):
    httpx_mock.add_response(url=URL, status_code=429, headers={"Retry-After": "7"})
    httpx_mock.add_response(url=URL, status_code=503, headers={"Retry-After": "2"})
    httpx_mock.add_response(url=URL, json=PATIENT)

    async def action(client):
        body = await client.get_json(URL)
        return body, client.stats.throttled, client.limiter.lowest

    body, throttled, lowest = run_client(action, options=fast_options(concurrency=8))
    assert body == PATIENT
    assert sleeps.delays == [7.0, 2.0]
    assert throttled == 2
    assert lowest == 2.0  # 8 halved twice


def test_retry_after_is_capped(httpx_mock, run_client, sleeps):
    httpx_mock.add_response(url=URL, status_code=429, headers={"Retry-After": "3600"})
    httpx_mock.add_response(url=URL, json=PATIENT)
    run_client(get, options=fast_options(max_retry_wait=30))
    assert sleeps.delays == [30.0]


def test_retry_after_accepts_an_http_date():
    now = 1_700_000_000.0
    later = email.utils.formatdate(now + 42, usegmt=True)
    assert retry_after(later, now) == pytest.approx(42)
    assert retry_after("5", now) == 5.0
    assert retry_after("soon", now) is None
    assert retry_after(None, now) is None


def test_retries_exhausted_fail_loudly(httpx_mock, run_client, sleeps):
    for _ in range(4):
        httpx_mock.add_response(url=URL, status_code=503)
    with pytest.raises(ServerUnreachableError) as caught:
        run_client(get)
    assert "HTTP 503" in str(caught.value)
    assert "gave up after 4 attempts" in str(caught.value)
    assert caught.value.exit_code == ExitCode.SERVER_UNREACHABLE
    assert len(sleeps.delays) == 3


def test_timeouts_are_retried_then_reported(httpx_mock, run_client):
    httpx_mock.add_exception(httpx.ReadTimeout("slow"), url=URL)
    httpx_mock.add_response(url=URL, json=PATIENT)
    assert run_client(get) == PATIENT

    for _ in range(4):
        httpx_mock.add_exception(httpx.ConnectTimeout("down"), url=URL)
    with pytest.raises(ServerUnreachableError, match="timed out"):
        run_client(get)


def test_dropped_connection_is_retried(httpx_mock, run_client):
    httpx_mock.add_exception(httpx.RemoteProtocolError("peer closed"), url=URL)
    httpx_mock.add_response(url=URL, json=PATIENT)
    assert run_client(get) == PATIENT


def test_malformed_json_is_retried_then_incomplete(httpx_mock, run_client):
    httpx_mock.add_response(url=URL, content=b'{"resourceType": "Pat')
    httpx_mock.add_response(url=URL, json=PATIENT)
    assert run_client(get) == PATIENT

    for _ in range(4):
        httpx_mock.add_response(url=URL, content=b"<html>proxy error</html>")
    with pytest.raises(IncompleteDataError, match="not valid JSON") as caught:
        run_client(get)
    assert caught.value.exit_code == ExitCode.INCOMPLETE_DATA


def test_operation_outcome_error_is_one_clear_line(httpx_mock, run_client):
    httpx_mock.add_response(
        url=f"{BASE}/Condition?foo=bar",
        status_code=400,
        json=outcome("not-supported", "Unknown search parameter 'foo'"),
    )
    with pytest.raises(ServerRefusedError) as caught:
        run_client(lambda client: client.get_json(f"{BASE}/Condition", [("foo", "bar")]))
    message = str(caught.value)
    assert message == (
        "GET Condition?foo=bar: HTTP 400: error not-supported: Unknown search parameter 'foo'"
    )
    assert "\n" not in message
    assert caught.value.status == 400


def test_404_without_body_and_401_without_refresh(httpx_mock, run_client):
    httpx_mock.add_response(url=URL, status_code=404, content=b"")
    with pytest.raises(ServerRefusedError, match=r"HTTP 404$"):
        run_client(get)
    httpx_mock.add_response(url=URL, status_code=401)
    with pytest.raises(AuthError, match="HTTP 401"):
        run_client(get)


def test_strict_handling_and_fhir_json_are_requested(httpx_mock, run_client):
    httpx_mock.add_response(
        url=URL,
        json=PATIENT,
        match_headers={"Prefer": "handling=strict", "Accept": "application/fhir+json"},
    )
    run_client(get)
    httpx_mock.add_response(url=URL, json=PATIENT)
    run_client(get, options=fast_options(strict_handling=False))
    assert "Prefer" not in httpx_mock.get_requests()[-1].headers


@pytest.mark.parametrize(
    "url",
    ["ftp://x/fhir", "https://user:secret@host/fhir", "https://host/fhir?x=1", "host/fhir"],
)
def test_bad_base_urls_are_refused_without_echoing_secrets(url):
    with pytest.raises(ConfigError) as caught:
        normalise_base_url(url)
    assert "secret" not in str(caught.value)


def test_base_url_loses_trailing_slash():
    assert normalise_base_url("https://h/fhir/") == "https://h/fhir"
