"""Credentials: none, bearer, basic, and SMART Backend Services (signed-JWT client credentials).

Secrets are read from environment variables or files when the credentials are built, are kept
only in these objects, and never appear in their repr, in log lines or in error messages.
"""

from __future__ import annotations

import asyncio
import base64
import os
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import jwt
import orjson
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from fhir_hcc.server.errors import AuthError
from fhir_hcc.server.options import AuthOptions

JWT_LIFETIME = 300  # seconds; the SMART spec allows at most five minutes
REFRESH_MARGIN = 60  # renew a token this long before it expires
ALGORITHM_FOR_KEY = {rsa.RSAPrivateKey: "RS384", ec.EllipticCurvePrivateKey: "ES384"}
CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


class TokenTransport(Protocol):
    """What SMART credentials need from the HTTP client: unauthenticated JSON requests."""

    base_url: str

    async def fetch(
        self,
        method: str,
        url: str,
        *,
        data: Mapping[str, str] | None = None,
        authenticated: bool = True,
    ) -> Any: ...


class Credentials(Protocol):
    """Adds an Authorization header; `can_refresh` credentials get one retry after a 401."""

    can_refresh: bool

    async def headers(self, transport: TokenTransport) -> dict[str, str]: ...

    def invalidate(self) -> None: ...


class NoCredentials:
    can_refresh = False

    async def headers(self, transport: TokenTransport) -> dict[str, str]:
        return {}

    def invalidate(self) -> None:
        pass


class StaticCredentials:
    """A fixed Authorization header (bearer token or basic); a 401 cannot be cured by retrying."""

    can_refresh = False

    def __init__(self, scheme: str, value: str) -> None:
        self.scheme = scheme
        self._header = f"{scheme} {value}"

    def __repr__(self) -> str:
        return f"StaticCredentials({self.scheme})"

    async def headers(self, transport: TokenTransport) -> dict[str, str]:
        return {"Authorization": self._header}

    def invalidate(self) -> None:
        pass


@dataclass(frozen=True)
class SigningKey:
    key: Any
    algorithm: str
    key_id: str | None

    def __repr__(self) -> str:
        return f"SigningKey({self.algorithm}, kid={self.key_id})"


class SmartBackendCredentials:
    """SMART Backend Services: a signed JWT assertion exchanged for an access token.

    The token endpoint comes from `.well-known/smart-configuration` unless given. A token is
    reused until shortly before it expires; after a 401 it is dropped and fetched again once.
    """

    can_refresh = True

    def __init__(
        self,
        client_id: str,
        signing_key: SigningKey,
        scope: str,
        token_url: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client_id = client_id
        self.signing_key = signing_key
        self.scope = scope
        self.token_url = token_url
        self.clock = clock
        self._token: str | None = None
        self._renew_at = 0.0
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"SmartBackendCredentials(client_id={self.client_id!r})"

    async def headers(self, transport: TokenTransport) -> dict[str, str]:
        async with self._lock:
            if self._token is None or self.clock() >= self._renew_at:
                await self._fetch_token(transport)
        return {"Authorization": f"Bearer {self._token}"}

    def invalidate(self) -> None:
        self._token = None

    async def _fetch_token(self, transport: TokenTransport) -> None:
        token_url = self.token_url or await discover_token_url(transport)
        self.token_url = token_url
        form = {
            "grant_type": "client_credentials",
            "scope": self.scope,
            "client_assertion_type": CLIENT_ASSERTION_TYPE,
            "client_assertion": self._assertion(token_url),
        }
        response = await transport.fetch("POST", token_url, data=form, authenticated=False)
        body = response.body if isinstance(response.body, dict) else {}
        token = body.get("access_token")
        if response.status != 200 or not isinstance(token, str) or not token:
            # Only the OAuth error code: descriptions may echo what was sent.
            reason = body.get("error") if isinstance(body.get("error"), str) else "no access_token"
            raise AuthError(
                f"token endpoint {token_url} refused client {self.client_id!r}: "
                f"HTTP {response.status}, {reason}"
            )
        lifetime = _seconds(body.get("expires_in"), default=JWT_LIFETIME)
        self._token = token
        self._renew_at = self.clock() + lifetime - min(REFRESH_MARGIN, lifetime / 10)

    def _assertion(self, token_url: str) -> str:
        now = int(self.clock())
        claims = {
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": token_url,
            "exp": now + JWT_LIFETIME,
            "jti": str(uuid.uuid4()),
        }
        headers = {"typ": "JWT"}
        if self.signing_key.key_id:
            headers["kid"] = self.signing_key.key_id
        return jwt.encode(
            claims, self.signing_key.key, algorithm=self.signing_key.algorithm, headers=headers
        )


async def discover_token_url(transport: TokenTransport) -> str:
    url = f"{transport.base_url}/.well-known/smart-configuration"
    response = await transport.fetch("GET", url, authenticated=False)
    body = response.body if isinstance(response.body, dict) else {}
    token_url = body.get("token_endpoint")
    if response.status != 200 or not isinstance(token_url, str):
        raise AuthError(
            f"{url}: no token_endpoint (HTTP {response.status}); set FHIR_HCC_TOKEN_URL"
        )
    return token_url


def _seconds(value: Any, default: int) -> float:
    return float(value) if isinstance(value, int | float) and value > 0 else float(default)


def build_credentials(
    options: AuthOptions,
    environ: Mapping[str, str] | None = None,
    clock: Callable[[], float] = time.time,
) -> Credentials:
    """Credentials for `options.mode`, reading secrets from `environ` (default: the process
    environment) or the named files."""
    environ = os.environ if environ is None else environ
    if options.mode == "none":
        return NoCredentials()
    if options.mode == "bearer":
        token = _secret(environ, options.token_env, options.token_file, "bearer token")
        return StaticCredentials("Bearer", token)
    if options.mode == "basic":
        if not options.username:
            raise AuthError("basic auth needs a user name: set FHIR_HCC_USERNAME")
        password = _secret(environ, options.password_env, options.password_file, "password")
        pair = base64.b64encode(f"{options.username}:{password}".encode()).decode()
        return StaticCredentials("Basic", pair)
    if not options.client_id or not options.private_key_file:
        raise AuthError("SMART backend auth needs FHIR_HCC_CLIENT_ID and FHIR_HCC_PRIVATE_KEY_FILE")
    key = load_signing_key(options.private_key_file, options.key_id, options.jwt_algorithm)
    return SmartBackendCredentials(options.client_id, key, options.scope, options.token_url, clock)


def _secret(environ: Mapping[str, str], env_name: str, path: Path | None, what: str) -> str:
    if path is not None:
        try:
            value = path.read_text().strip()
        except OSError as error:
            raise AuthError(f"{path}: cannot read the {what} file ({error.strerror})") from None
        if not value:
            raise AuthError(f"{path}: the {what} file is empty")
        return value
    value = environ.get(env_name, "").strip()
    if not value:
        raise AuthError(f"no {what}: set {env_name} or give a file")
    return value


def load_signing_key(path: Path, key_id: str | None, algorithm: str | None) -> SigningKey:
    """A private key from a PEM file or a JWKS (JSON) file; errors name the file, never the key."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise AuthError(f"{path}: cannot read the private key ({error.strerror})") from None
    if data.lstrip().startswith(b"{"):
        return _key_from_jwks(path, data, key_id, algorithm)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise AuthError(f"{path}: not an unencrypted PEM private key or a JWKS file") from None
    return SigningKey(key, _algorithm(path, key, algorithm), key_id)


def _key_from_jwks(
    path: Path, data: bytes, key_id: str | None, algorithm: str | None
) -> SigningKey:
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise AuthError(f"{path}: not valid JSON") from None
    keys = document.get("keys", [document]) if isinstance(document, dict) else []
    private = [k for k in keys if isinstance(k, dict) and "d" in k]
    chosen = [k for k in private if key_id is None or k.get("kid") == key_id]
    if not chosen:
        wanted = f" with kid {key_id!r}" if key_id else ""
        raise AuthError(f"{path}: no private key{wanted} in the JWKS")
    jwk = chosen[0]
    try:
        key = jwt.PyJWK(jwk).key
    except (jwt.PyJWKError, jwt.InvalidKeyError):
        raise AuthError(f"{path}: unusable key {jwk.get('kid', '')!r} in the JWKS") from None
    return SigningKey(key, _algorithm(path, key, algorithm or jwk.get("alg")), jwk.get("kid"))


def _algorithm(path: Path, key: Any, requested: str | None) -> str:
    derived = next((alg for kind, alg in ALGORITHM_FOR_KEY.items() if isinstance(key, kind)), None)
    if derived is None:
        raise AuthError(f"{path}: key type not supported (use RSA for RS384 or EC for ES384)")
    if requested is not None and requested != derived:
        raise AuthError(f"{path}: {requested} does not fit this key; it signs {derived}")
    return derived
