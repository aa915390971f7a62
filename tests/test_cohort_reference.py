"""The reference fixtures must give exactly the reference 49-patient table."""

from datetime import date
from pathlib import Path

import pandas as pd
import pytest

import fhir_hcc
from fhir_hcc.cohort import COLUMNS
from fhir_hcc.contract import DATE_COLUMNS

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures" / "salvage2004"
REFERENCE = ROOT / "fixtures" / "reference" / "salvage2004-cohort.csv"

SEX = {"M": "male", "F": "female"}
GROUP = {
    "COMBO": "combination_chemo",
    "SINGLE": "single_agent_chemo",
    "Y90": "y90",
    "SEQ": "sequential",
}


@pytest.fixture(scope="module")
def result() -> fhir_hcc.CohortResult:
    return fhir_hcc.build_cohort(FIXTURES)


@pytest.fixture(scope="module")
def merged(result: fhir_hcc.CohortResult) -> pd.DataFrame:
    reference = pd.read_csv(REFERENCE, dtype=str, keep_default_na=False)
    table = result.table.astype({"age_at_surgery": int})
    for column in DATE_COLUMNS:  # dates as the reference file writes them
        table[column] = table[column].dt.strftime("%Y-%m-%d")
    reference = reference.add_prefix("ref_")
    return reference.merge(
        table, left_on="ref_id", right_on="patient_id", how="outer", indicator=True
    )


def test_exactly_the_reference_patients(merged: pd.DataFrame) -> None:
    assert (merged["_merge"] == "both").all(), merged.loc[
        merged["_merge"] != "both", ["id", "patient_id"]
    ]
    assert len(merged) == 49


def test_contract_columns_come_first(result: fhir_hcc.CohortResult) -> None:
    assert tuple(result.table.columns[: len(COLUMNS)]) == COLUMNS


def test_headline_counts(result: fhir_hcc.CohortResult) -> None:
    table = result.table
    assert table["sex"].value_counts().to_dict() == {"male": 40, "female": 9}
    assert (table["age_at_surgery"].min(), table["age_at_surgery"].max()) == (12, 69)
    assert table["hbv_status"].value_counts().to_dict() == {"positive": 40, "negative": 9}
    assert table["treatment_group"].value_counts().to_dict() == {
        "combination_chemo": 32, "single_agent_chemo": 8, "sequential": 5, "y90": 4,
    }  # fmt: skip
    assert table["resection_extent"].value_counts().to_dict() == {"major": 28, "minor": 21}
    assert table["complete_necrosis"].value_counts().to_dict() == {"no": 36, "yes": 13}
    assert (table["recurrence"] == "yes").sum() == 21
    assert table["recurrence_site"].value_counts().to_dict() == {
        "intrahepatic": 14,
        "extrahepatic": 7,
    }
    assert table["os_event"].sum() == 22


@pytest.mark.parametrize(
    ("ours", "theirs", "convert"),
    [
        ("sex", "sex", SEX.get),
        ("age_at_surgery", "age", int),
        ("hbv_status", "hbsag_pos", {"1": "positive", "0": "negative"}.get),
        ("treatment_group", "group", GROUP.get),
        ("resection_extent", "resection", str.lower),
        ("complete_necrosis", "complete_necrosis", {"1": "yes", "0": "no"}.get),
        ("surgery_date", "surgery_date", str),
        ("recurrence_date", "recurrence_date", lambda v: v or None),
        ("recurrence_site", "rec_site", lambda v: v.lower() or None),
        ("os_event", "died", int),
    ],
)
def test_every_patient_matches_the_reference(
    merged: pd.DataFrame, ours: str, theirs: str, convert
) -> None:
    expected = merged[f"ref_{theirs}"].map(convert)
    actual = merged[ours].where(merged[ours].notna(), None)
    mismatches = merged.loc[expected.ne(actual), ["ref_id", ours, f"ref_{theirs}"]]
    assert mismatches.empty, mismatches.to_string()


def test_survival_times_follow_the_dates(merged: pd.DataFrame) -> None:
    for row in merged.itertuples():
        surgery = date.fromisoformat(row.ref_surgery_date)
        end = date.fromisoformat(row.ref_end_date)
        assert row.os_days == (end - surgery).days, row.ref_id
        assert row.os_months == pytest.approx(float(row.ref_os_months), abs=0.02), row.ref_id
        if row.ref_died == "1":
            assert row.death_date == row.ref_end_date, row.ref_id
        else:
            assert row.last_contact_date == "2003-12-31", row.ref_id
        recurred = row.ref_recurrence_date
        rfs_end = date.fromisoformat(recurred) if recurred else end
        assert row.rfs_days == (rfs_end - surgery).days, row.ref_id
        assert row.rfs_event == int(bool(recurred) or row.ref_died == "1"), row.ref_id


def test_flow_and_flags(result: fhir_hcc.CohortResult) -> None:
    steps = {step["step"]: step["n"] for step in result.flow["steps"]}
    assert steps == {
        "seen": 57,
        "with_hcc": 53,
        "downstaged": 51,
        "resected_after_downstaging": 49,
        "included": 49,
    }
    assert result.flow["included"] == 49 and result.flow["excluded"] == {}
    assert result.flow["input"]["problems"] == 0
    flagged = result.table.set_index("patient_id")["flags"].fillna("")
    assert flagged["P18"].split(";").count("age_under_18") == 1
    assert not flagged.drop("P18").str.contains("age_under_18").any()


def test_every_derived_field_names_its_sources(result: fhir_hcc.CohortResult) -> None:
    patient = result.patients["P02"]
    for column in (
        "surgery_date",
        "treatment_group",
        "hbv_status",
        "resection_extent",
        "recurrence_date",
    ):
        assert patient.provenance[column], column
    assert all(source.startswith("Procedure/") for source in patient.provenance["surgery_date"])
