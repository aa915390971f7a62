"""Registry failures with exit codes of their own (server failures keep theirs: 3, 4, 5)."""

from __future__ import annotations

from fhir_hcc.errors import FhirHccError

EXIT_REGISTRY_BUSY = 6
EXIT_REGISTRY_BROKEN = 7


class RegistryError(FhirHccError):
    """A registry file that cannot be opened or read, or a run that does not exist."""

    exit_code = EXIT_REGISTRY_BROKEN


class RegistryBusyError(FhirHccError):
    """Another sync holds the registry's lock."""

    exit_code = EXIT_REGISTRY_BUSY
