"""Tiny or event-free cohorts (a site's first validation run) give a report, not a traceback."""

import pytest

from fhir_hcc.analysis import analyze

from .reference import reference_cohort


@pytest.mark.parametrize("rows", [1, 2, 3])
def test_a_handful_of_patients(rows: int) -> None:
    result = analyze(reference_cohort().head(rows))
    report = result.to_dict()
    assert report["n"] == rows
    assert result.to_html()
    assert all(model.reason for model in result.cox_univariable if model.events < 2)


def test_no_deaths_at_all() -> None:
    cohort = reference_cohort()
    survivors = cohort[cohort["os_event"] == 0]
    report = analyze(survivors).to_dict()
    assert report["overall_survival"]["events"] == 0
    assert report["overall_survival"]["median_months"] is None
    assert report["overall_survival"]["at_months"]["12"]["estimate"] == 1.0
