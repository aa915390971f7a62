"""User-facing errors: one clear line, never a traceback."""


class FhirHccError(Exception):
    """An error the user can act on; the CLI prints its message and exits with `exit_code`."""

    exit_code = 2


class InputError(FhirHccError):
    """Bad input data: names the file, line, resource id and field."""


class ConfigError(FhirHccError):
    """A study configuration or mapping file that cannot be used."""
