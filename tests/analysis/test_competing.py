"""Aalen-Johansen cumulative incidence, exact on tied times. Expected values are R cmprsk 2.2-11
`cuminc` / `timepoints` output for the same data."""

from __future__ import annotations

import pandas as pd
from pytest import approx

from fhir_hcc.analysis.competing import aalen_johansen, cumulative_incidence
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
