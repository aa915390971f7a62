"""Table 1's tests and standardised mean differences, cross-checked against R (fisher.test,
kruskal.test, and the SMD formulas written out in R) on the reference cohort and on random
cohorts with small groups and missing AFP, in one Rscript call."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pandas as pd
import pytest
from pytest import approx

from fhir_hcc.analysis.cohort_table import check_cohort
from fhir_hcc.analysis.tableone import fisher_exact, table_one

from .reference import reference_cohort
from .rscript import require_rscript

SCRIPT = __import__("pathlib").Path(__file__).with_name("tableone.R")
COMPARED = (
    "sex",
    "hbv_status",
    "resection_extent",
    "complete_necrosis",
    "age_at_surgery",
    "afp_pre_surgery",
)


def random_cohort(seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    cohort = check_cohort(reference_cohort())
    n = len(cohort)
    cohort["treatment_group"] = rng.choice(
        ["combination_chemo", "single_agent_chemo", "y90", "sequential"],
        n,
        p=[0.5, 0.2, 0.15, 0.15],
    )
    cohort["sex"] = rng.choice(["male", "female", "unknown"], n, p=[0.7, 0.25, 0.05])
    cohort["complete_necrosis"] = rng.choice(["yes", "no"], n)
    cohort["age_at_surgery"] = rng.integers(18, 85, n)
    afp = np.maximum(1, np.round(10 ** rng.normal(2.5, 1.2, n)))  # log10 needs AFP > 0
    cohort["afp_pre_surgery"] = np.where(rng.random(n) < 0.2, np.nan, afp)
    return cohort


@pytest.fixture(scope="module")
def cohorts() -> dict[str, pd.DataFrame]:
    reference = check_cohort(reference_cohort())
    reference["afp_pre_surgery"] = np.round(10 ** np.linspace(0.5, 4.5, len(reference)))[::-1]
    return {"reference": reference} | {f"random{seed}": random_cohort(seed) for seed in (1, 2, 3)}


@pytest.fixture(scope="module")
def r_results(cohorts, tmp_path_factory) -> dict:
    rscript = require_rscript()
    workdir = tmp_path_factory.mktemp("tableone")
    stacked = pd.concat(
        [
            pd.DataFrame(
                {
                    "cohort": cohort_id,
                    "group": c["treatment_group"],
                    "sex": c["sex"],
                    "hbv": c["hbv_status"],
                    "extent": c["resection_extent"],
                    "necrosis": c["complete_necrosis"],
                    "age": c["age_at_surgery"].astype(float),
                    "afp": c["afp_pre_surgery"],
                }
            )
            for cohort_id, c in cohorts.items()
        ]
    )
    stacked.to_csv(workdir / "cohorts.csv", index=False, na_rep="NA")
    done = subprocess.run(
        [rscript, str(SCRIPT), str(workdir / "cohorts.csv"), str(workdir / "out.json")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads((workdir / "out.json").read_text())


@pytest.mark.r
def test_tests_and_smds_match_r(cohorts, r_results):
    for cohort_id, cohort in cohorts.items():
        rows = {row.variable: row for row in table_one(cohort).rows}
        for variable in COMPARED:
            r = r_results[cohort_id][variable]
            row = rows[variable]
            assert row.p_value == approx(r["p"], abs=1e-6), (cohort_id, variable)
            assert row.smd == approx(r["smd"], abs=1e-6), (cohort_id, variable)


def test_fisher_exact_matches_r_on_a_two_by_four_table():
    # fisher.test(matrix(c(21, 11, 0, 8, 2, 2, 5, 0), 2))$p.value
    assert fisher_exact(np.array([[21, 0, 2, 5], [11, 8, 2, 0]])) == approx(0.000251722, abs=1e-9)


def test_empty_other_and_unknown_levels_are_hidden_unless_asked():
    cohort = check_cohort(reference_cohort())
    hidden = {row.variable: row.levels for row in table_one(cohort).rows}
    assert hidden["sex"] == ("male", "female") and hidden["hbv_status"] == ("positive", "negative")
    shown = {row.variable: row.levels for row in table_one(cohort, show_empty_levels=True).rows}
    assert shown["sex"] == ("male", "female", "other", "unknown")


def test_overall_column_only_without_groups():
    one = table_one(check_cohort(reference_cohort()), by=None)
    assert one.columns == ("overall",) and one.sizes == (49,)
    assert all(row.p_value is None for row in one.rows)
