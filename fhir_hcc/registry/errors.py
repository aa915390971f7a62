"""Registry failures, with exit codes of their own (`fhir_hcc.errors.ExitCode`)."""

from __future__ import annotations

from fhir_hcc.errors import ExitCode, FhirHccError


class RegistryError(FhirHccError):
    """A registry file that cannot be opened or read, or a run that does not exist."""

    exit_code = ExitCode.REGISTRY_BROKEN


class RegistryBusyError(FhirHccError):
    """Another sync holds the registry's lock."""

    exit_code = ExitCode.REGISTRY_BUSY
