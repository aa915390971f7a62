"""Settings of a server connection, from environment variables (the CLI adds its flags on top).

Options hold no secret values: only the names of the environment variables and the paths of the
files that hold them. `fhir_hcc.server.auth` reads the secrets when it builds the credentials.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from fhir_hcc.errors import ConfigError

AuthMode = Literal["none", "bearer", "basic", "smart"]
AUTH_MODES: tuple[AuthMode, ...] = ("none", "bearer", "basic", "smart")
ENV_PREFIX = "FHIR_HCC_"


@dataclass(frozen=True)
class AuthOptions:
    """Which credentials to use and where their secrets live (never the secrets themselves)."""

    mode: AuthMode = "none"
    token_env: str = "FHIR_HCC_TOKEN"  # bearer token
    token_file: Path | None = None
    username: str | None = None  # basic
    password_env: str = "FHIR_HCC_PASSWORD"
    password_file: Path | None = None
    client_id: str | None = None  # SMART Backend Services
    private_key_file: Path | None = None  # PEM private key or JWKS with private keys
    key_id: str | None = None
    jwt_algorithm: str | None = None  # RS384 or ES384; derived from the key when unset
    scope: str = "system/*.read"
    token_url: str | None = None  # overrides .well-known/smart-configuration


@dataclass(frozen=True)
class ClientOptions:
    """How to talk to one FHIR server: auth, TLS, timeouts, concurrency, retries and paging."""

    auth: AuthOptions = field(default_factory=AuthOptions)
    ca_bundle: Path | None = None
    verify_tls: bool = True
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    concurrency: int = 4
    max_retries: int = 5
    backoff_base: float = 0.5  # seconds; doubles per attempt, with jitter
    backoff_max: float = 30.0
    max_retry_wait: float = 120.0  # cap on a server's Retry-After
    export_timeout: float = 43200.0  # seconds of polling a bulk export before giving up (12 h)
    page_size: int = 500
    batch_size: int = 50  # patients per request
    max_url_length: int = 2000
    strict_handling: bool = True  # Prefer: handling=strict
    allow_gaps: bool = False  # record paging gaps in the manifest instead of failing
    profile: str | None = None  # server profile name or file; None: from the CapabilityStatement

    def __post_init__(self) -> None:
        for name in ("concurrency", "page_size", "batch_size", "max_url_length"):
            if getattr(self, name) < 1:
                raise ConfigError(f"client option {name} must be at least 1")
        if self.max_retries < 0:
            raise ConfigError("client option max_retries must not be negative")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ClientOptions:
        """Options from FHIR_HCC_* variables (listed in docs/server.md)."""
        env = os.environ if environ is None else environ
        auth_values = _options_from_env(AuthOptions, env)
        mode = env.get("FHIR_HCC_AUTH") or "none"
        if mode not in AUTH_MODES:
            raise ConfigError(f"FHIR_HCC_AUTH must be one of {', '.join(AUTH_MODES)}")
        return cls(auth=AuthOptions(mode=mode, **auth_values), **_options_from_env(cls, env))


# Environment names of the auth fields; client fields are read from FHIR_HCC_<FIELD>.
_ENV_NAMES = {
    "token_file": "FHIR_HCC_TOKEN_FILE",
    "password_file": "FHIR_HCC_PASSWORD_FILE",
    "username": "FHIR_HCC_USERNAME",
    "client_id": "FHIR_HCC_CLIENT_ID",
    "private_key_file": "FHIR_HCC_PRIVATE_KEY_FILE",
    "key_id": "FHIR_HCC_KEY_ID",
    "jwt_algorithm": "FHIR_HCC_JWT_ALG",
    "scope": "FHIR_HCC_SCOPE",
    "token_url": "FHIR_HCC_TOKEN_URL",
}
_SKIPPED_ENV_FIELDS = {"auth", "mode", "token_env", "password_env"}


def _options_from_env(kind: type, env: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for option in fields(kind):
        if option.name in _SKIPPED_ENV_FIELDS:
            continue
        name = _ENV_NAMES.get(option.name, f"{ENV_PREFIX}{option.name.upper()}")
        if name in env and env[name] != "":
            values[option.name] = _convert(name, env[name], option.default)
    return values


def _convert(name: str, text: str, default: Any) -> Any:
    try:
        if isinstance(default, bool):
            if text.lower() not in {"1", "0", "true", "false", "yes", "no"}:
                raise ValueError(text)
            return text.lower() in {"1", "true", "yes"}
        if isinstance(default, int):
            return int(text)
        if isinstance(default, float):
            return float(text)
    except ValueError:
        raise ConfigError(f"{name}: cannot read {text!r} as {type(default).__name__}") from None
    if name.endswith(("_FILE", "_BUNDLE")):
        return Path(text)
    return text
