"""Writing a cohort result: the table as CSV or Parquet, flow.json and qc.csv."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from fhir_hcc.cohort import CohortResult
from fhir_hcc.contract import for_parquet
from fhir_hcc.errors import FhirHccError

if TYPE_CHECKING:
    import pandas as pd


def write_table(table: pd.DataFrame, path: str | Path) -> None:
    """CSV, or Parquet (with date and integer types) when the name ends in .parquet."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".parquet":
            for_parquet(table).to_parquet(path, index=False)
        else:
            table.to_csv(path, index=False)
    except OSError as error:
        raise FhirHccError(f"{path}: cannot write: {error.strerror}") from None


def write_json(data: object, path: str | Path) -> None:
    _write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2) + b"\n", Path(path))


def write_text(text: str, path: str | Path) -> None:
    _write_bytes(text.encode("utf-8"), Path(path))


def write_bytes(data: bytes, path: str | Path) -> None:
    _write_bytes(data, Path(path))


def write_result(
    result: CohortResult,
    out: str | Path | None,
    flow: str | Path | None = None,
    qc: str | Path | None = None,
    provenance: Mapping[str, Any] | None = None,
) -> None:
    """The table to `out` (None: written elsewhere, as Spark writes it to a URI), flow.json
    (with the build's `provenance`, for the report) and the QC log to theirs."""
    if out is not None:
        write_table(result.table, out)
    if flow is not None:
        write_json(result.flow | ({"provenance": dict(provenance)} if provenance else {}), flow)
    if qc is not None:
        write_table(result.qc, qc)


def _write_bytes(data: bytes, path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    except OSError as error:
        raise FhirHccError(f"{path}: cannot write: {error.strerror}") from None
