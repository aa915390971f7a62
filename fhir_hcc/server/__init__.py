"""Pulling cohorts from live FHIR servers: a search client that never loses data silently.

`ServerSource` plugs a server into the cohort stage; `pull` writes NDJSON plus a manifest;
`diagnose` is the preflight behind `fhir-hcc doctor`. Failures raise the errors in
`fhir_hcc.server.errors`, each with its own exit code.
"""

from fhir_hcc.server.errors import (
    AuthError,
    IncompleteDataError,
    ServerRefusedError,
    ServerUnreachableError,
)
from fhir_hcc.server.options import AuthOptions, ClientOptions
from fhir_hcc.server.pull import pull
from fhir_hcc.server.source import ServerSource, open_server_source

__all__ = [
    "AuthError",
    "AuthOptions",
    "ClientOptions",
    "IncompleteDataError",
    "ServerRefusedError",
    "ServerSource",
    "ServerUnreachableError",
    "open_server_source",
    "pull",
]
