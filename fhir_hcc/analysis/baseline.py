"""Table 1 (baseline characteristics) and the recurrence pattern.

Counts come with their denominator; unknowns are listed as their own level, never folded into
"no" or dropped from the denominator.
"""

from __future__ import annotations

import pandas as pd

from fhir_hcc.analysis.cohort_table import RECURRENCE_SITES
from fhir_hcc.contract import CATEGORIES

BASELINE_FACTORS = ("sex", "hbv_status", "treatment_group", "resection_extent", "complete_necrosis")


def baseline_table(cohort: pd.DataFrame) -> pd.DataFrame:
    """One row per (variable, level): `n` and `percent` of all patients, every level listed."""
    rows = []
    for variable in BASELINE_FACTORS:
        counts = cohort[variable].value_counts()
        for level in CATEGORIES[variable]:
            n = int(counts.get(level, 0))
            rows.append((variable, level, n, 100.0 * n / len(cohort)))
    return pd.DataFrame(rows, columns=["variable", "level", "n", "percent"])


def age_summary(cohort: pd.DataFrame) -> dict[str, float]:
    ages = cohort["age_at_surgery"]
    return {"min": int(ages.min()), "max": int(ages.max()), "median": float(ages.median())}


def recurrence_pattern(cohort: pd.DataFrame) -> pd.DataFrame:
    """Recurrences and their first sites (index `site`, first row `any`): `n`,
    `percent_of_patients` and `percent_of_recurrences`."""
    recurred = cohort[cohort["recurrence"] == "yes"]
    counts = recurred["recurrence_site"].value_counts()
    rows = [("any", len(recurred))]
    rows += [(site, int(counts.get(site, 0))) for site in RECURRENCE_SITES]
    table = pd.DataFrame(rows, columns=["site", "n"]).set_index("site")
    table["percent_of_patients"] = 100.0 * table["n"] / len(cohort)
    table["percent_of_recurrences"] = 100.0 * table["n"] / max(len(recurred), 1)
    return table
