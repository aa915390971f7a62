"""Loading and checking a cohort table against the contract (`fhir_hcc.contract`), and outcome
times.

The analysis stage reads nothing but this table. Times are whole days between dates; months
(days / 30.4375) are for reporting only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from fhir_hcc.contract import (
    CATEGORIES,
    COLUMN_TYPES,
    COLUMNS,
    CONTRACT_TYPES,
    DATE_COLUMNS,
    as_types,
    months,
)
from fhir_hcc.errors import InputError

RECURRENCE_SITES = CATEGORIES["recurrence_site"]
# The categories every patient has a value of (recurrence_site and sequence_order may be empty).
REQUIRED_CATEGORIES = {
    name: values
    for name, values in CATEGORIES.items()
    if CONTRACT_TYPES.get(name) == "category" and name != "recurrence_site"
}

# Time origins and the date column each starts from.
TIME_ORIGINS = {
    "surgery": "surgery_date",
    "downstaging_start": "downstaging_start",
    "diagnosis": "dx_date",
}

# os_months / rfs_months may be rounded by whoever wrote the table; more than this is a mismatch.
MONTHS_TOLERANCE = 0.05


def load_cohort(path: str | Path) -> pd.DataFrame:
    """Read a cohort table (CSV, or Parquet when the name ends in .parquet) and check it against
    the contract (see `check_cohort`)."""
    path = Path(path)
    parquet = path.suffix == ".parquet"
    try:
        raw = pd.read_parquet(path) if parquet else _read_csv(path)
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except (OSError, ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
        kind = "Parquet" if parquet else "CSV"
        raise InputError(f"{path}: not a readable {kind} table: {first_line}") from None
    return check_cohort(raw, source=str(path))


def _read_csv(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def check_cohort(table: pd.DataFrame, source: str | None = None) -> pd.DataFrame:
    """Return a typed copy of the cohort table; raise InputError naming the first problem.

    Columns take their contract types (`fhir_hcc.contract`: categories as lower-case strings,
    dates `datetime64`, events 0/1 integers, whole numbers `Int64`). Errors name the source (a
    file name, kept in `attrs["source"]` for later errors), the patient id and the column, never
    a value (no PHI).
    """
    source = source or table.attrs.get("source", "cohort table")
    missing = [column for column in COLUMNS if column not in table.columns]
    if missing:
        raise InputError(f"{source}: missing column {', '.join(missing)}")
    if table.empty:
        raise InputError(f"{source}: no patients in the table")
    cohort = table.copy()
    cohort.attrs["source"] = source
    cohort["patient_id"] = cohort["patient_id"].astype(str).str.strip()
    _require(cohort, cohort["patient_id"] == "", "patient_id", "is empty")
    _require(cohort, cohort["patient_id"].duplicated(), "patient_id", "appears twice")
    for column, allowed in REQUIRED_CATEGORIES.items():
        cohort[column] = _text(cohort[column])
        bad = ~cohort[column].isin(allowed)
        _require(cohort, bad, column, f"is not one of {'/'.join(allowed)}")
    cohort["recurrence_site"] = _text(cohort["recurrence_site"])
    _check_recurrence_site(cohort)
    for column in DATE_COLUMNS:
        if column in cohort.columns:
            cohort[column] = _dates(cohort, column)
    cohort["age_at_surgery"] = _numbers(cohort, "age_at_surgery", whole=True)
    for column in ("os_months", "rfs_months"):
        cohort[column] = _numbers(cohort, column)
    for column in ("os_event", "rfs_event"):
        cohort[column] = _events(cohort, column)
    _check_further_columns(cohort)
    _check_outcome_dates(cohort)
    _check_outcome_columns(cohort)
    return as_types(cohort)


def outcome_days(cohort: pd.DataFrame, origin: str = "surgery") -> pd.DataFrame:
    """Whole days from the time origin to each outcome, with event indicators.

    Columns: `os_days`, `os_event` (death), `rfs_days`, `rfs_event` (recurrence or death) and
    `cr_status` for competing risks (1 recurrence, 2 death without recurrence, 0 censored; its
    time is `rfs_days`). `cohort` must have passed `check_cohort`.
    """
    start = _origin_dates(cohort, origin)
    os_end = cohort["death_date"].where(cohort["death"] == "yes", cohort["last_contact_date"])
    rfs_end = os_end.where(cohort["recurrence"] == "no", cohort["recurrence_date"])
    recurred = cohort["recurrence"] == "yes"
    died = cohort["death"] == "yes"
    times = pd.DataFrame(
        {
            "os_days": (os_end - start).dt.days,
            "os_event": died.astype(int),
            "rfs_days": (rfs_end - start).dt.days,
            "rfs_event": (recurred | died).astype(int),
            "cr_status": np.select([recurred, died], [1, 2], 0),
        },
        index=cohort.index,
    )
    return times


def to_months(days: pd.Series | np.ndarray | float) -> pd.Series | np.ndarray | float:
    return months(days)  # type: ignore[arg-type]


def _origin_dates(cohort: pd.DataFrame, origin: str) -> pd.Series:
    column = TIME_ORIGINS[origin]
    if column not in cohort.columns:
        raise InputError(f"time origin {origin!r} needs a {column} column, which the table lacks")
    start = cohort[column]
    _require(cohort, start.isna(), column, f"is empty (needed as time origin {origin!r})")
    after = (cohort["death_date"] < start) | (cohort["last_contact_date"] < start)
    _require(cohort, after, column, "is after the death or last contact date")
    return start


def _text(values: pd.Series) -> pd.Series:
    return values.astype(object).where(values.notna(), "").astype(str).str.strip().str.lower()


def _dates(cohort: pd.DataFrame, column: str) -> pd.Series:
    values = cohort[column]
    if pd.api.types.is_datetime64_any_dtype(values):
        return values.dt.normalize()
    text = values.astype(object).where(values.notna(), "").astype(str).str.strip()
    parsed = pd.to_datetime(text, format="%Y-%m-%d", errors="coerce")
    _require(cohort, parsed.isna() & (text != ""), column, "is not a YYYY-MM-DD date")
    return parsed


def _numbers(
    cohort: pd.DataFrame, column: str, whole: bool = False, optional: bool = False
) -> pd.Series:
    raw = cohort[column]
    values = pd.to_numeric(raw.replace("", None) if raw.dtype == object else raw, errors="coerce")
    missing = values.isna()
    bad = ~missing & (values < 0)
    if not optional:
        bad |= missing
    else:
        bad |= missing & raw.notna() & (raw.astype(str).str.strip() != "")
    if whole:
        bad |= ~missing & (values != values.round())
    kind = "a whole number >= 0" if whole else "a number >= 0"
    _require(cohort, bad, column, f"is not {kind}")
    return values.astype("Int64") if whole else values.astype(float)


def _check_further_columns(cohort: pd.DataFrame) -> None:
    """Further columns (dx_date, n_cycles, afp_pre_surgery, ...) may be empty, never malformed."""
    for column, kind in COLUMN_TYPES.items():
        if column in CONTRACT_TYPES or column not in cohort.columns:
            continue
        if kind in ("integer", "number"):
            cohort[column] = _numbers(cohort, column, whole=kind == "integer", optional=True)
        elif kind == "category":
            cohort[column] = cohort[column].astype(object).where(cohort[column].notna(), "")
            cohort[column] = cohort[column].astype(str).str.strip()
            bad = ~cohort[column].isin(("", *CATEGORIES[column]))
            _require(cohort, bad, column, f"is not one of {'/'.join(CATEGORIES[column])}")


def _events(cohort: pd.DataFrame, column: str) -> pd.Series:
    values = pd.to_numeric(cohort[column], errors="coerce")
    _require(cohort, ~values.isin([0, 1]), column, "is not 0 or 1")
    return values.astype(int)


def _check_recurrence_site(cohort: pd.DataFrame) -> None:
    recurred = cohort["recurrence"] == "yes"
    site = cohort["recurrence_site"]
    allowed = "/".join(RECURRENCE_SITES)
    _require(
        cohort,
        recurred & ~site.isin(RECURRENCE_SITES),
        "recurrence_site",
        f"is not one of {allowed} for a recurrence",
    )
    _require(cohort, ~recurred & (site != ""), "recurrence_site", "is set but recurrence is no")


def _check_outcome_dates(cohort: pd.DataFrame) -> None:
    surgery = cohort["surgery_date"]
    recurred = cohort["recurrence"] == "yes"
    died = cohort["death"] == "yes"
    _require(cohort, surgery.isna(), "surgery_date", "is empty")
    for column, needed in (("recurrence_date", recurred), ("death_date", died)):
        flag = "recurrence" if column == "recurrence_date" else "death"
        _require(cohort, needed & cohort[column].isna(), column, f"is empty but {flag} is yes")
        _require(cohort, ~needed & cohort[column].notna(), column, f"is set but {flag} is no")
    _require(
        cohort,
        ~died & cohort["last_contact_date"].isna(),
        "last_contact_date",
        "is empty for a patient alive",
    )
    for column in ("recurrence_date", "death_date", "last_contact_date"):
        _require(cohort, cohort[column] < surgery, column, "is before surgery_date")
    _require(
        cohort,
        cohort["recurrence_date"] > cohort["death_date"],
        "recurrence_date",
        "is after death_date",
    )


def _check_outcome_columns(cohort: pd.DataFrame) -> None:
    """The table's own OS/RFS columns must agree with its dates, or one of them is wrong."""
    times = outcome_days(cohort)
    for outcome in ("os", "rfs"):
        event, months = f"{outcome}_event", f"{outcome}_months"
        _require(cohort, cohort[event] != times[event], event, "disagrees with the dates")
        gap = (cohort[months] - to_months(times[f"{outcome}_days"])).abs()
        _require(
            cohort, gap > MONTHS_TOLERANCE, months, "disagrees with the dates (days / 30.4375)"
        )


def _require(cohort: pd.DataFrame, bad: pd.Series, column: str, problem: str) -> None:
    """Raise one line naming the first offending patient and how many more there are."""
    if not bad.any():
        return
    ids = cohort.loc[bad, "patient_id"].astype(str).tolist()
    more = f" (and {len(ids) - 1} more)" if len(ids) > 1 else ""
    source = cohort.attrs.get("source", "cohort table")
    raise InputError(f"{source}: patient {ids[0]}: {column} {problem}{more}")
