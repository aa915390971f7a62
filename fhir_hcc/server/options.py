"""Settings of a server connection, from environment variables and command-line flags.

Options hold no secret values: only the names of the environment variables and the paths of the
files that hold them. `fhir_hcc.server.auth` reads the secrets when it builds the credentials.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
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


def add_client_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags for everything but secrets; secrets come from FHIR_HCC_* variables or files."""
    group = parser.add_argument_group("server connection (secrets: environment or files only)")
    group.add_argument("--auth", choices=AUTH_MODES, help="authentication (env FHIR_HCC_AUTH)")
    group.add_argument("--token-file", type=Path, help="file holding a bearer token")
    group.add_argument("--password-file", type=Path, help="file holding the basic-auth password")
    group.add_argument("--client-id", help="SMART Backend Services client id")
    group.add_argument("--private-key-file", type=Path, help="SMART signing key: PEM or JWKS")
    group.add_argument("--key-id", help="kid of the SMART signing key")
    group.add_argument("--scope", help="SMART scopes (default system/*.read)")
    group.add_argument("--token-url", help="token endpoint (default: smart-configuration)")
    group.add_argument("--ca-bundle", type=Path, help="PEM file of trusted CA certificates")
    group.add_argument(
        "--insecure", action="store_true", help="do not verify TLS certificates (testing only)"
    )
    group.add_argument("--timeout", type=float, help="read timeout per request, seconds")
    group.add_argument("--concurrency", type=int, help="requests in flight at most (default 4)")
    group.add_argument("--retries", type=int, help="retries per request (default 5)")
    group.add_argument("--max-retry-wait", type=float, help="cap on Retry-After, seconds")
    group.add_argument(
        "--export-timeout",
        type=float,
        help="give up waiting for a bulk export after this many seconds (default 43200: 12 h); "
        "the next run resumes the same job",
    )
    group.add_argument("--page-size", type=int, help="_count per page (default 500)")
    group.add_argument("--batch-size", type=int, help="patients per request (default 50)")
    group.add_argument(
        "--lenient",
        action="store_true",
        help="do not send Prefer: handling=strict (unsupported parameters then only warn)",
    )
    group.add_argument(
        "--allow-gaps",
        action="store_true",
        help="record paging gaps in the manifest instead of failing",
    )


_AUTH_FLAGS = {
    "token_file": "token_file",
    "password_file": "password_file",
    "client_id": "client_id",
    "private_key_file": "private_key_file",
    "key_id": "key_id",
    "scope": "scope",
    "token_url": "token_url",
    "auth": "mode",
}
_CLIENT_FLAGS = {
    "ca_bundle": "ca_bundle",
    "timeout": "read_timeout",
    "concurrency": "concurrency",
    "retries": "max_retries",
    "max_retry_wait": "max_retry_wait",
    "export_timeout": "export_timeout",
    "page_size": "page_size",
    "batch_size": "batch_size",
}


def options_from_args(
    args: argparse.Namespace, environ: Mapping[str, str] | None = None
) -> ClientOptions:
    """Environment first, then the flags given on the command line."""
    base = ClientOptions.from_env(environ)
    auth_changes = _given(args, _AUTH_FLAGS)
    changes = _given(args, _CLIENT_FLAGS)
    if getattr(args, "insecure", False):
        changes["verify_tls"] = False
    if getattr(args, "lenient", False):
        changes["strict_handling"] = False
    if getattr(args, "allow_gaps", False):
        changes["allow_gaps"] = True
    return replace(base, auth=replace(base.auth, **auth_changes), **changes)


def _given(args: argparse.Namespace, names: Mapping[str, str]) -> dict[str, Any]:
    return {
        target: getattr(args, flag)
        for flag, target in names.items()
        if getattr(args, flag, None) is not None
    }
