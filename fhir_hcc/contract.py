"""The cohort table contract: the one home of its columns, their types and their value spellings.

The cohort stage writes this table, `output.py` stores it (CSV, Parquet), the analysis reads
nothing else, and the README's contract table is checked against it. No FHIR here: the contract
is what a researcher's own table must look like to be analysed.

Types, as pandas holds them in memory (the same after `build_cohort` and after `load_cohort`):
`text` and `category` are strings (`category` from a fixed vocabulary; missing is None),
`date` is `datetime64[ns]` (missing NaT), `integer` is nullable `Int64`, `event` is 0/1
`int64`, `number` is `float64`. Parquet stores categories as dictionary columns and dates as
calendar dates.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import pandas as pd

DAYS_PER_MONTH = (
    30.4375  # 365.25 / 12: months = days / DAYS_PER_MONTH, the unit every report states
)

Kind = Literal["text", "category", "date", "integer", "event", "number"]

# Allowed values of each category column, in the order tables list them. "unknown" is a value of
# its own, never folded into "no" or "negative".
CATEGORIES: dict[str, tuple[str, ...]] = {
    "sex": ("male", "female", "other", "unknown"),
    "hbv_status": ("positive", "negative", "unknown"),
    "treatment_group": ("combination_chemo", "single_agent_chemo", "y90", "sequential"),
    "resection_extent": ("major", "minor", "unknown"),
    "complete_necrosis": ("yes", "no", "unknown"),
    "recurrence": ("yes", "no"),
    "recurrence_site": ("intrahepatic", "extrahepatic", "both", "unknown"),
    "death": ("yes", "no"),
    "sequence_order": ("chemo->Y90", "Y90->chemo"),
}

# The contract columns, first in every table, in this order.
CONTRACT_TYPES: dict[str, Kind] = {
    "patient_id": "text",
    "sex": "category",
    "age_at_surgery": "integer",
    "hbv_status": "category",
    "treatment_group": "category",
    "downstaging_start": "date",
    "surgery_date": "date",
    "resection_extent": "category",
    "complete_necrosis": "category",
    "recurrence": "category",
    "recurrence_date": "date",
    "recurrence_site": "category",
    "death": "category",
    "death_date": "date",
    "last_contact_date": "date",
    "os_months": "number",
    "os_event": "event",
    "rfs_months": "number",
    "rfs_event": "event",
}

# Further columns the cohort stage writes after the contract ones; optional for the analysis.
EXTRA_TYPES: dict[str, Kind] = {
    "os_days": "integer",
    "rfs_days": "integer",
    "dx_date": "date",
    "downstaging_end": "date",
    "n_cycles": "integer",
    "max_agents_in_cycle": "integer",
    "sequence_order": "category",
    "afp_pre_downstaging": "number",
    "afp_pre_surgery": "number",
    "flags": "text",  # semicolon-separated QC rules that touched the patient
    "provenance": "text",  # JSON: column -> the resources behind it
}

COLUMN_TYPES: dict[str, Kind] = CONTRACT_TYPES | EXTRA_TYPES
COLUMNS = tuple(CONTRACT_TYPES)
EXTRA_COLUMNS = tuple(EXTRA_TYPES)
DATE_COLUMNS = tuple(name for name, kind in COLUMN_TYPES.items() if kind == "date")

# Parquet and pandas types of each kind in memory.
DTYPES: dict[Kind, str] = {
    "text": "object",
    "category": "object",
    "date": "datetime64[ns]",
    "integer": "Int64",
    "event": "int64",
    "number": "float64",
}


def months(days: int | float) -> float:
    return days / DAYS_PER_MONTH


def as_types(table: pd.DataFrame) -> pd.DataFrame:
    """A copy with every known column in its contract type (see the module docstring).

    Values must already be valid (the cohort stage writes valid ones; the analysis checks a table
    it reads before calling this): a date is an ISO `YYYY-MM-DD` string, a date or a timestamp.
    """
    import pandas as pd  # lazy: `fhir_hcc.dates` imports this module on the mapping path

    typed = table.copy()
    for column in typed.columns:
        kind = COLUMN_TYPES.get(column)
        if kind is None:
            continue
        values = typed[column]
        if kind in ("text", "category"):
            text = values.astype(object)
            typed[column] = text.where(text.notna() & (text != ""), None)
        elif kind == "date":
            typed[column] = pd.to_datetime(values.replace("", None), format="mixed").astype(
                DTYPES["date"]
            )
        else:
            numbers = pd.to_numeric(values.replace("", None)) if values.dtype == object else values
            typed[column] = numbers.astype(DTYPES[kind])
    return typed


def for_parquet(table: pd.DataFrame) -> pd.DataFrame:
    """The table as Parquet stores it: categories as dictionary columns, dates as dates."""
    typed = as_types(table)
    for column in typed.columns:
        kind = COLUMN_TYPES.get(column)
        if kind == "category":
            typed[column] = typed[column].astype("category")
        elif kind == "date":
            typed[column] = typed[column].dt.date.astype(object).where(typed[column].notna(), None)
    return typed


def records(table: pd.DataFrame) -> list[dict[str, object]]:
    """The rows as JSON-ready dicts: dates as `YYYY-MM-DD` text, missing values as None."""
    import json

    text = table.copy()
    for column in DATE_COLUMNS:
        if column in text.columns:
            text[column] = text[column].dt.strftime("%Y-%m-%d")
    return json.loads(text.to_json(orient="records"))
