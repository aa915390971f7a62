"""Kaplan-Meier conventions where lifelines and R differ (shared/reference/cohort-rules.md 5.3).
Expected values are R 4.2.2 / survival 3.5-3 output for the same data."""

from __future__ import annotations

import math

import pandas as pd
from pytest import approx

from fhir_hcc.analysis.km import kaplan_meier, number_at_risk


def km(times, events, landmarks=(1.5,)):
    return kaplan_meier(pd.Series(times, dtype=float), pd.Series(events), "test", landmarks)


def test_median_on_a_flat_half_stretch_is_its_midpoint_as_in_r():
    curve = km([1, 2, 3, 4], [1, 1, 1, 1])
    assert curve.fitter.median_survival_time_ == 2.0  # lifelines: start of the stretch
    assert curve.median == 2.5  # R quantile(): midpoint
    assert curve.median_ci == (1.0, None)  # R: lower 1, upper NA


def test_median_when_the_curve_ends_on_one_half_is_midway_to_the_last_time():
    curve = km([1, 2, 3, 4], [1, 1, 0, 0])
    assert curve.median == 3.0  # R: (2 + 4) / 2


def test_median_not_reached_is_none():
    curve = km([1, 2, 3, 4, 5], [1, 0, 0, 0, 0])
    assert curve.median is None
    assert curve.median_ci[1] is None


def test_number_at_risk_counts_time_greater_or_equal_to_the_tick():
    at_risk = number_at_risk(pd.Series([1, 2, 2, 3, 4, 5], dtype=float), [2, 3, 4])
    assert list(at_risk) == [5, 3, 2]  # R summary(times = 2:4)$n.risk; lifelines: 3/2/1


def test_landmarks_before_the_first_event_within_and_after_follow_up():
    curve = km([1, 2, 2, 3, 5, 6, 7], [0, 1, 1, 0, 1, 1, 1], landmarks=(0.5, 4, 7, 8))
    table = curve.landmarks
    assert tuple(table.loc[0.5, ["estimate", "lower", "upper"]]) == (1.0, 1.0, 1.0)
    assert tuple(table.loc[4, ["estimate", "lower", "upper"]]) == approx(
        (0.6666667, 0.1946166, 0.9044342), abs=1e-7
    )
    assert table.loc[4, "at_risk"] == 3
    # S reaches 0 at 7: the log(-log) interval is undefined there (R: NA).
    assert table.loc[7, "estimate"] == 0 and math.isnan(table.loc[7, "lower"])
    # Beyond the last observation nothing is estimable (R drops the time).
    assert math.isnan(table.loc[8, "estimate"]) and table.loc[8, "at_risk"] == 0


def test_reverse_kaplan_meier_follow_up_and_survivors_observation_time():
    curve = km([2, 4, 6, 8, 10], [1, 0, 1, 0, 0])
    assert curve.median_followup == 8.0  # R: censorings at 4, 8, 10 are the reverse "events"
    assert curve.median_observation_censored == 8.0
