"""Kaplan-Meier conventions where lifelines and R differ (shared/reference/cohort-rules.md 5.3).
Expected values are R 4.2.2 / survival 3.5-3 output for the same data."""

from __future__ import annotations

import math

import pandas as pd
from pytest import approx

from fhir_hcc.analysis.km import kaplan_meier, number_at_risk, restricted_mean


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


def mean_to(tau, times, events):
    return restricted_mean(pd.Series(times, dtype=float), pd.Series(events), tau)


def test_restricted_mean_carries_the_last_value_to_tau_as_r():
    mean = mean_to(5.0, [1, 2, 3, 4], [1, 1, 0, 1])  # R: rmean 2.75, se 0.649519052838
    assert (mean.estimate, mean.se) == approx((2.75, 0.649519052838), abs=1e-12)
    assert mean.beyond_follow_up  # the last time, 4, is before tau


def test_restricted_mean_interval_stays_within_zero_and_tau():
    mean = mean_to(60.0, [10, 70], [1, 0])  # R: rmean 35, se 17.6776695297
    assert (mean.estimate, mean.se) == approx((35.0, 17.6776695297), abs=1e-9)
    assert mean.upper == 60.0 and 0 < mean.lower < 1  # 35 + 34.6 clipped to tau
    assert not mean.beyond_follow_up


def test_restricted_mean_without_events_before_tau_is_tau():
    for times, events in (([5, 8], [0, 0]), ([70, 80], [1, 1])):
        mean = mean_to(60.0, times, events)
        assert (mean.estimate, mean.se, mean.lower, mean.upper) == (60.0, 0.0, 60.0, 60.0)
