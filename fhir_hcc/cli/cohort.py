"""`fhir-hcc cohort SOURCE --out cohort.csv`: build the cohort table, flow and QC."""

from __future__ import annotations

import argparse
from typing import Any

from fhir_hcc.cli.arguments import (
    add_source_arguments,
    check_engine,
    client_options,
    note,
    population,
    reading_progress,
    spark_session,
)
from fhir_hcc.cohort import CohortResult, build_cohort
from fhir_hcc.config import load_config
from fhir_hcc.errors import ConfigError, FhirHccError, InputError
from fhir_hcc.inputs import is_server_url, is_uri
from fhir_hcc.mappings import load_mappings, mapping_directories
from fhir_hcc.output import write_result
from fhir_hcc.provenance import cohort_provenance


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = "Build the cohort table (one row per included patient) from FHIR R4 data."
    add_source_arguments(parser)
    parser.add_argument(
        "--out",
        required=True,
        help="cohort table: .csv or .parquet; with --engine spark also a URI, written as "
        "Parquet by Spark (s3a://bucket/cohort/)",
    )
    parser.add_argument("--flow", help="write the CONSORT/STROBE flow counts to this JSON file")
    parser.add_argument("--qc", help="write every data-quality decision to this CSV file")
    parser.set_defaults(func=run)


def build_from_args(args: argparse.Namespace) -> CohortResult:
    """The cohort of SOURCE, as the flags of `add_source_arguments` say (cohort, explain, run)."""
    check_engine(args, {"--strict": args.strict, "--workers": args.workers})
    config = load_config(args.config)
    mappings = load_mappings([*config.mappings, *args.mappings])
    if args.engine == "spark":
        if is_server_url(args.source):
            raise InputError(
                f"{args.source}: the Spark engine reads files (a folder or a URI Spark reads), "
                "not a FHIR server; pull it first (fhir-hcc pull)"
            )
        from fhir_hcc.spark import build_cohort as build_on_spark

        return build_on_spark(spark_session(args), args.source, config, mappings)
    server_options = None
    listed = population(args)
    if is_server_url(args.source):
        server_options = {
            "options": client_options(args),
            "workdir": args.pull_dir,
            "population": listed,
        }
    elif listed is not None:
        raise ConfigError("--patients, --identifiers and --group name a server's patients")
    return build_cohort(
        args.source,
        config,
        strict=args.strict,
        mappings=mappings,
        workers=args.workers,
        server_options=server_options,
        progress=reading_progress(args),
    )


def provenance_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """What the cohort of `build_from_args` was built from, for flow.json and the report."""
    config = load_config(args.config)
    directories = mapping_directories([*config.mappings, *args.mappings])
    return cohort_provenance(args.source, config, args.config, directories, args.pull_dir)


def run(args: argparse.Namespace) -> int:
    for flag in ("flow", "qc"):
        if is_uri(getattr(args, flag) or ""):
            raise FhirHccError(f"--{flag} {getattr(args, flag)}: write it to a local file")
    if is_uri(args.out) and args.engine != "spark":
        raise FhirHccError(f"--out {args.out}: a URI is written by Spark (--engine spark)")
    result = build_from_args(args)
    out = args.out
    if is_uri(out):
        from fhir_hcc.spark import SparkCohortResult

        assert isinstance(result, SparkCohortResult)
        result.frame.write.mode("overwrite").parquet(out)
        out = None
    write_result(result, out, args.flow, args.qc, provenance_from_args(args))
    note(args, summary(result))
    return 0


def summary(result: CohortResult) -> str:
    """A few lines a person reads after a run: the flow and the problems met."""
    lines = ["flow:"]
    for step in result.flow["steps"]:
        lines.append(f"  {step['step']:<28} {step['n']:>6}")
        for reason, count in step["left_out"].items():
            lines.append(f"      - {reason}: {count}")
    problems = result.flow["input"]["problems"]
    skipped = sum(result.flow["input"]["skipped"].values())
    lines.append(f"input problems: {problems}; resources skipped by rule: {skipped}")
    return "\n".join(lines)
