"""`analyze`: every analysis of the study on one cohort table, in the order the report shows it."""

from __future__ import annotations

import platform
from collections.abc import Mapping
from importlib import metadata
from typing import Any

import pandas as pd

from fhir_hcc.analysis.baseline import age_summary, baseline_table, recurrence_pattern
from fhir_hcc.analysis.cohort_table import check_cohort, outcome_days, to_months
from fhir_hcc.analysis.compare import FACTORS, fit_cox, logrank, multivariable_cox
from fhir_hcc.analysis.competing import cumulative_incidence
from fhir_hcc.analysis.config import AnalysisConfig
from fhir_hcc.analysis.km import kaplan_meier
from fhir_hcc.analysis.labels import ORIGIN_NAMES
from fhir_hcc.analysis.result import AnalysisResult, FlowStep
from fhir_hcc.errors import InputError

_SOFTWARE = ("fhir-hcc", "lifelines", "pandas", "numpy", "scipy", "matplotlib")


def analyze(
    cohort: pd.DataFrame,
    config: AnalysisConfig | None = None,
    flow: Mapping[str, Any] | None = None,
) -> AnalysisResult:
    """Run the study's analyses on a cohort table (the contract of docs/analysis.md).

    `flow` is the optional flow diagram shown in the report: the cohort stage's flow.json
    (`{"steps": [{"step", "n", "left_out": {reason: n}}, ...]}`) or plain `{step: n}`.
    Raises `InputError` on a table or flow that breaks the contract.
    """
    config = config or AnalysisConfig()
    cohort = check_cohort(cohort)
    times = analysis_times(cohort, config.time_origin)
    alpha = 1 - config.confidence_level
    landmarks = config.landmarks_months
    multivariable = None
    if config.cox_multivariable:
        multivariable = multivariable_cox(
            times, config.cox_multivariable, config.min_events_per_variable, alpha=alpha
        )
    return AnalysisResult(
        config=config,
        times=times,
        baseline=baseline_table(cohort),
        age=age_summary(cohort),
        recurrence_pattern=recurrence_pattern(cohort),
        overall_survival=kaplan_meier(
            times["os_months"],
            times["os_event"],
            "Overall survival",
            landmarks,
            alpha,
            config.rmst_months,
        ),
        recurrence_free_survival=kaplan_meier(
            times["rfs_months"],
            times["rfs_event"],
            "Recurrence-free survival",
            landmarks,
            alpha,
            config.rmst_months,
        ),
        cumulative_incidence=cumulative_incidence(
            times["rfs_months"], times["cr_status"], landmarks, alpha
        ),
        logrank=tuple(
            logrank(times["os_months"], times["os_event"], times[factor])
            for factor in config.logrank_factors
        ),
        cox_univariable=tuple(
            fit_cox(times, (covariate,), alpha=alpha) for covariate in config.cox_univariable
        ),
        cox_multivariable=multivariable,
        caveats=caveats(config),
        software=software_versions(),
        flow=None if flow is None else flow_steps(flow),
    )


def analysis_times(cohort: pd.DataFrame, origin: str) -> pd.DataFrame:
    """Per patient: id, factors, age, and outcome times in months from the time origin."""
    days = outcome_days(cohort, origin)
    times = cohort[["patient_id", *FACTORS, "age_at_surgery"]].copy()
    times["os_months"] = to_months(days["os_days"])
    times["os_event"] = days["os_event"]
    times["rfs_months"] = to_months(days["rfs_days"])
    times["rfs_event"] = days["rfs_event"]
    times["cr_status"] = days["cr_status"]
    return times


def flow_steps(flow: Mapping[str, Any]) -> tuple[FlowStep, ...]:
    """The flow diagram's steps in order, from either accepted shape."""
    steps = flow["steps"] if "steps" in flow else [{"step": k, "n": n} for k, n in flow.items()]
    try:
        return tuple(
            FlowStep(
                str(step["step"]),
                _count(step["n"]),
                {str(reason): _count(n) for reason, n in step.get("left_out", {}).items()},
            )
            for step in steps
        )
    except (KeyError, TypeError, AttributeError, ValueError):
        raise InputError(
            'flow counts: expected {"steps": [{"step": name, "n": count}, ...]} or {name: count}'
        ) from None


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(value)
    return value


def caveats(config: AnalysisConfig) -> tuple[str, ...]:
    notes = []
    if config.time_origin != "surgery":
        notes.append(
            f"Time zero is {ORIGIN_NAMES[config.time_origin]}, not surgery. Every patient in "
            "this cohort survived until salvage surgery, so the time before surgery is immortal "
            "time: these estimates are biased upwards and must not be compared with patients "
            "who were not resected unless landmarked or modelled with time-dependent covariates."
        )
    if config.suppress_below:
        k = config.suppress_below
        notes.append(
            f"Small-cell suppression: counts from 1 to {k - 1} are shown as <{k}. There is no "
            "complementary suppression, and survival estimates can still reveal small numbers."
        )
    return tuple(notes)


def software_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in _SOFTWARE:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed as a package"
    return versions
