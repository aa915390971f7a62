"""The Spark engine gives exactly the local engine's cohort table, flow, QC and problems."""

from __future__ import annotations

import random
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import orjson
import pandas as pd
import pytest

import fhir_hcc
from fhir_hcc.cohort import CohortResult
from fhir_hcc.contract import as_types
from fhir_hcc.spark import build_cohort
from fhir_hcc.validate import load_case
from fhir_hcc.validate.run import _write_inputs

from .exports import ROOT, SALVAGE, reference_resources, write_messy_export

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

EDGE_CASES = ROOT / "fixtures" / "edge-cases"
# The cases with NDJSON files, and those where patients or resources meet across files.
NDJSON_CASES = sorted(
    str(path.relative_to(EDGE_CASES))
    for path in EDGE_CASES.rglob("*.yaml")
    if ".ndjson" in path.read_text(encoding="utf-8")
)
CROSS_PATIENT_CASES = [
    "patients/link-replaced-by-merged.yaml",
    "medications/reference-to-medication.yaml",
    "medications/reference-to-missing-medication.yaml",
]


def assert_same(local: CohortResult, spark: CohortResult) -> None:
    pd.testing.assert_frame_equal(local.table, spark.table)
    assert local.flow == spark.flow
    pd.testing.assert_frame_equal(local.qc, spark.qc)
    assert [str(p) for p in local.problems] == [str(p) for p in spark.problems]


@contextmanager
def small_splits(spark: SparkSession, size: str = "64k") -> Iterator[None]:
    """Spark cuts plain NDJSON files into splits of about `size` (line numbers must hold)."""
    key = "spark.sql.files.maxPartitionBytes"
    before = spark.conf.get(key)
    spark.conf.set(key, size)
    try:
        yield
    finally:
        spark.conf.set(key, before)


@pytest.fixture(scope="module")
def messy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("messy")
    write_messy_export(folder)
    return folder


def test_reference_bundles(spark: SparkSession) -> None:
    local = fhir_hcc.build_cohort(SALVAGE)
    result = build_cohort(spark, SALVAGE)
    assert_same(local, result)
    assert len(result.table) == 49 and len(result.patients) == len(local.patients) == 57
    for patient_id in ("P18", "N05"):  # an included patient, an excluded one
        assert result.patients[patient_id] == local.patients[patient_id]
    assert "no-such-patient" not in result.patients
    pd.testing.assert_frame_equal(as_types(result.frame.toPandas()), local.table)


def test_split_ndjson_with_malformed_lines(spark: SparkSession, messy: Path) -> None:
    local = fhir_hcc.build_cohort(messy, workers=1)
    with small_splits(spark):
        splits = spark.read.text(str(messy / "Observation.ndjson")).rdd.getNumPartitions()
        result = build_cohort(spark, messy)
    assert splits > 5
    assert_same(local, result)
    lines = (messy / "Observation.ndjson").read_bytes().split(b"\n")
    cut = next(number for number, line in enumerate(lines, start=1) if b'"cut' in line)
    found = {(p.origin.location.rsplit("/", 1)[-1], p.origin.line) for p in result.problems}
    assert ("Observation.ndjson", cut) in found
    assert ("Procedure.ndjson.gz", None) in found  # the gzip stream cut short


def test_malformed_corpus(spark: SparkSession) -> None:
    """fixtures/malformed: a BOM, CRLF, NUL bytes, invalid UTF-8, NaN, duplicate keys, arrays,
    deep nesting and wrong shapes, one file each."""
    corpus = ROOT / "fixtures" / "malformed" / "_data"
    local = fhir_hcc.build_cohort(corpus, workers=1)
    assert_same(local, build_cohort(spark, corpus))
    assert len(local.problems) > 5


def test_uri_source(spark: SparkSession, messy: Path) -> None:
    """A URI is listed through Hadoop's file system and named by its URI in problems."""
    local = fhir_hcc.build_cohort(messy, workers=1)
    result = build_cohort(spark, f"file://{messy}")
    pd.testing.assert_frame_equal(local.table, result.table)
    assert local.flow == result.flow
    assert [str(p) for p in result.problems] == [
        str(p).replace(str(messy), f"file:{messy}", 1) for p in local.problems
    ]


def test_gzip_benchmark_export(spark: SparkSession, tmp_path: Path) -> None:
    export = tmp_path / "export"
    command = [sys.executable, str(ROOT / "bench" / "make_export.py"), "30000", "--gzip"]
    subprocess.run([*command, "--seed", "14", "--out", str(export)], check=True)
    local = fhir_hcc.build_cohort(export, workers=1)
    result = build_cohort(spark, export)
    assert_same(local, result)
    assert sum(local.flow["input"]["resources_read"].values()) == 30000
    assert len(result.table) > 0


@pytest.mark.parametrize("case", NDJSON_CASES + CROSS_PATIENT_CASES)
def test_edge_cases(spark: SparkSession, case: str, tmp_path: Path) -> None:
    loaded = load_case(EDGE_CASES / case)
    _write_inputs(loaded, tmp_path)  # the case's files, as `fhir-hcc validate` lays them out
    local = fhir_hcc.build_cohort(tmp_path, loaded.config)
    result = build_cohort(spark, tmp_path, loaded.config)
    assert_same(local, result)


def test_replaced_by_chains_and_duplicates_across_files(
    spark: SparkSession, tmp_path: Path
) -> None:
    """Patients linked across files (P03 -> P02 -> P01, and a cycle) meet in one place; a second
    copy of a Patient in a later file is noted as a duplicate, in both engines."""
    by_id = {}
    for lines in reference_resources().values():
        for line in lines:
            resource = orjson.loads(line)
            by_id[f"{resource['resourceType']}/{resource['id']}"] = resource
    links = {"P03": "P02", "P02": "P01", "P10": "P11", "P11": "P10"}
    for old, new in links.items():
        by_id[f"Patient/{old}"]["link"] = [
            {"other": {"reference": f"Patient/{new}"}, "type": "replaced-by"}
        ]
    resources = list(by_id.values())
    random.Random(14).shuffle(resources)
    for index in range(40):
        lines = [orjson.dumps(resource) for resource in resources[index::40]]
        (tmp_path / f"{index:02d}.ndjson").write_bytes(b"\n".join(lines) + b"\n")
    copy = dict(by_id["Patient/P01"], birthDate="1950", gender="nonsense")  # a note, a problem
    (tmp_path / "zz-copy.ndjson").write_bytes(orjson.dumps(copy) + b"\n")  # read last
    local = fhir_hcc.build_cohort(tmp_path, workers=1)
    result = build_cohort(spark, tmp_path)
    assert_same(local, result)
    rules = set(result.qc["rule"])
    assert {"patient_merged", "duplicate_resource"} <= rules


def test_dataframe_source(spark: SparkSession, tmp_path: Path) -> None:
    """A table of resource JSON (a row a resource) gives the files' cohort; its problems name
    the table's rows, in the order Spark reads them."""
    from pyspark.sql import functions as F

    write_messy_export(tmp_path, compressed=False)
    (tmp_path / "manifest.json").unlink()  # a table holds resources only
    files = sorted(str(path) for path in tmp_path.rglob("*.ndjson"))
    table = spark.read.option("lineSep", "\n").text(files)
    local = fhir_hcc.build_cohort(tmp_path, workers=1)
    result = build_cohort(spark, table, name="bronze")
    pd.testing.assert_frame_equal(local.table, result.table)
    assert local.flow == result.flow
    notes = local.qc[~local.qc["rule"].str.startswith("input_")]
    pd.testing.assert_frame_equal(notes, result.qc.iloc[: len(notes)])
    rows = [bytes(row[0]) for row in table.select(F.col("value").cast("binary")).collect()]

    def line_of(location: str, number: int | None) -> bytes:
        assert number is not None
        if location == "bronze":
            return rows[number - 1]
        return Path(location).read_bytes().split(b"\n")[number - 1].rstrip(b"\r")

    def problems(result: CohortResult) -> list[tuple[str, bytes]]:
        found = [(p.message, line_of(p.origin.location, p.origin.line)) for p in result.problems]
        return sorted(found)

    assert problems(result) == problems(local)
    assert len(local.problems) > 5 and {p.origin.location for p in result.problems} == {"bronze"}


def test_hidden_files_are_noted_by_both_engines(spark: SparkSession, tmp_path: Path) -> None:
    """Spark reads no file named `.x` or `_x`, and neither does the local engine: a note each."""
    (tmp_path / "Patient.ndjson").write_bytes(reference_resources()["Patient"][0] + b"\n")
    (tmp_path / "._Patient.ndjson").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    result = build_cohort(spark, tmp_path)
    expected = [f"{tmp_path}/._Patient.ndjson: a hidden file, not FHIR: skipped"]
    assert [str(p) for p in result.problems] == expected
    assert [str(p) for p in fhir_hcc.build_cohort(tmp_path).problems] == expected
    assert result.flow["input"]["warnings"] == 1
    assert result.flow["input"]["resources_read"] == {"Patient": 1}
