"""User-facing errors: one clear line, never a traceback; and every exit code of `fhir-hcc`."""

from enum import IntEnum


class ExitCode(IntEnum):
    """What a `fhir-hcc` exit status means (README "Exit codes"), so schedulers can tell
    failures apart. Each error class carries its code; argparse's usage errors are 2 as well."""

    OK = 0
    CHECKS_FAILED = 1  # validate: a case failed or was unusable; lint-mappings: findings
    BAD_INPUT = 2  # bad input data, configuration or command line
    SERVER_UNREACHABLE = 3  # no usable answer after every retry
    AUTH_FAILED = 4  # credentials missing or rejected
    INCOMPLETE_DATA = 5  # the server answered, but not completely (what arrived is kept)
    REGISTRY_BUSY = 6  # another sync holds the registry's lock
    REGISTRY_BROKEN = 7  # the registry file cannot be used
    INTERRUPTED = 130  # Ctrl-C (128 + SIGINT)


class FhirHccError(Exception):
    """An error the user can act on; the CLI prints its message and exits with `exit_code`."""

    exit_code: ExitCode = ExitCode.BAD_INPUT


class InputError(FhirHccError):
    """Bad input data: names the file, line, resource id and field."""


class ConfigError(FhirHccError):
    """A study configuration or mapping file that cannot be used."""


class MissingExtraError(ConfigError):
    """A feature whose optional packages are not installed; the message names the extra."""
