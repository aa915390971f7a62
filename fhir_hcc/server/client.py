"""Async FHIR HTTP client: retries with backoff and jitter, Retry-After, AIMD, timeouts, TLS.

Every request ends in a parsed JSON answer or a one-line `FhirHccError`: connection errors,
timeouts, 408/429/5xx and unparseable bodies are retried; 401 gets one re-authentication.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit

import httpx
import orjson

from fhir_hcc.errors import ConfigError
from fhir_hcc.fhir.capability import statement
from fhir_hcc.server.auth import Credentials, build_credentials
from fhir_hcc.server.errors import (
    AuthError,
    IncompleteDataError,
    ServerRefusedError,
    ServerUnreachableError,
)
from fhir_hcc.server.options import ClientOptions
from fhir_hcc.server.ratelimit import AdaptiveLimiter

log = logging.getLogger(__name__)


class _NoRequestLines(logging.Filter):
    """httpx logs every request's URL at INFO, and an identifier search's URL holds an MRN:
    those lines are dropped (fhir-hcc names its requests itself, by labels without PHI)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("HTTP Request:")


logging.getLogger("httpx").addFilter(_NoRequestLines())

RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
THROTTLE_STATUSES = frozenset({429, 503})
REDIRECTS = frozenset({301, 302, 303, 307, 308})
FHIR_JSON = "application/fhir+json"
NDJSON = "application/fhir+ndjson"
Params = Sequence[tuple[str, str]]


def tool_version() -> str:
    try:
        return metadata.version("fhir-hcc")
    except metadata.PackageNotFoundError:
        return "unknown"


@dataclass(frozen=True)
class FhirResponse:
    status: int
    body: Any  # parsed JSON, or None when an error response (or a 202/204) had no JSON body
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass
class RequestStats:
    requests: int = 0
    retries: int = 0
    reauthentications: int = 0
    throttled: int = 0


class _RetryableProblem(Exception):
    def __init__(self, reason: str, wait: float | None, error: type[Exception]) -> None:
        super().__init__(reason)
        self.wait = wait
        self.error = error


class FhirClient:
    """One server's connection pool, credentials, limiter and request statistics.

    Credentials are built from `options.auth` and `environ` (default: the process environment)
    unless given; this is the one place that does so.
    """

    def __init__(
        self,
        base_url: str,
        options: ClientOptions,
        credentials: Credentials | None = None,
        *,
        environ: Mapping[str, str] | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.base_url = normalise_base_url(base_url)
        self.options = options
        self.credentials = credentials or build_credentials(options.auth, environ)
        self.capability_statement: dict[str, Any] | None = None  # once `capability()` ran
        self.extra_headers: dict[str, str] = {}  # sent to the server's origin (profile headers)
        self.stats = RequestStats()
        self.limiter = AdaptiveLimiter(options.concurrency)
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._origin = _origin(self.base_url)
        self._http = httpx.AsyncClient(
            verify=_tls_verification(options),
            timeout=httpx.Timeout(options.read_timeout, connect=options.connect_timeout, pool=None),
            limits=httpx.Limits(max_connections=options.concurrency),
            headers={"Accept": FHIR_JSON, "User-Agent": f"fhir-hcc/{tool_version()}"},
            follow_redirects=False,
        )

    async def __aenter__(self) -> FhirClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._http.aclose()

    def url(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}"

    async def capability(self) -> dict[str, Any]:
        """The server's CapabilityStatement ({} if `/metadata` gave none), read once."""
        if self.capability_statement is None:
            self.capability_statement = statement(await self.get_json(self.url("metadata")))
        return self.capability_statement

    def describe(
        self, method: str, url: str, params: Params | None = None, limit: int | None = 160
    ) -> str:
        """`GET Condition?code=a|b,…`, readable, relative to the base, shortened to `limit`."""
        full = unquote(str(httpx.URL(url, params=params) if params else httpx.URL(url)))
        relative = full[len(self.base_url) + 1 :] if full.startswith(self.base_url) else full
        if limit is not None and len(relative) > limit:
            relative = relative[: limit - 3] + "..."
        return f"{method} {relative}"

    async def get_json(
        self,
        url: str,
        params: Params | None = None,
        *,
        form: Params | None = None,
        what: str | None = None,
    ) -> Any:
        """The JSON body of a successful FHIR request (POST with a form body when `form`).

        `what` names the request in logs and errors instead of its URL (for a query that holds
        personal data, such as an identifier search)."""
        method = "POST" if form is not None else "GET"
        response = await self.fetch(method, url, params=params, data=form, what=what)
        if response.status >= 300:
            what = what or self.describe(method, url, form if form is not None else params)
            raise status_error(response.status, response.body, what)
        return response.body

    async def fetch(
        self,
        method: str,
        url: str,
        *,
        params: Params | None = None,
        data: Mapping[str, str] | Params | None = None,
        resource: dict[str, Any] | None = None,
        authenticated: bool = True,
        prefer: str | None = None,
        what: str | None = None,
    ) -> FhirResponse:
        """Send with retries; return the first answer that is not worth retrying.

        `data` is sent as a form, `resource` as a FHIR JSON body; `prefer` is added to the
        Prefer header (e.g. `respond-async` for a Bulk Data kick-off); `what` names the request
        in logs instead of its URL.
        """
        return await self._retrying(
            what or self.describe(method, url, params),
            lambda: self._attempt(method, url, params, data, resource, authenticated, prefer),
            authenticated,
        )

    async def download(self, url: str, destination: Path) -> FhirResponse:
        """Stream a file to `destination`, retried like any request (each try rewrites it).

        A gzip-encoded answer is stored as it came, so name `destination` `*.gz` only when the
        answer's `Content-Encoding` says gzip; the caller checks `headers` to know which it got.
        A redirect (Oracle Health answers 307 with a pre-signed URL) is followed once, without
        the Authorization header: the signature in the URL is the credential there.
        """
        response = await self._retrying(
            self.describe("GET", url), lambda: self._stream_to(url, destination, True), True
        )
        location = response.headers.get("Location")
        if response.status not in REDIRECTS or not location:
            return response
        signed = urljoin(url, location)
        return await self._retrying(
            self.describe("GET", signed.split("?")[0]),
            lambda: self._stream_to(signed, destination, False),
            False,
        )

    async def _retrying(
        self,
        what: str,
        attempt_once: Callable[[], Awaitable[FhirResponse]],
        authenticated: bool,
    ) -> FhirResponse:
        reauthenticated = False
        attempt = 0
        while True:
            try:
                response = await attempt_once()
            except _RetryableProblem as problem:
                if attempt >= self.options.max_retries:
                    raise problem.error(
                        f"{what}: {problem} (gave up after {attempt + 1} attempts)"
                    ) from None
                attempt += 1
                self.stats.retries += 1
                delay = self._delay(attempt, problem.wait)
                log.info("%s: %s; retry %d in %.1f s", what, problem, attempt, delay)
                await self._sleep(delay)
                continue
            renewable = authenticated and self.credentials.can_refresh
            if response.status == 401 and renewable and not reauthenticated:
                reauthenticated = True  # one fresh token; a second 401 is final
                self.stats.reauthentications += 1
                self.credentials.invalidate()
                continue
            return response

    async def _attempt(
        self,
        method: str,
        url: str,
        params: Params | None,
        data: Mapping[str, str] | Params | None,
        resource: dict[str, Any] | None,
        authenticated: bool,
        prefer: str | None = None,
    ) -> FhirResponse:
        headers = await self._headers(url, authenticated, prefer)
        if resource is not None:
            headers["Content-Type"] = FHIR_JSON
        async with self.limiter.slot():
            self.stats.requests += 1
            try:
                response = await self._http.request(
                    method,
                    url,
                    params=_query(params),
                    data=_form(data),
                    content=None if resource is None else orjson.dumps(resource),
                    headers=headers,
                )
            except httpx.TransportError as error:
                reason = _transport_reason(error)
                raise _RetryableProblem(reason, None, ServerUnreachableError) from None
        self._check_retryable(response)
        return FhirResponse(response.status_code, self._body(response), response.headers)

    async def _stream_to(self, url: str, destination: Path, authenticated: bool) -> FhirResponse:
        # gzip or nothing: the raw bytes go to disk, and only gzip can be read back.
        accepted = {"Accept": NDJSON, "Accept-Encoding": "gzip"}
        headers = await self._headers(url, authenticated) | accepted
        async with self.limiter.slot():
            self.stats.requests += 1
            try:
                async with self._http.stream("GET", url, headers=headers) as response:
                    if response.status_code >= 300:
                        await response.aread()
                        self._check_retryable(response)
                        return FhirResponse(
                            response.status_code, self._body(response), response.headers
                        )
                    with destination.open("wb") as out:
                        async for chunk in response.aiter_raw():
                            out.write(chunk)
            except httpx.TransportError as error:
                # Includes a body cut short: the file is rewritten from the start next try.
                reason = _transport_reason(error)
                raise _RetryableProblem(reason, None, ServerUnreachableError) from None
        self.limiter.on_success()
        return FhirResponse(response.status_code, None, response.headers)

    def _check_retryable(self, response: httpx.Response) -> None:
        """Raise for a status worth another try; otherwise count the answer as a success."""
        if response.status_code in RETRYABLE_STATUSES:
            if response.status_code in THROTTLE_STATUSES:
                self.stats.throttled += 1
                self.limiter.on_throttle()
            wait = retry_after(response.headers.get("Retry-After"), time.time())
            raise _RetryableProblem(f"HTTP {response.status_code}", wait, ServerUnreachableError)
        self.limiter.on_success()

    def _body(self, response: httpx.Response) -> Any:
        if response.status_code in (202, 204) and not response.content.strip():
            return None  # Accepted / No Content: nothing to parse
        try:
            return orjson.loads(response.content)
        except orjson.JSONDecodeError:
            if response.status_code < 300:
                # A cut or garbled body from a proxy is worth another try.
                raise _RetryableProblem(
                    "response body is not valid JSON", None, IncompleteDataError
                ) from None
            return None

    async def _headers(
        self, url: str, authenticated: bool, prefer: str | None = None
    ) -> dict[str, str]:
        if not authenticated:
            return {}
        preferences = [prefer] if prefer else []
        if self.options.strict_handling:
            preferences.append("handling=strict")
        headers = {"Prefer": ", ".join(preferences)} if preferences else {}
        # Credentials go only to the server's own origin, never to a host a link points at.
        if _origin(url) == self._origin:
            headers.update(self.extra_headers)
            headers.update(await self.credentials.headers(self))
        return headers

    def _delay(self, attempt: int, server_wait: float | None) -> float:
        if server_wait is not None:
            return min(server_wait, self.options.max_retry_wait)
        ceiling = min(self.options.backoff_max, self.options.backoff_base * 2 ** (attempt - 1))
        return self._rng.uniform(ceiling / 2, ceiling)


def status_error(status: int, body: Any, what: str) -> Exception:
    """The user-facing error for a final non-2xx answer."""
    detail = outcome_summary(body)
    message = f"{what}: HTTP {status}{': ' + detail if detail else ''}"
    if status in (401, 403):
        return AuthError(f"{message} (check the credentials and scopes)")
    if status < 500 or status == 501:
        return ServerRefusedError(message, status)
    return ServerUnreachableError(message)


def outcome_issues(outcome: dict[str, Any]) -> list[dict[str, Any]]:
    """The issues of an OperationOutcome that are objects, whatever shape `issue` has."""
    listed = outcome.get("issue")
    return [item for item in listed if isinstance(item, dict)] if isinstance(listed, list) else []


def outcome_summary(body: Any) -> str:
    """The first issue of an OperationOutcome as `severity code: diagnostics`, shortened."""
    if not isinstance(body, dict) or body.get("resourceType") != "OperationOutcome":
        return ""
    issues = outcome_issues(body)
    if not issues:
        return "OperationOutcome without issues"
    issue = issues[0]
    details = issue.get("details")
    text = issue.get("diagnostics") or (details.get("text") if isinstance(details, dict) else "")
    text = text if isinstance(text, str) else ""
    summary = f"{issue.get('severity', '?')} {issue.get('code', '?')}: {text}".strip(": ")
    return summary if len(summary) <= 200 else summary[:197] + "..."


def retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date); None if absent."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)


def normalise_base_url(base_url: str) -> str:
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"{base_url!r} is not an http(s) FHIR base URL")
    if parts.username or parts.password:
        raise ConfigError("put credentials in FHIR_HCC_* variables or files, not in the URL")
    if parts.query or parts.fragment:
        raise ConfigError("a FHIR base URL has no query or fragment")
    return base_url.rstrip("/")


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme, parts.netloc.lower()


def _tls_verification(options: ClientOptions) -> ssl.SSLContext | bool:
    if not options.verify_tls:
        log.warning("TLS certificate verification is off")
        return False
    if options.ca_bundle is None:
        return True
    try:
        return ssl.create_default_context(cafile=str(options.ca_bundle))
    except (OSError, ssl.SSLError) as error:
        raise ConfigError(f"{options.ca_bundle}: cannot load the CA bundle ({error})") from None


def _query(params: Params | None) -> list[tuple[str, Any]] | None:
    # httpx replaces a URL's own query with an empty params list, so pass None instead.
    return list(params) if params else None


def _form(data: Mapping[str, str] | Params | None) -> dict[str, list[str]] | None:
    """httpx form bodies are mappings; repeated keys become lists."""
    if data is None:
        return None
    pairs = data.items() if isinstance(data, Mapping) else data
    form: dict[str, list[str]] = {}
    for key, value in pairs:
        form.setdefault(key, []).append(value)
    return form


def _transport_reason(error: httpx.TransportError) -> str:
    if isinstance(error, httpx.TimeoutException):
        return f"timed out ({type(error).__name__})"
    return f"connection failed ({type(error).__name__})"
