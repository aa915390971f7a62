"""The cohort contract has one home (`fhir_hcc.contract`): the README's table says the same, and
the table has the same types whether built, read back from CSV or read back from Parquet."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

import fhir_hcc
from fhir_hcc.analysis import load_cohort
from fhir_hcc.cli import main
from fhir_hcc.contract import CATEGORIES, COLUMN_TYPES, COLUMNS, DTYPES, EXTRA_COLUMNS
from fhir_hcc.output import write_table

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def readme_section(title: str) -> str:
    return README.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def contract_rows() -> dict[str, str]:
    """README contract table: each column named in a row's first cell -> that row's text."""
    rows = {}
    for line in readme_section("The cohort contract").splitlines():
        cells = line.split("|")
        if len(cells) < 3 or not cells[1].strip().startswith("`"):
            continue
        for name in re.findall(r"`([a-z_]+)`", cells[1]):
            rows[name] = cells[2]
    return rows


def spelled(text: str) -> str:
    """Value lists as the README writes them ("major (>= 3 segments) / minor") without the
    asides and the spaces around the slashes."""
    return re.sub(r"\s*/\s*", "/", re.sub(r"\([^)]*\)", "", text))


def test_readme_table_lists_the_contract_columns_in_order():
    assert tuple(contract_rows()) == COLUMNS


def test_readme_table_spells_every_category_value():
    rows = contract_rows()
    for column, values in CATEGORIES.items():
        if column in rows:
            assert "/".join(values) in spelled(rows[column]), column


def test_readme_lists_the_further_columns_in_order():
    paragraph = readme_section("The cohort contract").split("Further columns:", 1)[1]
    paragraph = paragraph.split("\n\n", 1)[0]
    assert tuple(re.findall(r"`([a-z_]+)`", paragraph))[: len(EXTRA_COLUMNS)] == EXTRA_COLUMNS
    assert all(value in paragraph for value in CATEGORIES["sequence_order"])


@pytest.fixture(scope="module")
def built() -> pd.DataFrame:
    return fhir_hcc.build_cohort(ROOT / "fixtures" / "salvage2004").table


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_built_and_loaded_tables_have_the_same_types_and_values(built, tmp_path, suffix):
    path = tmp_path / f"cohort{suffix}"
    write_table(built, path)
    loaded = load_cohort(path)
    assert list(loaded.columns) == list(built.columns) == [*COLUMNS, *EXTRA_COLUMNS]
    expected = {column: DTYPES[COLUMN_TYPES[column]] for column in built.columns}
    assert {c: str(t) for c, t in built.dtypes.items()} == expected
    assert {c: str(t) for c, t in loaded.dtypes.items()} == expected
    pd.testing.assert_frame_equal(loaded, built, check_exact=False, rtol=1e-9)


def test_parquet_stores_dates_as_dates_and_categories_as_dictionaries(built, tmp_path):
    import pyarrow.parquet as pq

    path = tmp_path / "cohort.parquet"
    write_table(built, path)
    schema = pq.read_schema(path)
    assert str(schema.field("surgery_date").type) == "date32[day]"
    assert str(schema.field("downstaging_end").type) == "date32[day]"
    assert str(schema.field("treatment_group").type).startswith("dictionary")
    assert str(schema.field("age_at_surgery").type) == "int64"


def test_parquet_cohort_goes_through_analyze(built, tmp_path):
    cohort = tmp_path / "cohort.parquet"
    write_table(built, cohort)
    report = tmp_path / "report.json"
    assert main(["analyze", str(cohort), "--out", str(report)]) == 0
    assert json.loads(report.read_text())["n"] == 49


def test_a_damaged_parquet_file_is_one_line_naming_it(tmp_path):
    from fhir_hcc.errors import InputError

    path = tmp_path / "cohort.parquet"
    path.write_bytes(b"PAR1 not really")
    with pytest.raises(InputError, match=rf"^{re.escape(str(path))}: not a readable Parquet table"):
        load_cohort(path)
