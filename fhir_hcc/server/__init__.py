"""Pulling cohorts from live FHIR servers: a search client that never loses data silently.

`ServerSource` plugs a server into the cohort stage; `pull` writes NDJSON plus a manifest;
`diagnose` is the preflight behind `fhir-hcc doctor`. Failures raise the errors in
`fhir_hcc.server.errors`, each with its own exit code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fhir_hcc._lazy import lazy_exports

# Each public name is imported on first use: a command that reads files needs this package's
# options only (its flags), never the HTTP client.
_HOMES = {
    "AuthError": "fhir_hcc.server.errors",
    "AuthOptions": "fhir_hcc.server.options",
    "ClientOptions": "fhir_hcc.server.options",
    "IncompleteDataError": "fhir_hcc.server.errors",
    "ServerRefusedError": "fhir_hcc.server.errors",
    "ServerSource": "fhir_hcc.server.source",
    "ServerUnreachableError": "fhir_hcc.server.errors",
    "open_server_source": "fhir_hcc.server.source",
    "pull": "fhir_hcc.server.puller",
}
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

if TYPE_CHECKING:
    from fhir_hcc.server.errors import (
        AuthError,
        IncompleteDataError,
        ServerRefusedError,
        ServerUnreachableError,
    )
    from fhir_hcc.server.options import AuthOptions, ClientOptions
    from fhir_hcc.server.puller import pull
    from fhir_hcc.server.source import ServerSource, open_server_source

__getattr__, __dir__ = lazy_exports(__name__, _HOMES)
