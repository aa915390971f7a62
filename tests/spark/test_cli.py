"""`--engine spark` on cohort, explain and codes: the same files as the local engine writes."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import pytest

from fhir_hcc.cli import main
from fhir_hcc.contract import as_types

from .exports import SALVAGE, write_messy_export

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def cohort_files(folder: Path, *engine: str) -> dict[str, bytes]:
    out = [f"--out={folder}/cohort.csv", f"--flow={folder}/flow.json", f"--qc={folder}/qc.csv"]
    assert main(["cohort", str(SALVAGE), *out, *engine]) == 0
    return {path.name: path.read_bytes() for path in folder.iterdir()}


def test_cohort_files_are_the_local_engines(spark: SparkSession, tmp_path: Path) -> None:
    local = cohort_files(tmp_path / "local")
    on_spark = cohort_files(tmp_path / "spark", "--engine", "spark")
    assert on_spark == local and set(local) == {"cohort.csv", "flow.json", "qc.csv"}


def test_a_uri_out_is_parquet_written_by_spark(spark: SparkSession, tmp_path: Path) -> None:
    local = tmp_path / "local.csv"
    assert main(["cohort", str(SALVAGE), "--out", str(local)]) == 0
    uri = f"file://{tmp_path}/cohort"
    assert main(["cohort", str(SALVAGE), "--engine", "spark", "--out", uri]) == 0
    written = pd.read_parquet(tmp_path / "cohort")  # a folder of part files
    expected = as_types(pd.read_csv(local, dtype={"patient_id": str}))
    pd.testing.assert_frame_equal(as_types(written), expected, check_dtype=False)


def test_explain_is_the_local_engines(
    spark: SparkSession, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["explain", str(SALVAGE), "P18"]) == 0
    local = capsys.readouterr().out
    assert main(["explain", str(SALVAGE), "P18", "--engine", "spark"]) == 0
    assert capsys.readouterr().out == local and "INCLUDED" in local


def test_codes_are_the_local_engines(
    spark: SparkSession, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_messy_export(tmp_path)
    outputs = []
    for engine in ("local", "spark"):
        out = tmp_path.parent / f"codes-{engine}.csv"
        assert main(["codes", str(tmp_path), "--out", str(out), "--engine", engine]) == 0
        outputs.append((out.read_bytes(), capsys.readouterr().err))
    assert outputs[0] == outputs[1]
    assert "input problems skipped" in outputs[0][1]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--spark-master", "local[2]"], "--spark-master needs --engine spark"),
        (["--engine", "spark", "--strict"], "--strict is for the local engine"),
        (["--engine", "spark", "--workers", "2"], "--workers is for the local engine"),
        (["--out", "s3a://bucket/cohort"], "a URI is written by Spark (--engine spark)"),
        (["--engine", "spark", "--qc", "s3a://bucket/qc.csv"], "write it to a local file"),
    ],
)
def test_flags_the_engine_does_not_take(
    flags: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Refused before any Spark session starts."""
    argv = ["cohort", str(SALVAGE), "--out", str(tmp_path / "c.csv"), *flags]
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_spark_refuses_a_server(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["cohort", "https://fhir.example.org/r4", "--engine", "spark", "--out", "c.csv"]
    assert main(argv) == 2
    assert "pull it first" in capsys.readouterr().err
