"""Failures of a server pull, each with its own exit code so scheduled syncs can tell them apart."""

from __future__ import annotations

from fhir_hcc.errors import ExitCode, FhirHccError


class ServerUnreachableError(FhirHccError):
    """No usable answer: connection errors, timeouts or retryable statuses after every retry."""

    exit_code = ExitCode.SERVER_UNREACHABLE


class AuthError(FhirHccError):
    """Credentials missing, rejected, or a token endpoint that does not issue a token."""

    exit_code = ExitCode.AUTH_FAILED


class IncompleteDataError(FhirHccError):
    """The server answered, but the answer cannot be trusted to be complete."""

    exit_code = ExitCode.INCOMPLETE_DATA


class ServerRefusedError(IncompleteDataError):
    """A request the server rejected (4xx other than auth, 501), e.g. an unsupported parameter."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status
