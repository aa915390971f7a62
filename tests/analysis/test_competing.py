"""Aalen-Johansen cumulative incidence, Gray's test and Fine-Gray regression. Expected values are
R cmprsk 2.2-11 `cuminc` / `timepoints` / `crr` output for the same data."""

from __future__ import annotations

import pandas as pd
from pytest import approx

from fhir_hcc.analysis.competing import aalen_johansen, cumulative_incidence, gray_test
from fhir_hcc.analysis.finegray import fine_gray
from fhir_hcc.analysis.km import step_index

TIMES = pd.Series([1, 2, 2, 3, 4, 5, 6], dtype=float)
STATUS = pd.Series([1, 2, 1, 0, 1, 2, 0])


def value_at(table: pd.DataFrame, column: str, time: float) -> float:
    return float(table[column].iloc[step_index(table.index, time)])


def test_estimates_and_gray_variance_match_cmprsk_on_tied_times():
    table = aalen_johansen(TIMES, STATUS)
    # cuminc(c(1,2,2,3,4,5,6), c(1,2,1,0,1,2,0)); timepoints at 2 and 5.5.
    assert value_at(table, "cif_1", 2) == approx(0.2857143, abs=1e-7)
    assert value_at(table, "cif_2", 2) == approx(0.1428571, abs=1e-7)
    assert value_at(table, "var_1", 2) == approx(0.03458050, abs=1e-8)
    assert value_at(table, "var_2", 2) == approx(0.02097506, abs=1e-8)
    assert value_at(table, "cif_1", 5.5) == approx(0.4761905, abs=1e-7)
    assert value_at(table, "cif_2", 5.5) == approx(0.3333333, abs=1e-7)
    assert value_at(table, "var_1", 5.5) == approx(0.05524061, abs=1e-8)
    assert value_at(table, "var_2", 5.5) == approx(0.05977576, abs=1e-8)


def test_states_sum_to_one_and_intervals_contain_the_estimate():
    table = aalen_johansen(TIMES, STATUS)
    assert list(table["survival"] + table["cif_1"] + table["cif_2"]) == approx([1.0] * len(table))
    inside = table[(table["cif_1"] > 0) & (table["cif_1"] < 1)]
    assert (inside["lower_1"] < inside["cif_1"]).all()
    assert (inside["cif_1"] < inside["upper_1"]).all()


def test_without_competing_events_the_incidence_is_one_minus_kaplan_meier():
    status = STATUS.replace(2, 1)
    incidence = cumulative_incidence(TIMES, status, landmarks=(1, 2, 4, 5.5))
    naive = 1 - incidence.naive.landmarks["estimate"]
    assert list(incidence.landmarks.loc[1, "estimate"]) == approx(list(naive))


def test_competing_deaths_lower_the_incidence_below_one_minus_kaplan_meier():
    incidence = cumulative_incidence(TIMES, STATUS, landmarks=(5.5,))
    aj = incidence.landmarks.loc[(1, 5.5), "estimate"]
    naive = 1 - incidence.naive.landmarks.loc[5.5, "estimate"]
    assert aj < naive


ALTERNATING = pd.Series([f"g{i % 2}" for i in range(10)], name="group")
DAYS = pd.Series(range(1, 11), dtype=float)


def test_gray_test_matches_cmprsk_with_and_without_competing_events():
    # cuminc(1:10, status, rep(1:2, 5))$Tests
    only_recurrence = pd.Series([1, 1, 0, 1, 1, 0, 1, 1, 0, 1])
    both = pd.Series([1, 2, 0, 1, 2, 0, 1, 1, 0, 1])
    levels = ("g0", "g1")
    assert gray_test(DAYS, only_recurrence, ALTERNATING, levels).statistic == approx(
        0.05857105, abs=1e-8
    )
    test = gray_test(DAYS, both, ALTERNATING, levels)
    assert (test.statistic, test.degrees_of_freedom) == (approx(0.02704329, abs=1e-8), 1)
    assert test.p_value == approx(0.8693781, abs=1e-7)
    assert gray_test(DAYS, both, ALTERNATING, levels, cause=2).statistic == approx(
        0.0005082531, abs=1e-10
    )


def test_gray_test_leaves_out_groups_not_at_risk_and_unknowns():
    status = pd.Series([1, 2, 0, 1, 2, 0, 1, 1, 0, 1])
    groups = ALTERNATING.where(DAYS > 1, "unknown")
    test = gray_test(DAYS, status, groups, ("g0", "g1"))
    assert test.groups["n"].to_dict() == {"g0": 4, "g1": 5}
    early = pd.Series(["g1"] * 2 + ["g0"] * 8, name="group")  # g1 censored before any recurrence
    lonely = gray_test(DAYS, status.where(DAYS > 3, 0), early, ("g0", "g1"))
    assert lonely.reason == "fewer than two groups at risk at event times"
    assert gray_test(DAYS, pd.Series([0] * 10), ALTERNATING, ("g0", "g1")).reason == "no events"


def test_fine_gray_matches_crr_on_tied_times_with_censoring():
    # crr(t, s, x) with ties between recurrences, competing deaths and censorings
    frame = pd.DataFrame(
        {
            "rfs_months": [1, 2, 2, 3, 4, 4, 5, 6, 7, 8, 9, 10],
            "cr_status": [1, 2, 1, 0, 1, 2, 0, 1, 2, 1, 0, 1],
            "age_at_surgery": [0, 1, 0, 1, 1, 0, 1, 0, 1, 1, 0, 0],
        }
    )
    model = fine_gray(frame, ["age_at_surgery"])
    assert model.terms.loc["age_at_surgery", "coef"] == approx(-0.6254682908, abs=1e-7)
    assert model.terms.loc["age_at_surgery", "se"] == approx(0.7742396477, abs=1e-7)
    assert (model.n, model.events, model.competing) == (12, 6, 3)


def test_fine_gray_guard_and_refusals():
    frame = pd.DataFrame(
        {
            "rfs_months": [1.0, 2, 3, 4, 5, 6],
            "cr_status": [1, 0, 2, 0, 1, 0],
            "resection_extent": ["major", "minor", "major", "minor", "major", "minor"],
        }
    )
    guarded = fine_gray(frame, ["resection_extent"], min_events_per_variable=10)
    assert guarded.reason.startswith("2 events for 1 parameters (2.0 per parameter)")
    refused = fine_gray(frame, ["resection_extent"])
    assert (
        refused.reason == "resection_extent: no events in level minor (hazard ratio not estimable)"
    )
