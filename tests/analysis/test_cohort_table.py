"""The cohort table contract: bad input is one clear line naming file, patient and column."""

from __future__ import annotations

from pathlib import Path

import pytest

from fhir_hcc.analysis import AnalysisConfig, analyze, load_cohort
from fhir_hcc.analysis.cohort_table import check_cohort, outcome_days
from fhir_hcc.errors import InputError

from .reference import reference_cohort


def write(tmp_path: Path, cohort) -> Path:
    path = tmp_path / "cohort.csv"
    cohort.to_csv(path, index=False)
    return path


def error_of(tmp_path: Path, cohort) -> str:
    with pytest.raises(InputError) as raised:
        load_cohort(write(tmp_path, cohort))
    message = str(raised.value)
    assert "\n" not in message
    return message


def test_reference_table_loads_with_typed_columns(tmp_path):
    cohort = load_cohort(write(tmp_path, reference_cohort()))
    assert len(cohort) == 49
    assert str(cohort["surgery_date"].dtype).startswith("datetime64")
    assert cohort["os_event"].sum() == 22


def test_missing_column_names_the_file_and_the_column(tmp_path):
    message = error_of(tmp_path, reference_cohort().drop(columns=["rfs_event"]))
    assert message == f"{tmp_path / 'cohort.csv'}: missing column rfs_event"


def test_bad_value_names_patient_and_column_but_not_the_value(tmp_path):
    cohort = reference_cohort()
    cohort.loc[4, "sex"] = "M"
    cohort.loc[7, "sex"] = "F"
    message = error_of(tmp_path, cohort)
    assert message.endswith("patient P05: sex is not one of male/female/other/unknown (and 1 more)")


def test_dates_must_be_iso_and_never_echoed(tmp_path):
    cohort = reference_cohort()
    cohort.loc[0, "death_date"] = "01/04/2002"
    message = error_of(tmp_path, cohort)
    assert message.endswith("patient P01: death_date is not a YYYY-MM-DD date")
    assert "2002" not in message


def test_outcome_columns_must_agree_with_the_dates(tmp_path):
    cohort = reference_cohort()
    cohort.loc[2, "os_months"] += 1
    assert error_of(tmp_path, cohort).endswith(
        "patient P03: os_months disagrees with the dates (days / 30.4375)"
    )


def test_recurrence_after_death_is_refused(tmp_path):
    cohort = reference_cohort()
    cohort.loc[1, "recurrence_date"] = "2001-01-01"  # P02 died 2000-09-11
    assert error_of(tmp_path, cohort).endswith("patient P02: recurrence_date is after death_date")


def test_competing_risk_status_and_times_come_from_the_dates():
    times = outcome_days(check_cohort(reference_cohort()))
    assert times["cr_status"].value_counts().to_dict() == {0: 24, 1: 21, 2: 4}
    p02 = times.iloc[1]  # recurrence 2000-02-08 after surgery 1999-08-09, death 2000-09-11
    assert (p02["rfs_days"], p02["os_days"], p02["cr_status"]) == (183, 399, 1)


def test_diagnosis_origin_needs_a_dx_date_column():
    with pytest.raises(InputError, match="needs a dx_date column"):
        analyze(reference_cohort(), AnalysisConfig(time_origin="diagnosis"))


def test_empty_origin_date_names_the_patient():
    with pytest.raises(InputError, match="patient P01: downstaging_start is empty"):
        analyze(reference_cohort(), AnalysisConfig(time_origin="downstaging_start"))
