"""Every published figure cross-checked against R `survival` and `cmprsk` (via Rscript), on the
reference cohort and on random cohorts, to 1e-4.

Skipped, with the reason printed, where Rscript is not installed.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pytest import approx

from fhir_hcc.analysis import AnalysisConfig, AnalysisResult, analyze
from fhir_hcc.analysis.compare import FACTORS, CoxModel, LogRankTest
from fhir_hcc.analysis.competing import GrayTest, gray_test
from fhir_hcc.analysis.finegray import FineGrayModel, fine_gray
from fhir_hcc.analysis.km import KaplanMeier, number_at_risk, step_index

from .cohorts import day_cohorts
from .reference import DAYS_PER_MONTH, contract_table, reference_days
from .rscript import r_reference, require_rscript

pytestmark = pytest.mark.r

TOLERANCE = 1e-4
GROUPS = FACTORS["treatment_group"]
COX_COVARIATES = ("resection_extent", "complete_necrosis", "age_at_surgery")
R_TERMS = {
    "major": "resection_extent=major",
    "necrosis": "complete_necrosis=yes",
    "age": "age_at_surgery",
}


def analysis_of(days: pd.DataFrame, landmark_days: list[float]) -> AnalysisResult:
    config = AnalysisConfig(
        landmarks_months=tuple(sorted(day / DAYS_PER_MONTH for day in landmark_days)),
        logrank_factors=("treatment_group",),
        logrank_strata="hbv_status",
        cox_univariable=("treatment_group",),
        cox_multivariable=COX_COVARIATES,
        cox_candidates=(),
        min_events_per_variable=0.0,  # compare every model R can fit
    )
    return analyze(contract_table(days), config)


def assert_matches_r(result: AnalysisResult, r: dict) -> None:
    assert_km_matches(result.overall_survival, r["os"], result.times["os_months"])
    assert_km_matches(result.recurrence_free_survival, r["rfs"], result.times["rfs_months"])
    assert_logrank_matches(result, r["logrank"])
    assert_cox_matches(result.cox_multivariable, r["cox"])
    assert_cox_matches(result.cox_univariable[0], r["cox_group"])
    assert_incidence_matches(result, r["cuminc"])
    assert_gray_matches(result.gray_tests[0], r["gray"])
    times = result.times
    death_test = gray_test(
        times["rfs_months"], times["cr_status"], times["treatment_group"], GROUPS, cause=2
    )
    assert_gray_matches(death_test, r["gray_death"])
    if not competing_and_censored_first(times):
        assert_fine_gray_matches(
            fine_gray(times, ("resection_extent", "complete_necrosis")), r["crr"]
        )
    assert_stratified_matches(result.logrank[0].stratified, r["stratified"])


def assert_gray_matches(test: GrayTest, r: dict | str | None) -> None:
    """R's cuminc fails where a group's last patient at risk has the competing event (its
    variance divides 0 by 0); ours is defined there (that event moves no later risk set)."""
    if r == "error":
        assert test.statistic is not None and math.isfinite(test.statistic)
        return
    if r is None:
        assert test.statistic is None
        return
    assert test.statistic == approx(r["stat"], abs=TOLERANCE)
    assert test.p_value == approx(r["p"], abs=TOLERANCE)
    assert test.degrees_of_freedom == r["df"]


def competing_and_censored_first(times: pd.DataFrame) -> bool:
    """A competing event and a censoring at the very first time: there crr reads the censoring
    survival just before that time as the value after it (its step function extended to the
    left), where Fine and Gray's weight, and ours, has 1 (docs/analysis.md)."""
    first = times["rfs_months"] == times["rfs_months"].min()
    status = times.loc[first, "cr_status"]
    return bool((status == 2).any() and (status == 0).any())


def assert_fine_gray_matches(model: FineGrayModel, r: dict | None) -> None:
    """Compare where both fitted a finite model (crr does not refuse a level without events,
    it drifts towards an infinite coefficient)."""
    if not model.fitted or r is None or not r["converged"] or None in r["coef"]:
        return
    if max(map(abs, r["coef"])) > 5:
        return
    assert list(model.terms.index) == ["resection_extent=major", "complete_necrosis=yes"]
    assert list(model.terms["coef"]) == approx(r["coef"], abs=TOLERANCE)
    assert list(model.terms["se"]) == approx(r["se"], abs=TOLERANCE)


def assert_stratified_matches(test: LogRankTest | None, r: dict | None) -> None:
    assert test is not None and test.strata == "hbv_status"
    tested = test.groups[test.groups["expected"] > 0]
    if r is None or test.statistic is None or len(tested) < len(test.groups):
        return  # R's survdiff stops on a group with no one at risk; ours leaves it out
    assert list(test.groups.index) == r["groups"]
    assert test.statistic == approx(r["chisq"], abs=TOLERANCE)
    assert list(test.groups["observed"]) == approx(r["observed"], abs=1e-9)
    assert list(test.groups["expected"]) == approx(r["expected"], abs=TOLERANCE)


def assert_km_matches(km: KaplanMeier, r: dict, durations: pd.Series) -> None:
    landmarks = km.landmarks
    assert plain(landmarks["estimate"]) == expect(r["surv"])
    assert plain(landmarks["lower"]) == expect(limit(r, "lower"))
    assert plain(landmarks["upper"]) == expect(limit(r, "upper"))
    median = [km.median, *km.median_ci]
    assert plain(median) == expect([r["median"], r["median_lower"], r["median_upper"]])
    assert plain([km.median_followup]) == expect([r["followup"]])
    assert plain([km.median_observation_censored]) == expect([r["censored_median"]])
    mean = km.restricted_mean
    assert plain([mean.estimate, mean.se]) == expect([r["rmean"], r["rmean_se"]])
    assert km.events == r["events"]
    ticks = [12.0 * i for i in range(len(r["n_risk"]))]
    assert list(number_at_risk(durations, ticks)) == r["n_risk"]


def assert_logrank_matches(result: AnalysisResult, r: dict | None) -> None:
    test = result.logrank[0]
    if r is None:
        assert test.statistic is None
        return
    tested = test.groups[test.groups["expected"] > 0]
    assert list(tested.index) == r["groups"]
    assert test.statistic == approx(r["chisq"], abs=TOLERANCE)
    assert test.p_value == approx(r["p"], abs=TOLERANCE)
    assert test.degrees_of_freedom == r["df"]
    assert list(tested["observed"]) == approx(r["observed"], abs=1e-9)
    assert list(tested["expected"]) == approx(r["expected"], abs=TOLERANCE)


def assert_cox_matches(model: CoxModel, r: dict | None) -> None:
    """Compare where both fitted a finite model: R warns where the likelihood is monotone and
    gives NA for a covariate nobody varies in (which `design_matrix` leaves out)."""
    if model.fitter is None or r is None or r["warned"] or None in r["coef"]:
        return
    if max(map(abs, r["coef"])) > 5:
        return
    terms = [
        R_TERMS.get(term, term.replace("treatment_group", "treatment_group="))
        for term in r["terms"]
    ]
    assert list(model.terms.index) == terms
    assert list(model.terms["coef"]) == approx(r["coef"], abs=TOLERANCE)
    assert list(model.terms["se"]) == approx(r["se"], abs=TOLERANCE)
    assert model.fitter.log_likelihood_ == approx(r["loglik"][1], abs=TOLERANCE)


def assert_incidence_matches(result: AnalysisResult, r: dict) -> None:
    incidence = result.cumulative_incidence
    times = list(result.config.landmarks_months)
    for cause in (1, 2):
        ours = incidence.landmarks.loc[cause, "estimate"]
        variance = [variance_at(incidence.table, cause, time, ours[time]) for time in times]
        r_cause = r[f"cause{cause}"]
        if r_cause is None:  # cmprsk leaves out a cause nobody had
            assert all(value in (0.0, None) for value in plain(ours))
            continue
        assert plain(ours) == expect(r_cause["est"])
        assert plain(variance) == expect(r_cause["var"])
    naive = incidence.naive.landmarks["estimate"]
    assert plain(naive) == expect(r["naive_surv"])


def variance_at(table: pd.DataFrame, cause: int, time: float, estimate: float) -> float:
    if math.isnan(estimate):
        return math.nan
    row = step_index(table.index, time)
    return 0.0 if row < 0 else float(table[f"var_{cause}"].iloc[row])


def limit(r: dict, name: str) -> list[float | None]:
    """R's CI limits, with S = 1 read as the exact interval [1, 1] (R leaves it NA)."""
    return [1.0 if s == 1 else value for s, value in zip(r["surv"], r[name], strict=True)]


def plain(values) -> list[float | None]:
    """Our numbers, with NaN (not estimable) and None (not reached) as None."""
    return [None if value is None or math.isnan(value) else float(value) for value in values]


def expect(values) -> list:
    """R's numbers as approx(abs=1e-4); R's NA (JSON null) as None."""
    return [None if value is None else approx(value, abs=TOLERANCE) for value in values]


def test_reference_cohort_matches_r(tmp_path: Path):
    days = reference_days()
    landmark_days = [12 * DAYS_PER_MONTH, 36 * DAYS_PER_MONTH, 60 * DAYS_PER_MONTH]
    r = r_reference({"reference": days}, {"reference": landmark_days}, tmp_path)
    result = analysis_of(days, landmark_days)
    reference = r["cohorts"]["reference"]
    assert_matches_r(result, reference)
    # The published treatment-group model (R's factor term names) is compared too, and every
    # competing-risk statistic was really compared (none skipped).
    assert result.cox_univariable[0].fitter is not None
    assert None not in (reference["gray"], reference["gray_death"], reference["crr"])
    assert reference["stratified"] is not None and reference["crr"]["converged"]


@st.composite
def landmark_days(draw: st.DrawFn, days: pd.DataFrame) -> list[float]:
    """The usual landmarks plus two observed times exactly (where step conventions differ)."""
    observed = draw(st.lists(st.sampled_from(sorted(set(days["os_days"]))), max_size=2))
    chosen = {12 * DAYS_PER_MONTH, 36 * DAYS_PER_MONTH, 60 * DAYS_PER_MONTH, *observed}
    return sorted(chosen)


@settings(
    max_examples=4,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data(), batch=st.lists(day_cohorts(), min_size=4, max_size=4))
def test_random_cohorts_match_r(tmp_path_factory, data, batch):
    require_rscript()
    landmarks = {f"c{i}": data.draw(landmark_days(days)) for i, days in enumerate(batch)}
    cohorts = {f"c{i}": days for i, days in enumerate(batch)}
    r = r_reference(cohorts, landmarks, tmp_path_factory.mktemp("r"))
    for cohort_id, days in cohorts.items():
        assert_matches_r(analysis_of(days, landmarks[cohort_id]), r["cohorts"][cohort_id])
