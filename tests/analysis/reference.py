"""The 49-patient reference cohort as a contract-format cohort table, computed from its dates.

Written independently of `fhir_hcc.analysis` so that the tests check its date arithmetic too.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "reference" / "salvage2004-cohort.csv"
DAYS_PER_MONTH = 30.4375

_SEX = {"M": "male", "F": "female"}
_GROUP = {
    "COMBO": "combination_chemo",
    "SINGLE": "single_agent_chemo",
    "Y90": "y90",
    "SEQ": "sequential",
}


def reference_days() -> pd.DataFrame:
    """One row per patient: outcome times in whole days and the covariates, 0/1 coded."""
    raw = pd.read_csv(FIXTURE, dtype={"rec_site": str}, keep_default_na=False)
    surgery = pd.to_datetime(raw["surgery_date"])
    end = pd.to_datetime(raw["end_date"])
    recurrence = pd.to_datetime(raw["recurrence_date"].replace("", None))
    recurred = recurrence.notna()
    died = raw["died"] == 1
    os_days = (end - surgery).dt.days
    return pd.DataFrame(
        {
            "patient_id": raw["id"],
            "os_days": os_days,
            "os_event": died.astype(int),
            "rfs_days": (recurrence - surgery).dt.days.where(recurred, os_days).astype(int),
            "rfs_event": (recurred | died).astype(int),
            "cr_status": np.select([recurred, died], [1, 2], 0),
            "group": raw["group"].map(_GROUP),
            "major": (raw["resection"] == "MAJOR").astype(int),
            "necrosis": raw["complete_necrosis"],
            "hbv": raw["hbsag_pos"],
            "age": raw["age"],
            "sex": raw["sex"].map(_SEX),
            "rec_site": raw["rec_site"].str.lower(),
        }
    )


def contract_table(days: pd.DataFrame, base_dates: pd.Series | None = None) -> pd.DataFrame:
    """A cohort table in the contract format from per-patient days (see `reference_days`).

    Surgery dates default to 2000-01-01; death and last contact fall on the OS day.
    """
    surgery = (
        pd.Series(pd.Timestamp("2000-01-01"), index=days.index)
        if base_dates is None
        else base_dates
    )
    recurred = days["cr_status"] == 1
    died = days["os_event"] == 1
    end = surgery + pd.to_timedelta(days["os_days"], unit="D")
    recurrence = surgery + pd.to_timedelta(days["rfs_days"], unit="D")
    return pd.DataFrame(
        {
            "patient_id": days["patient_id"],
            "sex": days["sex"],
            "age_at_surgery": days["age"],
            "hbv_status": np.where(days["hbv"] == 1, "positive", "negative"),
            "treatment_group": days["group"],
            "downstaging_start": "",
            "surgery_date": iso_timestamp(surgery),
            "resection_extent": np.where(days["major"] == 1, "major", "minor"),
            "complete_necrosis": np.where(days["necrosis"] == 1, "yes", "no"),
            "recurrence": np.where(recurred, "yes", "no"),
            "recurrence_date": iso_timestamp(recurrence).where(recurred, ""),
            "recurrence_site": days["rec_site"].where(recurred, ""),
            "death": np.where(died, "yes", "no"),
            "death_date": iso_timestamp(end).where(died, ""),
            "last_contact_date": iso_timestamp(end),
            "os_months": days["os_days"] / DAYS_PER_MONTH,
            "os_event": days["os_event"],
            "rfs_months": days["rfs_days"] / DAYS_PER_MONTH,
            "rfs_event": days["rfs_event"],
        }
    )


def reference_cohort() -> pd.DataFrame:
    """The reference cohort in the contract format, with its real surgery dates."""
    raw = pd.read_csv(FIXTURE)
    return contract_table(reference_days(), pd.to_datetime(raw["surgery_date"]))


def iso_timestamp(dates: pd.Series) -> pd.Series:
    return dates.dt.strftime("%Y-%m-%d")
