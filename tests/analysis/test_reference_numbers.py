"""The published numbers on the 49-patient reference cohort ("from dates" column of
shared/reference/salvage2004-cohort.md, Expected results)."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from pytest import approx

from fhir_hcc.analysis import AnalysisConfig, analyze

from .reference import reference_cohort

ESTIMATE = 1e-4  # survival, incidence, CI limits, test statistics
MONTHS = 5e-4  # medians and follow-up, given to 3 decimals


def landmark(km, time: float) -> tuple[float, float, float]:
    row = km.landmarks.loc[time]
    return row.estimate, row.lower, row.upper


def test_overall_survival(reference_result):
    os = reference_result.overall_survival
    assert (os.events, os.censored) == (22, 27)
    assert landmark(os, 12) == approx((0.9796, 0.8638, 0.9971), abs=ESTIMATE)
    assert landmark(os, 36) == approx((0.6418, 0.4882, 0.7601), abs=ESTIMATE)
    assert landmark(os, 60) == approx((0.5728, 0.4185, 0.7002), abs=ESTIMATE)
    assert os.median == approx(85.914, abs=MONTHS)
    assert os.median_ci[0] == approx(35.515, abs=MONTHS)
    assert os.median_ci[1] is None  # not reached
    assert os.median_followup == approx(75.105, abs=MONTHS)
    assert os.median_observation_censored == approx(73.495, abs=MONTHS)
    assert os.restricted_mean.tau == 60
    assert os.restricted_mean.estimate == approx(46.0444, abs=ESTIMATE)


def test_number_at_risk_counts_everyone_still_observed_at_each_tick(reference_result):
    os_risk = reference_result.to_dict()["overall_survival"]["number_at_risk"]
    assert list(os_risk.values()) == [49, 48, 38, 30, 26, 24, 17, 9, 4, 2, 1]
    assert list(os_risk) == [str(12 * i) for i in range(11)]


def test_recurrence_free_survival(reference_result):
    rfs = reference_result.recurrence_free_survival
    assert landmark(rfs, 12) == approx((0.8163, 0.6767, 0.8999), abs=ESTIMATE)
    assert landmark(rfs, 36) == approx((0.5633, 0.4118, 0.6898), abs=ESTIMATE)
    assert landmark(rfs, 60) == approx((0.5163, 0.3657, 0.6477), abs=ESTIMATE)
    assert list(rfs.landmarks["at_risk"]) == [40, 26, 22]
    assert rfs.median == approx(61.700, abs=MONTHS)
    assert rfs.median_ci[0] == approx(21.815, abs=MONTHS)
    assert rfs.median_ci[1] is None
    assert rfs.median_followup == approx(75.105, abs=MONTHS)


def test_cumulative_incidence_of_recurrence(reference_result):
    incidence = reference_result.cumulative_incidence
    recurrence = incidence.landmarks.loc[1, "estimate"]
    death = incidence.landmarks.loc[2, "estimate"]
    assert list(recurrence) == approx([0.16326531, 0.39463911, 0.4181094], abs=1e-7)
    assert list(death) == approx([0.0204, 0.0421, 0.0655], abs=ESTIMATE)
    naive = 1 - incidence.naive.landmarks["estimate"]
    assert list(naive) == approx([0.1667, 0.4051, 0.4299], abs=ESTIMATE)
    # The three Aalen-Johansen states (event-free, recurred, died first) sum to one.
    event_free = reference_result.recurrence_free_survival.landmarks["estimate"]
    assert list(event_free.to_numpy() + recurrence.to_numpy() + death.to_numpy()) == approx(
        [1.0, 1.0, 1.0], abs=1e-12
    )


def test_logrank_tests(reference_result):
    tests = {test.factor: test for test in reference_result.logrank}
    groups = tests["treatment_group"]
    assert groups.statistic == approx(0.817, abs=5e-4)
    assert (groups.degrees_of_freedom, groups.p_value) == (3, approx(0.8455, abs=ESTIMATE))
    assert groups.groups["observed"].to_dict() == {
        "combination_chemo": 15,
        "single_agent_chemo": 4,
        "y90": 1,
        "sequential": 2,
    }
    assert list(groups.groups["expected"]) == approx([13.62, 3.67, 1.83, 2.88], abs=5e-3)
    resection = tests["resection_extent"]
    assert resection.statistic == approx(0.080, abs=5e-4)
    assert resection.p_value == approx(0.7774, abs=ESTIMATE)
    assert resection.groups.loc["major", ["observed", "expected"]].tolist() == approx(
        [13, 12.34], abs=5e-3
    )


def test_cox_model_of_the_reference(reference_result):
    covariates = ("resection_extent", "complete_necrosis", "hbv_status", "age_at_surgery")
    config = AnalysisConfig(cox_multivariable=covariates, min_events_per_variable=5)
    model = analyze(reference_cohort(), config).cox_multivariable
    terms = model.terms
    assert list(terms["coef"]) == approx([0.3643, -1.2205, -0.3072, -0.0002], abs=ESTIMATE)
    assert list(terms["se"]) == approx([0.5935, 0.6291, 0.6904, 0.0256], abs=ESTIMATE)
    assert terms.loc["complete_necrosis=yes", "hazard_ratio"] == approx(0.2951, abs=ESTIMATE)
    assert list(terms["p"]) == approx([0.5394, 0.0524, 0.6563, 0.9943], abs=ESTIMATE)
    assert model.fitter.log_likelihood_ == approx(-73.02202, abs=1e-5)
    # Proportional hazards: only the qualitative conclusion is comparable across software.
    assert model.ph_violations(0.05) == []


def test_events_per_variable_guard_refuses_the_overfitted_model():
    covariates = ("resection_extent", "complete_necrosis", "hbv_status", "age_at_surgery")
    model = analyze(reference_cohort(), AnalysisConfig(cox_multivariable=covariates))
    assert model.cox_multivariable.fitter is None
    assert "22 events for 4 parameters (5.5 per parameter)" in model.cox_multivariable.reason


def test_default_multivariable_model_passes_the_guard(reference_result):
    model = reference_result.cox_multivariable
    assert model.fitter is not None
    assert model.events_per_parameter == 11


def test_baseline_table_and_recurrence_pattern(reference_result):
    report = reference_result.to_dict()
    assert report["n"] == 49
    assert report["sex"] == {"male": 40, "female": 9, "other": 0, "unknown": 0}
    assert report["age_at_surgery"] | {"median": None} == {"min": 12, "max": 69, "median": None}
    assert report["hbv_status"] == {"positive": 40, "negative": 9, "unknown": 0}
    assert report["treatment_group"] == {
        "combination_chemo": 32,
        "single_agent_chemo": 8,
        "y90": 4,
        "sequential": 5,
    }
    assert report["resection_extent"] == {"major": 28, "minor": 21, "unknown": 0}
    assert report["complete_necrosis"] == {"yes": 13, "no": 36, "unknown": 0}
    assert report["recurrence"] == {
        "n": 21,
        "intrahepatic": 14,
        "extrahepatic": 7,
        "both": 0,
        "unknown": 0,
    }
    percents = reference_result.baseline.set_index(["variable", "level"])["percent"].round(1)
    assert percents[("treatment_group", "combination_chemo")] == 65.3
    assert percents[("resection_extent", "major")] == 57.1
    assert percents[("complete_necrosis", "yes")] == 26.5


def test_report_json_contract(reference_result):
    report = json.loads(json.dumps(reference_result.to_dict(), allow_nan=False))
    os = report["overall_survival"]
    assert set(os) >= {
        "events",
        "censored",
        "median_months",
        "median_ci",
        "at_months",
        "median_followup_months",
        "restricted_mean_months",
    }
    assert set(os["at_months"]) == {"12", "36", "60"}
    assert os["restricted_mean_months"]["estimate"] == approx(46.0444, abs=ESTIMATE)
    assert os["restricted_mean_months"]["tau"] == 60
    assert set(os["at_months"]["60"]) >= {"estimate", "lower", "upper"}
    assert os["median_ci"][1] is None
    assert set(report["recurrence_free_survival"]) >= set(os)
    incidence = report["recurrence_cumulative_incidence"]["at_months"]
    assert incidence["36"]["estimate"] == approx(0.3946, abs=ESTIMATE)


@pytest.mark.parametrize("origin", ["downstaging_start", "diagnosis"])
def test_alternative_time_origin_shifts_times_and_prints_the_caveat(origin):
    cohort = reference_cohort()
    column = "downstaging_start" if origin == "downstaging_start" else "dx_date"
    surgery = pd.to_datetime(cohort["surgery_date"])
    cohort[column] = (surgery - pd.Timedelta(days=100)).dt.strftime("%Y-%m-%d")
    result = analyze(cohort, AnalysisConfig(time_origin=origin))
    shift = 100 / 30.4375
    assert result.overall_survival.median == approx(85.914 + shift, abs=MONTHS)
    assert result.times["os_months"].min() == approx(2.3 + shift, abs=0.02)
    assert any("immortal time" in caveat for caveat in result.caveats)


def test_gray_tests_of_recurrence_incidence(reference_result):
    """R cmprsk 2.2-11: cuminc(rfs months, status, group)$Tests, cause 1."""
    tests = {test.factor: test for test in reference_result.gray_tests}
    expected = {
        "treatment_group": (0.7209520, 0.8682651, 3),
        "resection_extent": (0.9276905, 0.3354638, 1),
        "complete_necrosis": (8.8314327, 0.0029609, 1),
        "hbv_status": (1.4487182, 0.2287337, 1),
    }
    for factor, (statistic, p, df) in expected.items():
        test = tests[factor]
        assert (test.statistic, test.p_value) == approx((statistic, p), abs=1e-6), factor
        assert test.degrees_of_freedom == df
    assert tests["treatment_group"].groups["events"].to_dict() == {
        "combination_chemo": 15,
        "single_agent_chemo": 3,
        "y90": 1,
        "sequential": 2,
    }


def test_fine_gray_model_of_recurrence(reference_result):
    """R cmprsk 2.2-11: crr(rfs months, status, cbind(major, necrosis))."""
    model = reference_result.fine_gray_multivariable
    assert (model.n, model.events, model.competing) == (49, 21, 4)
    terms = model.terms
    assert list(terms["coef"]) == approx([0.6735677, -2.4951973], abs=1e-6)
    assert list(terms["se"]) == approx([0.4667116, 0.9573734], abs=1e-6)
    assert list(terms["hazard_ratio"]) == approx([1.9612219, 0.0824802], abs=1e-6)
    assert list(terms["p"]) == approx([0.14896, 0.0091528], abs=1e-5)  # as summary() prints


def test_stratified_log_rank_by_hbv():
    """R survival 3.5-3: survdiff(Surv(os, event) ~ group + strata(hbv))."""
    result = analyze(reference_cohort(), AnalysisConfig(logrank_strata="hbv_status"))
    test = result.logrank[0].stratified
    assert test.strata == "hbv_status"
    assert test.statistic == approx(0.8177789, abs=1e-6)
    assert list(test.groups["expected"]) == approx([13.58352, 3.77629, 1.83804, 2.80215], abs=1e-5)
    assert all(t.stratified is None for t in result.logrank if t.factor == "hbv_status")


def test_afp_candidate_needs_a_value_for_everyone(reference_result):
    assert reference_result.candidate_notes == (
        "AFP before surgery (per tenfold rise): not added (49 patients without a value)",
    )
