"""The flags several commands share, and turning parsed flags into library options.

The library knows nothing of argparse: `ClientOptions` come from the environment
(`ClientOptions.from_env`) and the flags given here override them (`client_options`). Library
modules are imported inside the functions, so that `fhir-hcc --help` loads none of them.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from fhir_hcc.progress import ReadingProgress
    from fhir_hcc.server.caselist import Population
    from fhir_hcc.server.options import ClientOptions
    from fhir_hcc.server.progress import Progress


class CommandParser(argparse.ArgumentParser):
    """A parser taking `-v` and `-q` wherever it sits, so they work before or after a command.

    A sub-command's parser leaves them out of the namespace when not given (SUPPRESS), so it
    never overwrites what the top level parsed; the top level sets the defaults.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        quietness = self.add_mutually_exclusive_group()
        quietness.add_argument(
            "-v",
            "--verbose",
            action="store_true",
            default=argparse.SUPPRESS,
            help="log more to stderr: retries, resumed exports, input problems `codes` skips",
        )
        quietness.add_argument(
            "-q",
            "--quiet",
            action="store_true",
            default=argparse.SUPPRESS,
            help="print only errors to stderr (no progress, summaries or warnings)",
        )


def note(args: argparse.Namespace, text: str) -> None:
    """A summary line for the person at the terminal, on stderr unless --quiet."""
    if not args.quiet:
        print(text, file=sys.stderr)


def progress(args: argparse.Namespace) -> Progress:
    """Pull progress on stderr: bars on a terminal, lines otherwise, nothing with --quiet."""
    from fhir_hcc.server.progress import NoProgress, progress_for

    return NoProgress() if args.quiet else progress_for(sys.stderr)


def reading_progress(args: argparse.Namespace) -> ReadingProgress | None:
    """Progress of a long read of files on stderr; nothing with --quiet."""
    from fhir_hcc.progress import ReadingProgress

    return None if args.quiet else ReadingProgress(sys.stderr)


def add_mappings_argument(parser: argparse.ArgumentParser) -> None:
    """`--mappings DIR`: site mapping directories layered over the shipped ones (repeatable)."""
    parser.add_argument(
        "--mappings",
        metavar="DIR",
        action="append",
        default=[],
        help="site mapping directory layered over the shipped ones (repeatable)",
    )


def add_config_argument(parser: argparse.ArgumentParser, tables: str) -> None:
    """`--config study.toml`, naming the tables the command reads."""
    parser.add_argument(
        "--config", type=Path, metavar="study.toml", help=f"study settings; reads {tables}"
    )


def add_source_arguments(parser: argparse.ArgumentParser, tables: str = "[cohort]") -> None:
    """SOURCE and the flags of every command that builds a cohort (cohort, explain, run)."""
    parser.add_argument(
        "source", metavar="SOURCE", help="directory or file of FHIR JSON/NDJSON, or a FHIR base URL"
    )
    add_config_argument(parser, tables)
    parser.add_argument(
        "--strict", action="store_true", help="stop at the first bad input (exit code 2)"
    )
    parser.add_argument(
        "--workers",
        type=positive,
        metavar="N",
        help="processes reading a large NDJSON export (default: one per core)",
    )
    parser.add_argument(
        "--pull-dir", type=Path, metavar="DIR", help="with a server SOURCE: keep what was pulled"
    )
    add_mappings_argument(parser)
    add_engine_arguments(parser)
    add_population_arguments(parser)
    add_client_arguments(parser)


def add_engine_arguments(parser: argparse.ArgumentParser) -> None:
    """`--engine` and `--spark-master` (cohort, explain, run, codes)."""
    group = parser.add_argument_group("engine")
    group.add_argument(
        "--engine",
        choices=("local", "spark"),
        default="local",
        help="local: processes on this machine (default); spark: Apache Spark, for a folder or "
        "a URI Spark reads (s3a://, abfss://, gs://, hdfs://, dbfs:/); docs/spark.md",
    )
    group.add_argument(
        "--spark-master",
        metavar="URL",
        help="with --engine spark: the cluster (spark://..., yarn, k8s://..., local[N]); "
        "default: Spark's configuration (spark-defaults, MASTER), else local[*]",
    )


def spark_session(args: argparse.Namespace) -> SparkSession:
    """The Spark session of `--engine spark [--spark-master URL]`."""
    from fhir_hcc.spark import start_session

    return start_session(args.spark_master)


def check_engine(args: argparse.Namespace, local_only: dict[str, object]) -> None:
    """Refuse flags the chosen engine does not take: `local_only` maps flag -> value given."""
    from fhir_hcc.errors import FhirHccError

    if args.engine != "spark":
        if args.spark_master:
            raise FhirHccError("--spark-master needs --engine spark")
        return
    for flag, value in local_only.items():
        if value:
            raise FhirHccError(f"{flag} is for the local engine; --engine spark does not take it")


def add_population_arguments(
    parser: argparse.ArgumentParser, group_help: str = "the members of Group/ID on the server"
) -> None:
    """The starting population: a case list instead of the patients found by code (servers
    such as Epic and Oracle Health search clinical data only per patient)."""
    group = parser.add_argument_group(
        "starting population (default: patients with a mapped code, where the server allows "
        "searches without a patient)"
    )
    chosen = group.add_mutually_exclusive_group()
    chosen.add_argument(
        "--patients",
        type=Path,
        metavar="FILE",
        help="FHIR Patient ids, one a line (or a CSV with an id or patient_id column)",
    )
    chosen.add_argument(
        "--identifiers",
        type=Path,
        metavar="FILE",
        help="MRNs or other identifiers, one system|value a line (or a CSV with an mrn or "
        "identifier column); each is resolved with one Patient?identifier= search",
    )
    chosen.add_argument("--group", metavar="ID", help=group_help)
    group.add_argument(
        "--identifier-system", metavar="URI", help="the system of bare values in --identifiers"
    )


def population(args: argparse.Namespace) -> Population | None:
    """The case list the flags name (read and checked now), or None."""
    from fhir_hcc.errors import ConfigError
    from fhir_hcc.server import caselist

    if args.identifier_system and not args.identifiers:
        raise ConfigError("--identifier-system goes with --identifiers")
    if args.patients:
        return caselist.read_patients(args.patients)
    if args.identifiers:
        return caselist.read_identifiers(args.identifiers, args.identifier_system)
    if args.group:
        return caselist.group(args.group)
    return None


def add_registry_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--registry",
        type=Path,
        metavar="PATH",
        help="registry file (default $FHIR_HCC_REGISTRY, else "
        "~/.local/share/fhir-hcc/registry.sqlite)",
    )


def add_export_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """`--no-type-filter` of a Bulk Data export (pull --bulk, sync); its `--group` is the
    population's (`add_population_arguments`)."""
    parser.add_argument(
        "--no-type-filter",
        action="store_true",
        help="do not send _typeFilter with the export (for servers that reject it)",
    )


def add_suppress_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--suppress-below",
        type=non_negative,
        metavar="K",
        help="show counts from 1 to K-1 as <K (reports leaving the hospital); 0 = off",
    )


def add_client_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags for everything but secrets; secrets come from FHIR_HCC_* variables or files."""
    from fhir_hcc.server.options import AUTH_MODES

    group = parser.add_argument_group("server connection (secrets: environment or files only)")
    group.add_argument("--auth", choices=AUTH_MODES, help="authentication (env FHIR_HCC_AUTH)")
    group.add_argument("--token-file", type=Path, help="file holding a bearer token")
    group.add_argument("--password-file", type=Path, help="file holding the basic-auth password")
    group.add_argument("--client-id", help="SMART Backend Services client id")
    group.add_argument("--private-key-file", type=Path, help="SMART signing key: PEM or JWKS")
    group.add_argument("--key-id", help="kid of the SMART signing key")
    group.add_argument("--scope", help="SMART scopes (default system/*.read)")
    group.add_argument("--token-url", help="token endpoint (default: smart-configuration)")
    group.add_argument(
        "--profile",
        metavar="NAME|FILE",
        help="server profile: generic, epic, oracle-health, hapi, or a site profile file "
        "(default: from the CapabilityStatement; env FHIR_HCC_PROFILE)",
    )
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


# Flag -> field of AuthOptions / ClientOptions, for the flags that carry a value.
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
    "profile": "profile",
}


def client_options(
    args: argparse.Namespace, environ: Mapping[str, str] | None = None
) -> ClientOptions:
    """Environment first, then the flags given on the command line."""
    from fhir_hcc.server.options import ClientOptions

    base = ClientOptions.from_env(environ)
    auth_changes = _given(args, _AUTH_FLAGS)
    changes = _given(args, _CLIENT_FLAGS)
    if args.insecure:
        changes["verify_tls"] = False
    if args.lenient:
        changes["strict_handling"] = False
    if args.allow_gaps:
        changes["allow_gaps"] = True
    return replace(base, auth=replace(base.auth, **auth_changes), **changes)


def _given(args: argparse.Namespace, names: Mapping[str, str]) -> dict[str, Any]:
    return {
        target: getattr(args, flag)
        for flag, target in names.items()
        if getattr(args, flag) is not None
    }


def non_negative(text: str) -> int:
    return _whole_number(text, 0)


def positive(text: str) -> int:
    return _whole_number(text, 1)


def _whole_number(text: str, least: int) -> int:
    try:
        value = int(text)
    except ValueError:
        value = least - 1
    if value < least:
        raise argparse.ArgumentTypeError(f"expected a whole number >= {least}, got {text!r}")
    return value
