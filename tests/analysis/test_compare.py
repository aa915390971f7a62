"""Group comparisons: what is tested, what is refused, and why."""

from __future__ import annotations

import pandas as pd
from pytest import approx

from fhir_hcc.analysis.compare import design_matrix, fit_cox, logrank, multivariable_cox


def frame(**columns) -> pd.DataFrame:
    base = {
        "os_months": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0],
        "os_event": [1, 1, 0, 1, 1, 0, 1, 0],
        "resection_extent": ["major", "minor"] * 4,
        "complete_necrosis": ["yes", "no", "no", "yes", "no", "no", "yes", "unknown"],
        "age_at_surgery": [40, 50, 60, 45, 55, 65, 35, 70],
    }
    return pd.DataFrame(base | columns)


def test_unknown_levels_are_left_out_of_the_log_rank_test():
    data = frame()
    test = logrank(data["os_months"], data["os_event"], data["complete_necrosis"])
    assert list(test.groups.index) == ["no", "yes"]
    assert test.groups["n"].sum() == 7
    assert test.degrees_of_freedom == 1


def test_log_rank_needs_two_groups_at_risk_at_event_times():
    data = frame(resection_extent=["major"] * 8)
    test = logrank(data["os_months"], data["os_event"], data["resection_extent"])
    assert test.statistic is None
    assert test.reason == "fewer than two groups at risk at event times"


def test_design_matrix_codes_factors_against_the_reference_level_on_complete_cases():
    design = design_matrix(frame(), ["resection_extent", "complete_necrosis", "age_at_surgery"])
    assert list(design.columns) == [
        "resection_extent=major",
        "complete_necrosis=yes",
        "age_at_surgery",
    ]
    assert len(design) == 7  # the unknown necrosis is left out


def test_cox_refuses_a_level_without_events():
    data = frame(os_event=[1, 0, 1, 0, 1, 0, 1, 0])  # every minor resection censored
    model = fit_cox(data, ["resection_extent"])
    assert model.fitter is None
    assert model.reason == "resection_extent: no events in level minor (hazard ratio not estimable)"


def test_multivariable_guard_counts_events_per_parameter():
    data = frame()
    guarded = multivariable_cox(data, ["resection_extent", "age_at_surgery"], 10)
    assert guarded.fitter is None
    assert guarded.reason.startswith("5 events for 2 parameters (2.5 per parameter)")
    fitted = multivariable_cox(data, ["resection_extent", "age_at_surgery"], 2)
    assert fitted.fitter is not None
    assert list(fitted.terms.index) == ["resection_extent=major", "age_at_surgery"]


def test_stratified_log_rank_sums_scores_over_strata_and_leaves_out_unknown_strata():
    data = frame(hbv_status=["positive", "negative"] * 3 + ["unknown", "positive"])
    plain = logrank(data["os_months"], data["os_event"], data["resection_extent"])
    stratified = logrank(
        data["os_months"], data["os_event"], data["resection_extent"], data["hbv_status"]
    )
    assert stratified.strata == "hbv_status" and plain.strata is None
    assert stratified.groups["n"].sum() == 7  # the unknown stratum is left out
    # survdiff(Surv(t, e) ~ g + strata(s)) on the 7 known patients
    assert stratified.statistic == approx(1.2857143, abs=1e-6)


def test_a_covariate_nobody_has_is_named_as_such():
    data = frame(log_afp=[float("nan")] * 8)
    assert fit_cox(data, ["log_afp"]).reason == "no patient has a value of every covariate"
